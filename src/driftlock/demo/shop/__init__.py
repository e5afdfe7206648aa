"""The demo shop: a small Django site with the Driftlock middleware configured as the integration page says."""
