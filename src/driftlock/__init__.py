"""Driftlock: compression-based anomaly detection for Django and any OpenTelemetry service.

Public names are re-exported here; this module never imports Django or Celery.
"""

from driftlock._version import __version__
from driftlock.client import AnomalyPage, DriftlockClient, DriftlockSyncClient, Health
from driftlock.config import Config
from driftlock.exceptions import (
    DriftlockAuthenticationError,
    DriftlockConfigurationError,
    DriftlockError,
    DriftlockNetworkError,
    DriftlockRateLimitError,
    DriftlockValidationError,
)
from driftlock.models import Anomaly, AnomalyMetrics, Calibration, DetectionResult

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
    "DriftlockSyncClient",
    "DriftlockValidationError",
    "Health",
    "__version__",
]
