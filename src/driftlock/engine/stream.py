"""One stream's detector: the event history, the hop, calibration counters, and a baseline that can
be held fixed.

A baseline that keeps moving learns whatever it is shown: after a long attack it holds the attack,
and ordinary traffic then looks strange against it. So the baseline can be *frozen* (the
reference's ``freeze_baseline``): detections compare the newest window with the baseline of the
moment it was frozen, until it is thawed, when the history becomes that baseline followed by the
latest window, and the events in between are forgotten.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from driftlock.engine.cbad import Detection, analyse
from driftlock.engine.explain import Explanation, explain
from driftlock.engine.history import StatisticHistory
from driftlock.engine.settings import MAX_STATE_EVENTS, DetectionSettings

__all__ = ["MIN_BASELINE_SIZE", "StreamState", "WindowResult", "detections", "freeze", "ingest", "thaw"]

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
    frozen: list[bytes] | None = None  # a baseline held fixed, oldest first
    frozen_start: int = 0  # stream position of the frozen baseline's first event
    history: StatisticHistory = field(default_factory=StatisticHistory)  # recent ordinary windows' statistics


@dataclass(frozen=True)
class WindowResult:
    index: int  # position in this call's events of the event that triggered the detection
    position: int  # the same event's position in the stream, from 0
    detection: Detection
    explanation: Explanation | None = None  # for anomalies

    @property
    def why(self) -> str:
        return self.explanation.why() if self.explanation else ""


def _baseline(state: StreamState, settings: DetectionSettings) -> tuple[list[bytes], list[bytes], int]:
    """(baseline, window, stream position of the baseline's first event) for the latest window."""
    history = list(state.events)
    window = history[-settings.window_size :]
    first_in_window = state.events_ingested - settings.window_size
    if state.frozen is not None and len(state.frozen) >= settings.baseline_size:
        skip = len(state.frozen) - settings.baseline_size
        return state.frozen[skip:], window, state.frozen_start + skip
    baseline = history[-settings.min_events : -settings.window_size]
    return baseline, window, first_in_window - len(baseline)


def detections(state: StreamState, events: Iterable[bytes], settings: DetectionSettings) -> Iterator[WindowResult]:
    """Add events, yielding every detection: one when the history first holds baseline + window
    events and then after every ``hop_size`` new events. The window is always the latest
    ``window_size`` events. Anomalies come with their explanation.

    A generator, so that the caller can act on a detection (freeze the baseline, say) before the
    next one of the same batch runs."""
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
        baseline, window, start = _baseline(state, settings)
        detection = analyse(baseline, window, settings, start=start, history=state.history)
        if state.frozen is None and detection.statistic is not None:  # an ordinary window (no incident holds it)
            state.history.add(detection.runs)  # a new stream's history: its previous windows
            state.history.observe(detection.statistic)
        state.since_detection = 0
        state.detections += 1
        explanation = None
        if detection.is_anomaly:
            state.anomaly_count += 1
            explanation = explain(detection, baseline, window)
        yield WindowResult(index, state.events_ingested - 1, detection, explanation)


def ingest(state: StreamState, events: Iterable[bytes], settings: DetectionSettings) -> list[WindowResult]:
    """Add events; the anomalous detections they caused."""
    return [r for r in detections(state, events, settings) if r.detection.is_anomaly]


def freeze(state: StreamState, settings: DetectionSettings) -> None:
    """Hold the current baseline (the events before the latest window) fixed. Idempotent."""
    if state.frozen is not None:
        return
    baseline, _, start = _baseline(state, settings)
    state.frozen, state.frozen_start = baseline, start
    state.history.forget_pending()


def thaw(state: StreamState, settings: DetectionSettings, *, forget: bool = True) -> None:
    """Let the baseline move again. With ``forget``, the history becomes the frozen baseline and the
    latest window: what arrived while it was frozen is not learnt."""
    frozen, state.frozen = state.frozen, None
    if frozen is None or not forget:
        return
    window = list(state.events)[-settings.window_size :]
    state.events = deque([*frozen, *window], maxlen=state.events.maxlen)
