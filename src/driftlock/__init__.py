"""Driftlock: compression-based anomaly detection for Django and any OpenTelemetry service.

Public names are re-exported here; this module never imports Django or Celery.
"""

from driftlock._version import __version__
from driftlock.anomalies import (
    SpanDetails,
    add_anomaly_handler,
    add_incident_handler,
    remove_anomaly_handler,
    remove_incident_handler,
)
from driftlock.client import DriftlockClient, DriftlockSyncClient, Stream, SyncStream
from driftlock.config import Config
from driftlock.exceptions import (
    DriftlockAuthenticationError,
    DriftlockConfigurationError,
    DriftlockError,
    DriftlockNetworkError,
    DriftlockRateLimitError,
    DriftlockValidationError,
)
from driftlock.exporter import DriftlockSpanExporter
from driftlock.models import (
    Anomaly,
    AnomalyMetrics,
    AnomalyPage,
    Calibration,
    DetectionResult,
    ExportJob,
    Health,
    Incident,
    IncidentExplanation,
    IncidentMark,
    IncidentPage,
    Readiness,
)
from driftlock.setup import configure

__all__ = [
    "Anomaly",
    "AnomalyMetrics",
    "AnomalyPage",
    "Calibration",
    "Config",
    "DetectionResult",
    "DriftlockAuthenticationError",
    "DriftlockClient",
    "DriftlockConfigurationError",
    "DriftlockError",
    "DriftlockNetworkError",
    "DriftlockRateLimitError",
    "DriftlockSpanExporter",
    "DriftlockSyncClient",
    "DriftlockValidationError",
    "ExportJob",
    "Health",
    "Incident",
    "IncidentExplanation",
    "IncidentMark",
    "IncidentPage",
    "Readiness",
    "SpanDetails",
    "Stream",
    "SyncStream",
    "__version__",
    "add_anomaly_handler",
    "add_incident_handler",
    "configure",
    "remove_anomaly_handler",
    "remove_incident_handler",
]

for _name in __all__:  # reprs and tracebacks show driftlock.X, the one import path (as httpx does)
    _public = globals()[_name]
    if getattr(_public, "__module__", "").startswith("driftlock."):
        _public.__module__ = "driftlock"
del _name, _public
