"""The embedded CBAD engine: Driftlock's documented detection, pure (events in, detections and
explanations out; no I/O). The API's semantics over a store live in :mod:`driftlock.service`.
"""

from driftlock.engine.cbad import Detection, analyse
from driftlock.engine.explain import Explanation, Surge, explain
from driftlock.engine.settings import PROFILES, DetectionSettings, resolve_settings
from driftlock.engine.stream import StreamState, WindowResult, detections, freeze, ingest, thaw
from driftlock.engine.tokenize import event_bytes, tokenize

__all__ = [
    "PROFILES",
    "Detection",
    "DetectionSettings",
    "Explanation",
    "StreamState",
    "Surge",
    "WindowResult",
    "analyse",
    "detections",
    "event_bytes",
    "explain",
    "freeze",
    "ingest",
    "resolve_settings",
    "thaw",
    "tokenize",
]
