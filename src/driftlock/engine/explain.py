"""``why``: one sentence a person can act on.

It names the strongest signal, the events that are far more frequent in the window than in the
baseline (what the rarity score of the test reacts to: a burst of failed logins is made of events
the baseline has seen), and the window events that cost the most bytes to compress given the
baseline, i.e. the events the baseline explains worst.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import zstandard

from driftlock.engine.cbad import Detection
from driftlock.engine.leaves import leaves
from driftlock.engine.surprise import FieldModel
from driftlock.engine.tokenize import coarse

__all__ = [
    "Explanation",
    "FieldChange",
    "Surge",
    "changed_fields",
    "event_value",
    "explain",
    "field_text",
    "most_unusual",
    "surging",
]

SURGE_P = 1e-4
"""An event is named as surging when a count at least as high as its count in the window would have
probability below this if it kept its baseline rate (a Poisson tail): 16 failed logins where the
baseline rate predicts 0.1 are named; 4 searches for "lamp" where it predicts 0.7 are not."""


FIELD_EXCESS = 2.0
"""A field value is named as changed when its surprisal is at least this many of its field's spreads above the
field's mean (:class:`.surprise.FieldModel`) and the window holds it far more often than the baseline (SURGE_P)."""

FREQUENCY_SIGNAL = "events the baseline saw rarely are far more frequent"
FIELD_SIGNAL = "a field took values the baseline rarely had"
_SIGNALS = {
    "novelty": "structurally new events (conditional novelty {d.conditional_novelty:.2f})",
    "distance": "the window is far from the baseline (NCD {d.ncd:.2f})",
    "compression": "the window compresses {pct:.0f}% worse than the baseline",
    "entropy": "byte entropy rose {ent:.0f}% over the baseline",
}


def most_unusual(baseline: Sequence[bytes], window: Sequence[bytes], limit: int = 3) -> list[bytes]:
    """Distinct window events ordered by their compressed cost given the baseline, highest first."""
    dictionary = zstandard.ZstdCompressionDict(
        b"".join(e + b"\n" for e in baseline), dict_type=zstandard.DICT_TYPE_RAWCONTENT
    )
    compressor = zstandard.ZstdCompressor(level=3, dict_data=dictionary)
    costs: dict[bytes, int] = {}
    for event in window:
        if event not in costs:
            costs[event] = len(compressor.compress(event))
    ranked = sorted(costs, key=lambda e: (-costs[e], window.index(e)))
    return ranked[:limit]


def log_poisson_tail(count: int, expected: float) -> float:
    """ln P(X >= count) for X ~ Poisson(expected), summed from ``count`` up (bounded: the terms fall
    fast once k exceeds ``expected``), so tiny tails keep their order instead of rounding to 0."""
    if count <= 0:
        return 0.0
    log_term = -expected + count * math.log(expected) - math.lgamma(count + 1)
    total, term = 1.0, 1.0
    for k in range(count + 1, count + 200):
        term *= expected / k
        total += term
        if term < 1e-12 * total:
            break
    return min(0.0, log_term + math.log(total))


def surging(baseline: Sequence[bytes], window: Sequence[bytes]) -> list[tuple[bytes, int, int]]:
    """Kinds of event (:func:`.tokenize.coarse`, as the frequency score counts them) the baseline has seen
    that are far more frequent in the window than their rate predicts (SURGE_P): (the kind's most common
    event in the window, the kind's count in the window, its count in the baseline), least likely first."""
    in_window, in_baseline = Counter(map(coarse, window)), Counter(map(coarse, baseline))
    scale = len(window) / len(baseline)
    tails = {
        kind: log_poisson_tail(count, (in_baseline[kind] + 0.5) * scale)
        for kind, count in in_window.items()
        if in_baseline[kind] > 0
    }
    found = sorted((tail, kind) for kind, tail in tails.items() if tail < math.log(SURGE_P))
    if not found:
        return []
    shown = {kind: Counter(e for e in window if coarse(e) == kind).most_common(1)[0][0] for _, kind in found}
    return [(shown[kind], in_window[kind], in_baseline[kind]) for _, kind in found]


