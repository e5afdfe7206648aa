"""One stream's detector: the event history, the hop, and calibration counters."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from driftlock.engine.cbad import Detection, analyse
from driftlock.engine.explain import explain
from driftlock.engine.settings import MAX_STATE_EVENTS, DetectionSettings

__all__ = ["MIN_BASELINE_SIZE", "StreamState", "WindowResult", "ingest"]

MIN_BASELINE_SIZE = 50
"""Events before a stream leaves ``calibrating`` (§1.5)."""


@dataclass
class StreamState:
    """What detection needs to resume: the latest events and the counters."""

    stream_id: str
    events: deque[bytes] = field(default_factory=lambda: deque(maxlen=MAX_STATE_EVENTS))
    events_ingested: int = 0
    since_detection: int | None = None  # None until the first detection
    anomaly_count: int = 0
    detections: int = 0
    last_event_at: float | None = None


@dataclass(frozen=True)
class WindowResult:
    index: int  # position in this call's events of the event that triggered the detection
    detection: Detection
    why: str


def ingest(state: StreamState, events: Iterable[bytes], settings: DetectionSettings) -> list[WindowResult]:
    """Add events; run a detection when the history first holds baseline + window events and then
    after every ``hop_size`` new events. The window is always the latest ``window_size`` events."""
    results = []
    need = settings.min_events
    for index, event in enumerate(events):
        state.events.append(event)
        state.events_ingested += 1
        if state.since_detection is not None:
            state.since_detection += 1
        if len(state.events) < need:
            continue
        if state.since_detection is not None and state.since_detection < settings.hop_size:
            continue
        history = list(state.events)[-need:]
        baseline, window = history[: settings.baseline_size], history[settings.baseline_size :]
        detection = analyse(baseline, window, settings, start=state.events_ingested - need)
        state.since_detection = 0
        state.detections += 1
        if detection.is_anomaly:
            state.anomaly_count += 1
            results.append(WindowResult(index, detection, explain(detection, baseline, window)))
    return results
