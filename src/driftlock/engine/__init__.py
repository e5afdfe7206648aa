"""The embedded CBAD engine: Driftlock's documented detection, in process.

``DetectionService`` answers API requests; ``analyse`` compares one baseline with one window.
"""

from driftlock.engine.cbad import Detection, analyse
from driftlock.engine.service import DetectionService, MemoryStore, embedded_transport, shared_service
from driftlock.engine.settings import PROFILES, DetectionSettings, resolve_settings
from driftlock.engine.stream import StreamState, ingest
from driftlock.engine.tokenize import event_bytes, tokenize

__all__ = [
    "PROFILES",
    "Detection",
    "DetectionService",
    "DetectionSettings",
    "MemoryStore",
    "StreamState",
    "analyse",
    "embedded_transport",
    "event_bytes",
    "ingest",
    "resolve_settings",
    "shared_service",
    "tokenize",
]
