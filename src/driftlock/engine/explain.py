"""``why``: one sentence a person can act on.

It names the strongest signal and the window events that cost the most bytes to compress given
the baseline, i.e. the events the baseline explains worst.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import zstandard

from driftlock.engine.cbad import Detection

__all__ = ["explain", "most_unusual"]

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


def explain(detection: Detection, baseline: Sequence[bytes], window: Sequence[bytes]) -> str:
    signal = _SIGNALS[detection.strongest_signal].format(
        d=detection,
        pct=-100 * detection.compression_ratio_change,
        ent=100 * detection.entropy_change,
    )
    events = "; ".join(describe(e) for e in most_unusual(baseline, window))
    return (
        f"Anomalous window: {signal}, p={detection.p_value:.3f}, "
        f"{100 * detection.confidence_level:.0f}% confidence; least like the baseline: {events}"
    )