def _shorten(value: Any, limit: int) -> Any:
    if isinstance(value, str) and len(value) > limit:
        return value[: limit - 1] + "…"
    if isinstance(value, dict):
        return {k: _shorten(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [_shorten(v, limit) for v in value]
    return value


def describe(event: bytes, width: int = 140, value_width: int = 40) -> str:
    """A short, readable rendering of one event: its body when it has one, each long value cut
    (so that one long query does not push the route and status out of the sentence)."""
    try:
        value = json.loads(event)
    except ValueError:
        text = event.decode("utf-8", "replace")
    else:
        if isinstance(value, dict) and "body" in value:
            value = value["body"]
        text = json.dumps(_shorten(value, value_width), separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


@dataclass(frozen=True)
class Surge:
    """A known event far more frequent in the window than its baseline rate predicts."""

    event: bytes
    count: int  # in the window
    window: int  # events in the window
    baseline_count: int
    baseline: int  # events in the baseline


@dataclass(frozen=True)
class FieldChange:
    """A field value the window holds far more often than the baseline, and unusual in its field."""

    field: str  # dotted path ("body.duration"); a part of free text as "message|template|n"
    value: str
    count: int  # window events holding it
    window: int
    baseline_count: int
    baseline: int

    def describe(self) -> str:
        return field_text(self.field, self.value)


def field_text(field: str, value: Any) -> str:
    """A field value as a person reads it: ``duration <250ms``; a part of free text by its template."""
    field = field.removeprefix("body.")
    if "|" in field:  # a variable part of free text: name the text's template
        base, template, _ = field.split("|", 2)
        field = f"{base} ({_shorten(template, 40)})"
    return f"{field} {_shorten(str(value), 40)}"


def changed_fields(baseline: Sequence[bytes], window: Sequence[bytes], limit: int = 2) -> list[FieldChange]:
    """Field values far more frequent in the window than in the baseline and unusual in their field (a
    duration several steps above any usual one, a status the baseline rarely had), least likely first: what
    the field surprise score reacts to, named for a person."""
    in_window: Counter[tuple[str, str]] = Counter()
    for event in window:
        in_window.update(set(leaves(event)))
    candidates = [(pair, n) for pair, n in in_window.items() if n >= 2 and not pair[0].endswith("#")]
    if not candidates:
        return []
    model = FieldModel(baseline)
    scale = len(window) / len(baseline)
    found = []
    for pair, count in candidates:
        if model.excess(pair) < FIELD_EXCESS:
            continue
        before = model.counts.get(pair, 0)
        tail = log_poisson_tail(count, (before + 0.5) * scale)
        if tail < math.log(SURGE_P):
            found.append((tail, pair, count, before))
    found.sort()
    return [FieldChange(p[0], p[1], n, len(window), b, len(baseline)) for _, p, n, b in found[:limit]]


@dataclass(frozen=True)
class Explanation:
    """Why a window is anomalous, as structure: the strongest signal, the surging events with their
    counts, and the window events least like the baseline. :meth:`why` renders it as one sentence."""

    signal: str  # "frequency" when surges lead, else the strongest effect size's name
    headline: str
    p_value: float
    confidence: float
    surges: tuple[Surge, ...] = ()
    least_like: tuple[bytes, ...] = ()
    fields: tuple[FieldChange, ...] = ()

    def why(self) -> str:
        text = f"Anomalous window: {self.headline}, p={self.p_value:.3f}, {100 * self.confidence:.0f}% confidence"
        if self.fields:
            changed = "; ".join(
                f"{f.describe()} ({f.count} of {f.window} events, {f.baseline_count} of {f.baseline} before)"
                for f in self.fields
            )
            text += f"; values the baseline rarely had: {changed}"
        if self.surges:
            frequent = "; ".join(
                f"{describe(s.event)} ({s.count} of {s.window} events, {s.baseline_count} of {s.baseline} before)"
                for s in self.surges
            )
            text += f"; far more frequent than in the baseline: {frequent}"
        if self.least_like:
            text += "; least like the baseline: " + "; ".join(describe(e) for e in self.least_like)
        return text

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: events as the values they encode."""
        return {
            "signal": self.signal,
            "headline": self.headline,
            "surges": [
                {
                    "event": event_value(s.event),
                    "count": s.count,
                    "window": s.window,
                    "baseline_count": s.baseline_count,
                    "baseline": s.baseline,
                }
                for s in self.surges
            ],
            "least_like": [{"event": event_value(e)} for e in self.least_like],
            "fields": [
                {
                    "field": f.field,
                    "value": f.value,
                    "count": f.count,
                    "window": f.window,
                    "baseline_count": f.baseline_count,
                    "baseline": f.baseline,
                }
                for f in self.fields
            ],
        }


def event_value(event: bytes) -> Any:
    """The JSON value an event's bytes encode (its text when they are not JSON)."""
    try:
        return json.loads(event)
    except ValueError:
        return event.decode("utf-8", "replace")


def explain(detection: Detection, baseline: Sequence[bytes], window: Sequence[bytes], limit: int = 3) -> Explanation:
    surges = [Surge(e, n, len(window), b, len(baseline)) for e, n, b in surging(baseline, window)[:limit]]
    fields = changed_fields(baseline, window)
    # A surge of known events is the finding when there is one, else a field's unusual values: the effect
    # sizes, made to see new structure, then only say that the window differs.
    signal = "frequency" if surges else "field" if fields else detection.strongest_signal
    headline = (
        FREQUENCY_SIGNAL if surges else FIELD_SIGNAL if fields else _SIGNALS[detection.strongest_signal]
    ).format(
        d=detection,
        pct=-100 * detection.compression_ratio_change,
        ent=100 * detection.entropy_change,
    )
    shown = {s.event for s in surges}
    unusual = [e for e in most_unusual(baseline, window, limit) if e not in shown][: limit - len(surges)]
    return Explanation(
        signal, headline, detection.p_value, detection.confidence_level, tuple(surges), tuple(unusual), tuple(fields)
    )
