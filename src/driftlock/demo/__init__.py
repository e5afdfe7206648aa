"""``driftlock demo``: a Django shop, the middleware, real requests, and anomalies found and explained."""
