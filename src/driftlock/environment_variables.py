"""Environment variables driftlock reads: ``DRIFTLOCK_`` + the Django ``DRIFTLOCK`` key.

Registered under the ``opentelemetry_environment_variables`` entry point so that
``opentelemetry-instrument`` offers them as command-line flags too.
"""

DRIFTLOCK_API_KEY = "DRIFTLOCK_API_KEY"
"""Driftlock API key, sent as ``X-Api-Key``. Never logged."""

DRIFTLOCK_BASE_URL = "DRIFTLOCK_BASE_URL"
"""API root such as ``http://127.0.0.1:8080``; ``/v1/...`` paths are appended."""

DRIFTLOCK_STREAM_ID = "DRIFTLOCK_STREAM_ID"
"""Stream for events that do not name their own (default: the resource's ``service.name``)."""

DRIFTLOCK_CELERY_STREAM_ID = "DRIFTLOCK_CELERY_STREAM_ID"
"""Stream for Celery task events (default: the stream + ``.celery``)."""

DRIFTLOCK_EXCLUDE_PATHS = "DRIFTLOCK_EXCLUDE_PATHS"
"""Comma-separated path prefixes that are never traced nor exported."""

DRIFTLOCK_ASYNC_MODE = "DRIFTLOCK_ASYNC_MODE"
"""``true``: export on the batch processor's thread; ``false``: inside the request."""

DRIFTLOCK_TIMEOUT = "DRIFTLOCK_TIMEOUT"
"""One deadline, in seconds, for each export or client call (retries included)."""

DRIFTLOCK_MAX_RETRIES = "DRIFTLOCK_MAX_RETRIES"
"""Retries on 429, 502, 503, 504 and connection errors."""

DRIFTLOCK_RETRY_DELAY = "DRIFTLOCK_RETRY_DELAY"
"""Seconds to wait before the first retry (default 0.25); each further retry waits twice as long, ±20%."""

DRIFTLOCK_MAX_RETRY_DELAY = "DRIFTLOCK_MAX_RETRY_DELAY"
"""The longest wait between two retries, in seconds (default 8). ``Retry-After`` from the API wins over both."""

DRIFTLOCK_MAX_BATCH_SIZE = "DRIFTLOCK_MAX_BATCH_SIZE"
"""Events per request; larger lists are split and their results merged."""

DRIFTLOCK_CONFIG_OVERRIDE = "DRIFTLOCK_CONFIG_OVERRIDE"
"""JSON object of detection settings sent with every request."""

DRIFTLOCK_ON_ANOMALY = "DRIFTLOCK_ON_ANOMALY"
"""Dotted path of a callable ``(anomaly, span)`` called for each alarm."""

DRIFTLOCK_ENABLED = "DRIFTLOCK_ENABLED"
"""Master switch."""

DRIFTLOCK_CAPTURE_USER_ID = "DRIFTLOCK_CAPTURE_USER_ID"
"""Attach the authenticated user's id to events (off by default: personal data)."""

DRIFTLOCK_SPAN_KINDS = "DRIFTLOCK_SPAN_KINDS"
"""Comma-separated span kinds turned into events (default ``server,consumer``)."""

DRIFTLOCK_CONFIRMATIONS = "DRIFTLOCK_CONFIRMATIONS"
"""Anomalous detections (p <= 0.01) within one window that open an incident; default: the detection
service's rule (3); ``1``: every anomaly."""

DRIFTLOCK_EMBEDDED_DB = "DRIFTLOCK_EMBEDDED_DB"
"""SQLite file the embedded engine keeps its streams in, shared by every process on the machine
(default: ``driftlock/embedded.sqlite3`` in the user's cache directory); ``:memory:``: this process only."""
