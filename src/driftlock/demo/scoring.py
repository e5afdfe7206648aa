"""Score detections against labelled episodes: what was found, how late, and what cried wolf.

Positions are event indexes in the order the traffic was sent. A detection is a window of the last
``window`` events, so an alarm raised up to ``window`` events after an episode ends still sees it and
counts for it. Alarms closer together than a window are one alarm: a person is told once per
incident, not once per sliding window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Episode", "Score", "group_alarms", "score"]


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
    alarms: int  # alarm groups
    false_alarms: int  # alarm groups that cover no episode
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


def group_alarms(alarms: Sequence[int], window: int) -> list[list[int]]:
    """Sorted alarms, split wherever two are more than ``window`` events apart."""
    groups: list[list[int]] = []
    for alarm in sorted(alarms):
        if groups and alarm - groups[-1][-1] <= window:
            groups[-1].append(alarm)
        else:
            groups.append([alarm])
    return groups


def score(
    episodes: Sequence[Episode], alarms: Sequence[int], *, window: int, normal_events: int, min_detections: int = 1
) -> Score:
    """Attribute alarms to episodes. ``min_detections``: an incident of fewer anomalous detections is
    ignored (a persistence rule, for comparing alarm policies)."""
    if window < 1:
        raise ValueError(f"window must be at least 1 event, got {window}")
    alarms = [a for g in group_alarms(alarms, window) if len(g) >= min_detections for a in g]
    results = []
    for episode in episodes:
        covering = [a for a in sorted(alarms) if episode.covers(a, window)]
        results.append(EpisodeResult(episode, bool(covering), covering[0] - episode.start if covering else None))
    groups = group_alarms(alarms, window)
    false_alarms = sum(1 for g in groups if not any(e.covers(a, window) for a in g for e in episodes))
    by_kind: dict[str, tuple[int, int]] = {}
    for r in results:
        found, injected = by_kind.get(r.episode.kind, (0, 0))
        by_kind[r.episode.kind] = (found + r.found, injected + 1)
    return Score(results, len(groups), false_alarms, normal_events, by_kind)
