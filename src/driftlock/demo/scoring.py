"""Score alarms against labelled episodes: what was found, how late, and what cried wolf.

Positions are event indexes in the order the traffic was sent. Alarms are what
:func:`driftlock.alarms.raised` makes of the anomalous detections: confirmed, once per incident. A
detection judges the last ``window`` events, so an alarm raised up to ``window`` events after an
episode ends still sees it and counts for it; an alarm that covers no episode is a false alarm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Episode", "Score", "score"]


@dataclass(frozen=True)
class Episode:
    kind: str
    start: int  # first event index of the episode
    end: int  # last event index of the episode

    def covers(self, alarm: int, window: int) -> bool:
        return self.start <= alarm <= self.end + window


@dataclass(frozen=True)
class EpisodeResult:
    episode: Episode
    found: bool
    delay: int | None  # events from the episode's start to the first alarm that covers it


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


def score(episodes: Sequence[Episode], alarms: Sequence[int], *, window: int, normal_events: int) -> Score:
    if window < 1:
        raise ValueError(f"window must be at least 1 event, got {window}")
    ordered = sorted(alarms)
    results = []
    for episode in episodes:
        covering = [a for a in ordered if episode.covers(a, window)]
        results.append(EpisodeResult(episode, bool(covering), covering[0] - episode.start if covering else None))
    false_alarms = sum(1 for a in ordered if not any(e.covers(a, window) for e in episodes))
    by_kind: dict[str, tuple[int, int]] = {}
    for r in results:
        found, injected = by_kind.get(r.episode.kind, (0, 0))
        by_kind[r.episode.kind] = (found + r.found, injected + 1)
    return Score(results, len(ordered), false_alarms, normal_events, by_kind)
