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
