"""Score detections against labelled episodes: what was found, how late, and what cried wolf.

Positions are event indexes in the order the traffic was sent. Two outputs are scored:

* alarms (:func:`score`): what the application is told, confirmed and once per incident (today
  :func:`driftlock.alarms.raised` makes them of the anomalous detections). A detection judges the
  last ``window`` events, so an alarm raised up to ``window`` events after an episode ends still
  sees it and counts for it; an alarm that covers no episode is a false alarm.
* raw detections (:func:`score_raw`): every detection the engine ran and the anomalous ones
  ``detect()`` returns. A detection at position ``p`` judges events ``p - window + 1 .. p``; it is on
  ordinary traffic when that window holds no event of any episode. Scored: per-kind recall (an
  anomalous detection whose window holds the episode's events), and the share of detections on
  ordinary traffic that were anomalous.

Given a timestamp per event (``times``, seconds), delays are also measured in seconds: from the
episode's first event to the event at which the detection or alarm was made.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Episode", "EpisodeResult", "RawScore", "Score", "detection_positions", "median", "score", "score_raw"]


@dataclass(frozen=True)
class Episode:
    kind: str
    start: int  # first event index of the episode
    end: int  # last event index of the episode

    def covers(self, alarm: int, window: int) -> bool:
        return self.start <= alarm <= self.end + window

    def held(self, detection: int, window: int) -> bool:
        """Whether the window of a detection at ``detection`` holds any event of this episode."""
        return self.start <= detection and detection - window + 1 <= self.end


@dataclass(frozen=True)
class EpisodeResult:
    episode: Episode
    found: bool
    delay: int | None  # events from the episode's start to the first alarm that covers it
    seconds: float | None = None  # the same delay in seconds, when event times were given


def _by_kind(results: Sequence[EpisodeResult]) -> dict[str, tuple[int, int]]:
    by_kind: dict[str, tuple[int, int]] = {}
    for r in results:
        found, injected = by_kind.get(r.episode.kind, (0, 0))
        by_kind[r.episode.kind] = (found + r.found, injected + 1)
    return by_kind


@dataclass
class Score:
    episodes: list[EpisodeResult]
    alarms: int
    false_alarms: int  # alarms that cover no episode
    normal_events: int
    by_kind: dict[str, tuple[int, int]] = field(default_factory=dict)  # kind -> (found, injected)

    @property
    def found(self) -> int:
        return sum(r.found for r in self.episodes)

    @property
    def false_alarms_per_10k(self) -> float:
        return 10_000 * self.false_alarms / self.normal_events if self.normal_events else 0.0

    @property
    def delays(self) -> list[int]:
        return sorted(r.delay for r in self.episodes if r.delay is not None)

    @property
    def delays_seconds(self) -> list[float]:
        return sorted(r.seconds for r in self.episodes if r.seconds is not None)


def _result(episode: Episode, first: int | None, times: Sequence[float] | None) -> EpisodeResult:
    if first is None:
        return EpisodeResult(episode, False, None, None)
    seconds = times[first] - times[episode.start] if times is not None else None
    return EpisodeResult(episode, True, first - episode.start, seconds)


def _check(window: int, times: Sequence[float] | None, positions: Sequence[int]) -> None:
    if window < 1:
        raise ValueError(f"window must be at least 1 event, got {window}")
    if times is not None and positions and max(positions) >= len(times):
        raise ValueError(f"position {max(positions)} has no timestamp ({len(times)} given)")


def score(
    episodes: Sequence[Episode],
    alarms: Sequence[int],
    *,
    window: int,
    normal_events: int,
    times: Sequence[float] | None = None,
) -> Score:
    _check(window, times, alarms)
    ordered = sorted(alarms)
    results = []
    for episode in episodes:
        first = next((a for a in ordered if episode.covers(a, window)), None)
        results.append(_result(episode, first, times))
    false_alarms = sum(1 for a in ordered if not any(e.covers(a, window) for e in episodes))
    return Score(results, len(ordered), false_alarms, normal_events, _by_kind(results))


def detection_positions(events: int, *, baseline: int, window: int, hop: int) -> list[int]:
    """Where a stream of ``events`` events is judged: once the history holds baseline + window
    events, then every ``hop`` events (the documented rule, ``driftlock.engine.stream.ingest``)."""
    if min(baseline, window, hop) < 1:
        raise ValueError(f"baseline, window and hop must be at least 1, got {baseline}, {window}, {hop}")
    return list(range(baseline + window - 1, events, hop))


@dataclass
class RawScore:
    episodes: list[EpisodeResult]
    detections: int  # detections the engine ran
    anomalous: int  # of them, anomalous
    ordinary_detections: int  # detections whose window holds no episode event
    ordinary_anomalous: int  # of them, anomalous: false positives
    normal_events: int
    by_kind: dict[str, tuple[int, int]] = field(default_factory=dict)  # kind -> (found, injected)

    @property
    def found(self) -> int:
        return sum(r.found for r in self.episodes)

    @property
    def ordinary_share(self) -> float:
        """The share of detections on ordinary traffic that were anomalous (0 when none ran)."""
        return self.ordinary_anomalous / self.ordinary_detections if self.ordinary_detections else 0.0

    @property
    def false_per_10k(self) -> float:
        """Anomalous detections on ordinary traffic per 10,000 ordinary events."""
        return 10_000 * self.ordinary_anomalous / self.normal_events if self.normal_events else 0.0

    @property
    def delays(self) -> list[int]:
        return sorted(r.delay for r in self.episodes if r.delay is not None)

    @property
    def delays_seconds(self) -> list[float]:
        return sorted(r.seconds for r in self.episodes if r.seconds is not None)


def score_raw(
    episodes: Sequence[Episode],
    anomalous: Sequence[int],
    detections: Sequence[int],
    *,
    window: int,
    normal_events: int,
    times: Sequence[float] | None = None,
) -> RawScore:
    """Score every detection: ``detections`` are the positions of all of them, ``anomalous`` those
    that were anomalous (each must be one of ``detections``)."""
    _check(window, times, detections)
    judged = set(detections)
    stray = sorted(set(anomalous) - judged)
    if stray:
        raise ValueError(f"anomalous detection at {stray[0]} is not one of the detections run")
    flagged = sorted(set(anomalous))
    results = []
    for episode in episodes:
        first = next((a for a in flagged if episode.held(a, window)), None)
        results.append(_result(episode, first, times))
    ordinary = [d for d in judged if not any(e.held(d, window) for e in episodes)]
    ordinary_flagged = sum(1 for d in flagged if not any(e.held(d, window) for e in episodes))
    return RawScore(
        results, len(judged), len(flagged), len(ordinary), ordinary_flagged, normal_events, _by_kind(results)
    )


def median(values: Sequence[float]) -> float | None:
    """The median, or None for no values."""
    return statistics.median(values) if values else None
