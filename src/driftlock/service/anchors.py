"""Anchors: a frozen known-good baseline a stream's drift is measured against (API-AND-CBAD.md §1.4, §1.9).

A stream's moving baseline learns whatever it is shown, so slow drift never looks anomalous against
it. An anchor does not move: it is a set of known-good events (sent with ``reset-anchor``, or the
stream's baseline of the moment), and every detect call on the stream then reports ``drift``, the
engine's judgement of the stream's latest window against the anchor:

* ``drift_score`` is the size-matched NCD of the window against the anchor (the engine's effect size:
  the window against window-sized slices of the anchor, averaged; :func:`driftlock.engine.cbad.analyse`);
* ``drift_detected`` is the engine's decision with the anchor as the baseline, ``drift_threshold`` as
  the NCD threshold and a p-value threshold of at most :data:`DRIFT_P_VALUE`, for the latest window
  *and* the window before it (when the stream holds two): drift is lasting, a chance fluctuation is not.
  NCD alone cannot decide: two 50-event samples of the *same* traffic score about 0.5, above the
  reference's default 0.35, and drifted traffic 0.6-0.7; the permutation test tells the two apart.
  Measured on tests/traffic.py (anchors of 60-800 events, the three profiles' windows, 40 seeds each):
  one window alone called 21 of 600 same-traffic windows drifted, two in a row 1 of 600, and found
  600 of 600 drifted pairs (every event slow and failing) and 527 of 600 where a third of them were.

The anchor lives in the stream's ``meta["anchor"]`` (events as base64), changed under its lock.
"""

from __future__ import annotations

import base64
import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from driftlock.engine.cbad import analyse, compressor_for, entropy
from driftlock.engine.settings import DetectionSettings
from driftlock.registry import REGISTRY
from driftlock.service.shapes import iso

__all__ = [
    "DRIFT_P_VALUE",
    "DRIFT_THRESHOLD",
    "MAX_ANCHOR_EVENTS",
    "MIN_ANCHOR_EVENTS",
    "anchor_details",
    "anchor_settings",
    "drift",
    "make_anchor",
]

DRIFT_THRESHOLD = 0.35
"""The reference's default (``anchor_helpers.go``)."""
DRIFT_P_VALUE = 0.01
MIN_ANCHOR_EVENTS = 10
MAX_ANCHOR_EVENTS = 800

DECODED_ANCHORS = 32
"""Anchors whose events are kept decoded, per process (the registry's slot ``anchors.decoded``)."""


class _Decoded:
    def __init__(self) -> None:
        self.events: OrderedDict[str, list[bytes]] = OrderedDict()
        self.lock = threading.Lock()


def make_anchor(events: Sequence[bytes], settings: DetectionSettings, now: float) -> dict[str, Any]:
    """A new anchor of ``events`` (tokenized event bytes, oldest first; the newest MAX_ANCHOR_EVENTS kept)."""
    kept = list(events)[-MAX_ANCHOR_EVENTS:]
    joined = b"\n".join(kept) + b"\n"
    size = compressor_for(settings.compressor)(joined)
    return {
        "id": str(uuid.uuid4()),
        "created_at": now,
        "events": [base64.b64encode(e).decode("ascii") for e in kept],
        "event_count": len(kept),
        "baseline_entropy": round(entropy(joined), 6),
        "baseline_compression_ratio": round(len(joined) / max(1, size), 6),
        "compressor": settings.compressor,
        "drift_ncd_threshold": DRIFT_THRESHOLD,
    }


def active(meta: Mapping[str, Any]) -> Mapping[str, Any] | None:
    anchor = meta.get("anchor")
    return anchor if isinstance(anchor, Mapping) and anchor.get("events") else None


def _events(anchor: Mapping[str, Any]) -> list[bytes]:
    key = str(anchor["id"])
    decoded = REGISTRY.slot("anchors.decoded", _Decoded)
    with decoded.lock:
        found = decoded.events.get(key)
        if found is not None:
            decoded.events.move_to_end(key)
            return found
    events = [base64.b64decode(e) for e in anchor["events"]]
    with decoded.lock:
        decoded.events[key] = events
        while len(decoded.events) > DECODED_ANCHORS:
            decoded.events.popitem(last=False)
    return events


def anchor_settings(meta: Mapping[str, Any]) -> dict[str, Any]:
    """``GET /v1/streams/{id}/anchor``."""
    anchor = active(meta)
    threshold = float(anchor.get("drift_ncd_threshold", DRIFT_THRESHOLD)) if anchor else DRIFT_THRESHOLD
    return {
        "anchor_enabled": True,
        "has_active_anchor": anchor is not None,
        "anchor_id": str(anchor["id"]) if anchor else None,
        "drift_threshold": threshold,
        "drift_ncd_threshold": threshold,
        "drift_p_value_threshold": DRIFT_P_VALUE,
        "anchor_reset_on_drift": False,
    }


def anchor_details(meta: Mapping[str, Any], stream_id: str) -> dict[str, Any]:
    """``GET /v1/streams/{id}/anchor/details``: the anchor less its events, or None."""
    anchor = active(meta)
    if anchor is None:
        return {"anchor": None, "message": f"stream {stream_id} has no active anchor"}
    created = iso(float(anchor["created_at"]))
    return {
        "anchor": {
            "id": str(anchor["id"]),
            "anchor_id": str(anchor["id"]),
            "stream_id": stream_id,
            "compressor": anchor.get("compressor", "zstd"),
            "event_count": int(anchor["event_count"]),
            "baseline_entropy": anchor.get("baseline_entropy"),
            "baseline_compression_ratio": anchor.get("baseline_compression_ratio"),
            "drift_ncd_threshold": float(anchor.get("drift_ncd_threshold", DRIFT_THRESHOLD)),
            "is_active": True,
            "calibration_completed_at": created,
            "created_at": created,
        },
        "message": "active anchor",
    }


def drift(meta: Mapping[str, Any], history: Sequence[bytes], settings: DetectionSettings) -> dict[str, Any] | None:
    """The detect answer's ``drift``: the stream's latest window (``settings.window_size`` of its
    newest events) against its anchor; None without an anchor."""
    anchor = active(meta)
    if anchor is None:
        return None
    threshold = float(anchor.get("drift_ncd_threshold", DRIFT_THRESHOLD))
    size = settings.window_size
    recent = list(history)[-2 * size :]
    window, previous = recent[-size:], recent[:-size]
    if not window:
        return {"diagnostic_reason": "window_snapshot_failed"}
    try:
        events = _events(anchor)
    except (ValueError, TypeError):
        return {"diagnostic_reason": "anchor_decode_failed"}
    judged = replace(
        settings, ncd_threshold=threshold, p_value_threshold=min(settings.p_value_threshold, DRIFT_P_VALUE)
    )
    try:
        found = analyse(events, window, judged)
        drifted = found.is_anomaly and found.ncd >= threshold
        if drifted and len(previous) == size:
            before = analyse(events, previous, judged)
            drifted = before.is_anomaly and before.ncd >= threshold
    except Exception:  # an anchor the engine cannot compare with must not fail the detect call
        return {"diagnostic_reason": "drift_compute_failed"}
    return {
        "anchor_id": str(anchor["id"]),
        "drift_score": round(found.ncd, 6),
        "drift_threshold": threshold,
        "drift_detected": drifted,
        "drift_p_value": round(found.p_value, 6),
        "baseline_events": len(events),
        "window_events": len(window),
        "anchor_created_at": iso(float(anchor["created_at"])),
    }
