"""The Driftlock API's semantics over a store: detection, incidents, anomalies, feedback.

Layers, from the bottom: :mod:`driftlock.engine` (pure detection) and :mod:`driftlock.incident_rule`
→ this package: the typed core (:class:`Service`, :mod:`.detection`) over the :class:`Store` protocol
and its stores, and its edge (:class:`DetectionService` and the operation table, :mod:`.api`) →
``driftlock.server`` (HTTP) and the embedded transport → the clients.
"""

from driftlock.service.api import OPERATIONS, Answer, Api, Call, DemoLimiter, DetectionService, Operation
from driftlock.service.detection import Outcome, Service
from driftlock.service.errors import ApiError, ServiceError
from driftlock.service.store import MemoryStore, RecordCache, Store, StreamRecord

__all__ = [
    "OPERATIONS",
    "Answer",
    "Api",
    "ApiError",
    "Call",
    "DemoLimiter",
    "DetectionService",
    "MemoryStore",
    "Operation",
    "Outcome",
    "RecordCache",
    "Service",
    "ServiceError",
    "Store",
    "StreamRecord",
]
