"""The stream's own null distribution of the test statistic: a conformal p-value over its recent windows.

A permutation of single events is exact only when the window's events are exchangeable with the pool's.
Real visitors come in sessions (one visitor's searches with ever-new words, a burst of logins), so a window
holding one session sits in the tail of the permutation distribution far more often than the test says.
The stream itself knows how often: each detection's statistic (the largest of the window's standardized
score sums, :func:`driftlock.engine.cbad.standardized`) is kept for the stream's recent ordinary windows,
and the window's *conformal* p-value is its rank among them (Vovk, Gammerman and Shafer, 2005): valid
whatever the dependence between consecutive events, as long as the stream's recent ordinary windows are
like its next one. The detection reports the larger of this and the permutation p-value, each valid under
its own null, so p keeps its meaning (the chance of a window at least this extreme when nothing changed)
on session-shaped traffic too.

Two corrections keep the rank honest:

* consecutive windows overlap (a window of 50 events moves 10 at a time), so one unusual stretch of
  traffic gives several statistics: ranks and counts are in units of ``overlap`` statistics (the
  detection uses the square root of window over hop: the whole ratio counts the history as that many
  times fewer windows than it holds, which measured twice as conservative as needed on session traffic);
* beyond the largest recent statistic the rank cannot go lower, so the tail is modelled: the excesses of
  the largest TAIL of the history over the smallest of them, as an exponential tail (peaks over a
  threshold: Pickands, 1975), and a window as far beyond the largest as the tail says is rare gets a
  p-value that small. A history holding only light ordinary windows (an even stream) then lets a clear
  change through at once; one whose ordinary windows are heavy-tailed (sessions) asks for more.

A new stream's history is seeded by its first detection with every window-sized run of the pool (its
previous windows, scored against the same reference). Each later window's statistic joins the history
HOLD detections later, so a window is compared only with windows it shares no event with (and an attack
that grows hop by hop is not compared with itself), and the statistics still held when an incident opens
are forgotten, so an attack does not teach the stream that attacks are ordinary.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterable, Mapping, Sequence

__all__ = ["HISTORY", "StatisticHistory"]

HISTORY = 1000
"""Statistics kept: about 10,000 events of a stream at the balanced hop."""
TAIL = 0.05
MIN_TAIL = 5
MIN_SCALE = 1.0
"""The least mean excess of the tail, in the statistic's units (standard deviations), so a history whose
largest values are all alike does not make a small step beyond them look extreme."""
HOLD = 10
"""Detections a statistic waits before it joins the history: two windows at the balanced sizes."""


class StatisticHistory:
    """The recent ordinary windows' statistics, oldest first, and the same sorted for ranking."""

    def __init__(self, values: Iterable[float] = (), size: int = HISTORY) -> None:
        self.values: deque[float] = deque(maxlen=size)
        self.sorted: list[float] = []
        self.pending: deque[float] = deque()
        self.added = 0  # statistics added since this object was made
        self.add(values)

    def __len__(self) -> int:
        return len(self.values)

    def add(self, values: Iterable[float]) -> None:
        for value in values:
            if len(self.values) == self.values.maxlen:
                del self.sorted[bisect_left(self.sorted, self.values[0])]
            self.values.append(value)
            insort(self.sorted, value)
            self.added += 1

    def observe(self, statistic: float) -> None:
        """An ordinary window's statistic: it joins the history HOLD detections later."""
        self.pending.append(statistic)
        while len(self.pending) > HOLD:
            self.add([self.pending.popleft()])

    def forget_pending(self) -> None:
        """An incident opened: the anomalous statistics still held are of it, not of ordinary traffic."""
        self.pending.clear()

    def p_value(self, statistic: float, overlap: float = 1.0) -> float:
        """The conformal p-value of ``statistic``, counted in independent windows of ``overlap``
        statistics each; 0 for an empty history (no evidence either way)."""
        n = len(self.sorted)
        if not n:
            return 0.0
        at_least = n - bisect_left(self.sorted, statistic)
        if at_least:
            return min(1.0, (overlap + at_least) / (overlap + n))
        k = max(MIN_TAIL, round(TAIL * n))
        top = self.sorted[-k:]
        scale = max(MIN_SCALE, sum(top) / len(top) - top[0])
        return overlap / (overlap + n) * math.exp(-(statistic - self.sorted[-1]) / scale)

    def to_json(self) -> dict[str, list[float]]:
        return {"values": list(self.values), "pending": list(self.pending)}

    @classmethod
    def from_json(cls, data: Mapping[str, Sequence[float]] | None) -> StatisticHistory:
        history = cls(float(v) for v in (data or {}).get("values", ()))
        history.pending.extend(float(v) for v in (data or {}).get("pending", ()))
        return history
