"""The embedded CBAD engine: Driftlock's documented detection, pure (events in, detections and
explanations out; no I/O). The API's semantics over a store live in :mod:`driftlock.service`.

Names are loaded on first use, so importing one light module (``driftlock.engine.settings``) loads
neither zstandard nor the detector.
"""

from typing import TYPE_CHECKING, Any

# light (re and json), and a submodule named like its function: imported now so the name is the function
from driftlock.engine.tokenize import event_bytes, tokenize

if TYPE_CHECKING:
    from driftlock.engine.cbad import Detection, analyse
    from driftlock.engine.explain import Explanation, Surge, explain
    from driftlock.engine.settings import PROFILES, DetectionSettings, resolve_settings
    from driftlock.engine.stream import StreamState, WindowResult, detections, freeze, ingest, thaw

_HOMES = {
    "Detection": "cbad",
    "analyse": "cbad",
    "Explanation": "explain",
    "Surge": "explain",
    "explain": "explain",
    "PROFILES": "settings",
    "DetectionSettings": "settings",
    "resolve_settings": "settings",
    "StreamState": "stream",
    "WindowResult": "stream",
    "detections": "stream",
    "freeze": "stream",
    "ingest": "stream",
    "thaw": "stream",
}

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


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(f"driftlock.engine.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'driftlock.engine' has no attribute {name!r}")
