"""``DriftlockClient`` (async) and ``DriftlockSyncClient``: the Driftlock API from Python.

Every request is an :class:`~driftlock.client._operations.Operation` built without I/O, sent through
:func:`driftlock._protocol.call_flow` (retries, backoff, ``Retry-After``, one deadline) and parsed into
:mod:`driftlock.models`; the two clients are shells that add only the I/O. With no API key and no
base URL, requests are answered in process by the embedded engine.
"""

from driftlock.client._async import Anomalies, Detection, DriftlockClient, Incidents, Streams
from driftlock.client._stream import Stream, SyncStream
from driftlock.client._sync import DriftlockSyncClient, SyncAnomalies, SyncDetection, SyncIncidents, SyncStreams
from driftlock.models import AnomalyPage, Health, Readiness

__all__ = [
    "Anomalies",
    "AnomalyPage",
    "Detection",
    "DriftlockClient",
    "DriftlockSyncClient",
    "Health",
    "Incidents",
    "Readiness",
    "Stream",
    "Streams",
    "SyncAnomalies",
    "SyncDetection",
    "SyncIncidents",
    "SyncStream",
    "SyncStreams",
]
