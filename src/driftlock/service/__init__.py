"""The Driftlock API's semantics over a store: detection, incidents, anomalies, feedback.

Layers, from the bottom: :mod:`driftlock.engine` (pure detection) → this package (the API's
semantics, the :class:`Store` protocol and its stores) → ``driftlock.server`` (HTTP) and the
embedded transport → the clients.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from driftlock.service.api import OPERATIONS, Answer, Api, Call, DemoLimiter, Operation
    from driftlock.service.detection import DetectionService
    from driftlock.service.errors import ApiError
    from driftlock.service.store import MemoryStore, RecordCache, Store, StreamRecord

_HOMES = {
    "OPERATIONS": "api",
    "Answer": "api",
    "Api": "api",
    "Call": "api",
    "DemoLimiter": "api",
    "Operation": "api",
    "DetectionService": "detection",
    "ApiError": "errors",
    "MemoryStore": "store",
    "RecordCache": "store",
    "Store": "store",
    "StreamRecord": "store",
}


def __getattr__(name: str) -> Any:
    # Lazy, so that the exporter's import of the incident rule's constants loads nothing else.
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(f"driftlock.service.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'driftlock.service' has no attribute {name!r}")


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
    "RecordCache",
    "Store",
    "StreamRecord",
]
