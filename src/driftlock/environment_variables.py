"""Environment variables driftlock reads: ``DRIFTLOCK_`` + the Django ``DRIFTLOCK`` key, one per
:class:`~driftlock.config.Config` field (made from the fields, so a setting is declared once).

Registered under the ``opentelemetry_environment_variables`` entry point, where OpenTelemetry looks
for the variables a distribution reads. :data:`MEANINGS` says what each one means.
"""

from driftlock.config import environment_variables as _variables

MEANINGS: dict[str, str] = _variables()
"""What each variable means, by name."""

globals().update({name: name for name in MEANINGS})  # DRIFTLOCK_API_KEY = "DRIFTLOCK_API_KEY", ...

__all__ = ["MEANINGS", *sorted(MEANINGS)]
