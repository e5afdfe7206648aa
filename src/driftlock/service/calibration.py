"""The stream's p-value threshold, and its record of how often ordinary detections reach each level.

The engine's p-value is calibrated per stream by the engine itself: it is the larger of the permutation
p-value and the window's rank among the stream's own recent ordinary windows (:mod:`driftlock.engine.history`),
so ordinary detections reach p <= 0.01 about one time in a hundred also on session-shaped traffic, where a
permutation of single events alone reached it one time in six (README, "Detection quality"). Moving the
threshold instead (the reference's FPR-target calibration, API-AND-CBAD.md §2.11, as this module did
before) cannot repair a p-value of 0, which passes every threshold. So the threshold is fixed: P_VALUE, at
most the profile's; a threshold given in the request's ``config_override`` is used as given. The counts
(fading over HALF_LIFE detections) stay in the stream's meta as the stream's own calibration check.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

from driftlock.engine.history import StatisticHistory
from driftlock.engine.stream import StreamState

__all__ = ["LEVELS", "P_VALUE", "observe", "remember", "restore", "threshold"]

P_VALUE = 0.005
"""The anomaly threshold: with an honest p, about one ordinary detection in 200, and an incident (three
confirming detections within a window) far rarer."""
LEVELS = (0.05, 0.02, 0.01, 0.005, 0.002, 0.0)
HALF_LIFE = 500
HISTORY_KEY = "statistics"
_DECAY = 0.5 ** (1 / HALF_LIFE)


def threshold(calibration: Mapping[str, Any] | None, ceiling: float) -> float:
    """The p-value threshold of the stream's anomalies: P_VALUE, at most ``ceiling`` (the profile's)."""
    return min(ceiling, P_VALUE)


def observe(calibration: Mapping[str, Any] | None, p_values: Iterable[float]) -> dict[str, Any]:
    """The record after these ordinary detections' p-values (JSON-ready, for the stream's meta)."""
    n = float((calibration or {}).get("n", 0.0))
    hits = {str(level): float((calibration or {}).get("hits", {}).get(str(level), 0.0)) for level in LEVELS}
    for p in p_values:
        n = n * _DECAY + 1.0
        for level in LEVELS:
            key = str(level)
            hits[key] = hits[key] * _DECAY + (1.0 if p <= level else 0.0)
    return {"n": round(n, 3), "hits": {k: round(v, 4) for k, v in hits.items()}}


def restore(meta: Mapping[str, Any], engine: StreamState) -> None:
    """Give a stream state loaded without its history (a new process, another replica) the saved one."""
    if not len(engine.history) and meta.get(HISTORY_KEY):
        engine.history = StatisticHistory.from_json(meta[HISTORY_KEY])


def remember(meta: MutableMapping[str, Any], engine: StreamState) -> None:
    """Copy the stream's history into its meta (with the rest of the stream's state, every call that
    detected), so a restarted server or another replica over the same store goes on from it."""
    meta[HISTORY_KEY] = engine.history.to_json()
