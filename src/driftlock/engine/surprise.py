"""The field surprise score: how unlike the reference an event's most unusual field value is.

Whole-event scores cannot see one field changing in events that are all different (exact paths,
agents, free text: raw events as SDK users send them), and a latency spike, an error status or an
endpoint never called is then all that changed. So each leaf of an event (:mod:`.leaves`) is judged
in its own field, by a tail probability under the reference rather than by its bare frequency:

* a category, by the reference's share of values at most as common as this one. A value never
  seen counts as the reference's values seen once (Good and Turing's estimate of how often a new
  value turns up), so in a field whose values are mostly new (search terms, a user's id), a new one
  is ordinary, and in one that takes a few values (an HTTP status), it is not;
* a magnitude (``<250``, ``<5000ms``), by its two-sided tail among the field's magnitudes of the
  same unit, taken one step of the scale toward the field's median: a duration several steps
  beyond all the reference's durations is surprising, one between two commonly seen is not,
  whether or not its exact bucket was seen, and one a step past the largest seen is as unusual as
  the largest seen, no more (a loaded machine moves durations by a step).

A field's surprisal (-log2 of that probability) is then measured in standard deviations of the
field's own surprisal over the reference (at least one bit), so fields that are always varied
weigh no more than fields that never are, and the event's score is its largest such excess. Both
depend only on the reference, so the permutation test can relabel the pool freely.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import accumulate, chain

from driftlock.engine.leaves import leaves
from driftlock.engine.tokenize import measurement, neighbour

__all__ = ["FieldModel", "field_surprise"]

MIN_SPREAD = 1.0
"""Bits: the least spread a field's surprisal is measured in, so a field that never varied in the
reference does not turn a fraction of a bit into many deviations."""


class _Categories:
    """One field's values as categories: the reference's mass of values seen at most c times."""

    def __init__(self, counts: Iterable[int]) -> None:
        mass = Counter[int]()
        for c in counts:
            mass[c] += c
        self.levels = sorted(mass)
        self.cumulative = list(accumulate(mass[c] for c in self.levels))
        self.total = self.cumulative[-1]

    def bits(self, count: int) -> float:
        at_most = bisect_right(self.levels, max(count, 1))
        mass = self.cumulative[at_most - 1] if at_most else 0
        return math.log2((self.total + 1) / (mass + 0.5))


class _Magnitudes:
    """One field's magnitudes of one unit, ordered: the two-sided tail of a bound among them."""

    def __init__(self, bounds: Counter[float]) -> None:
        self.bounds = sorted(bounds)
        self.cumulative = list(accumulate(bounds[b] for b in self.bounds))
        self.total = self.cumulative[-1]

    def bits(self, bound: float) -> float:
        # one step toward the field's middle first: a value one step past the largest seen is as
        # surprising as the largest seen (timing jitter moves a duration a step; a spike, several)
        middle = self.bounds[bisect_left(self.cumulative, self.total / 2)]
        bound = neighbour(bound, middle)
        below = bisect_right(self.bounds, bound)
        at_most = self.cumulative[below - 1] if below else 0
        under = bisect_left(self.bounds, bound)
        at_least = self.total - (self.cumulative[under - 1] if under else 0)
        return max(0.0, math.log2((self.total + 1) / (2 * (min(at_most, at_least) + 0.5))))


class FieldModel:
    """The reference's fields: what a leaf's surprisal is, and how much each field's usually is."""

    def __init__(self, reference: Sequence[bytes]) -> None:
        self.counts = Counter(chain.from_iterable(map(leaves, reference)))
        per_field: dict[str, list[int]] = {}
        per_unit: dict[tuple[str, str], Counter[float]] = {}
        for (path, value), count in self.counts.items():
            per_field.setdefault(path, []).append(count)
            measured = measurement(value)
            if measured is not None:
                per_unit.setdefault((path, measured[1]), Counter())[measured[0]] += count
        self.categories = {path: _Categories(counts) for path, counts in per_field.items()}
        self.magnitudes = {key: _Magnitudes(bounds) for key, bounds in per_unit.items()}
        self._bits: dict[tuple[str, str], float] = {}
        sums: dict[str, list[float]] = {}
        for pair, count in self.counts.items():
            bits = self.bits(pair)
            s = sums.setdefault(pair[0], [0.0, 0.0, 0.0])
            s[0] += count
            s[1] += count * bits
            s[2] += count * bits * bits
        self.spread = {}
        for path, (n, total, squares) in sums.items():
            mean = total / n
            self.spread[path] = (mean, max(MIN_SPREAD, math.sqrt(max(0.0, squares / n - mean * mean))))

    def bits(self, pair: tuple[str, str]) -> float:
        """-log2 of the leaf's tail probability in its field; 0 for a field the reference never had
        (its appearance is the parent value's news, and the compressed cost's)."""
        cached = self._bits.get(pair)
        if cached is not None:
            return cached
        path, value = pair
        categories = self.categories.get(path)
        if categories is None:
            bits = 0.0
        else:
            measured = measurement(value)
            magnitudes = self.magnitudes.get((path, measured[1])) if measured is not None else None
            if measured is not None and magnitudes is not None:
                bits = magnitudes.bits(measured[0])
            else:
                bits = categories.bits(self.counts.get(pair, 0))
        self._bits[pair] = bits
        return bits

    def excess(self, pair: tuple[str, str]) -> float:
        """The leaf's surprisal over its field's mean, in the field's spreads; 0 for a field the
        reference never had."""
        spread = self.spread.get(pair[0])
        return 0.0 if spread is None else (self.bits(pair) - spread[0]) / spread[1]


def field_surprise(reference: Sequence[bytes], pool: Iterable[bytes]) -> dict[bytes, float]:
    """Each distinct pool event's field surprise under the reference: its largest leaf excess (>= 0).

    Each distinct leaf of the pool is judged once; the largest per event is then taken in C."""
    model = FieldModel(reference)
    events = {event: leaves(event) for event in pool}
    excess = {pair: model.excess(pair) for pair in set(chain.from_iterable(events.values()))}
    judged = excess.__getitem__
    return {event: max(0.0, max(map(judged, pairs), default=0.0)) for event, pairs in events.items()}
