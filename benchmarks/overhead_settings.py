"""Settings of the demo shop in the four configurations of benchmarks/overhead.py (OVERHEAD_MODE).

bare       Django alone
otel       the standard OpenTelemetry pipeline: Django instrumentation, batch processor, OTLP/HTTP
           exporter to OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
driftlock  DriftlockMiddleware to DRIFTLOCK_BASE_URL (driftlock serve), or the embedded engine without it
"""

import os

from driftlock.demo.shop.settings import *  # noqa: F403

MODE = os.environ.get("OVERHEAD_MODE", "driftlock")
MIDDLEWARE = ["driftlock.django.DriftlockMiddleware"] if MODE == "driftlock" else []
DRIFTLOCK = {"STREAM_ID": "overhead", "EXCLUDE_PATHS": ["/health/"], "ASYNC_MODE": True}

# The exporter's exit line ("... events exported, ... dropped") at INFO too: benchmarks/faults.py reads it.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"driftlock.exporter": {"handlers": ["stderr"], "level": "INFO", "propagate": False}},
}
LOGGING_CONFIG = "logging.config.dictConfig"
