"""Per-stream calibration of the decision threshold to a target false-positive rate.

A permutation p-value is exact only when the window's events are exchangeable with the baseline's.
Real traffic is not: it comes in sessions and bursts, and windows overlap, so a stream's ordinary
windows reach p <= 0.05 far more often than one time in twenty (from 3% to 30% of detections,
depending on how varied its events are; README, "Detection quality"). So each stream counts how
often its own ordinary detections (those outside incidents) reach each of a few p-value levels, with
counts that fade over HALF_LIFE detections, and a detection is anomalous only at the largest level
that the stream's ordinary traffic reaches at most TARGET_RATE of the time: the reference's
FPR-target calibration (API-AND-CBAD.md §2.11), on p rather than on the composite score. TARGET_RATE
sits a little under the 1% it stands for: the estimate follows the stream's traffic with a lag, and
the levels are coarse, so a stream calibrated to exactly 1% runs a little above it. Until a stream
has MIN_DETECTIONS ordinary detections, WARM_UP_P_VALUE applies: the p-value a permutation test of
ordinary traffic reaches about 1% of the time (at 0.01, and from the profile's 0.05 all the more,
streams of SDK-shaped events ran above 1%; README, "Detection quality"). A threshold given in the
request's ``config_override`` is used as given: a check that must flag one odd event in a small
window needs it, since p cannot fall below about the window over its pool.

A threshold on p cannot help where ordinary windows reach p = 0, as a site's sessions make them do.
So the stream also keeps the test statistics of its last STATISTICS ordinary detections (in units of
the statistic's spread under relabelling) and measures its *dependence*: how much wider they run
than on traffic of independent events, by the ratio of their DEPENDENCE_QUANTILE to
INDEPENDENT_QUANTILE, the same quantile on streams of independent events (README, "Detection
engine"). The permutation test then judges the statistic divided by it (a design effect, as in
cluster sampling), and p is again about uniform on the stream's ordinary windows. A window's statistic
joins the ordinary ones only once it is HELD_WINDOWS windows old with no incident opened meanwhile:
the windows that open an incident (and the onset before them) are not ordinary, and counted they
widened the measure after every attack. A quantile and not the largest value: an attack that went
untold leaves a few windows among the ordinary ones, and they do not move it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["LEVELS", "TARGET_RATE", "dependence", "held", "observe", "threshold"]

TARGET_RATE = 0.008
LEVELS = (0.05, 0.02, 0.01, 0.005, 0.002, 0.0)
"""Candidate thresholds, loosest first; 0.0 keeps only windows no permutation reached."""
HALF_LIFE = 500
MIN_DETECTIONS = 100
WARM_UP_P_VALUE = 0.005
_DECAY = 0.5 ** (1 / HALF_LIFE)
STATISTICS = 250
"""Ordinary detections whose statistics the dependence is measured on (hop 10: 2,500 events)."""
MIN_STATISTICS = 100
DEPENDENCE_QUANTILE = 0.9
INDEPENDENT_QUANTILE = 2.0
MAX_DEPENDENCE = 4.0
HELD_WINDOWS = 2


def threshold(calibration: Mapping[str, Any] | None, ceiling: float) -> float:
    """The p-value threshold this stream's ordinary traffic allows, at most ``ceiling`` (the profile's)."""
    if not calibration or float(calibration.get("n", 0)) < MIN_DETECTIONS:
        return min(ceiling, WARM_UP_P_VALUE)
    n = float(calibration["n"])
    hits = calibration.get("hits", {})
    for level in LEVELS:
        if level <= ceiling and float(hits.get(str(level), 0.0)) <= TARGET_RATE * n:
            return level
    return 0.0


def dependence(calibration: Mapping[str, Any] | None) -> float:
    """How much wider this stream's ordinary statistics run than those of independent events (>= 1)."""
    statistics = sorted(float(z) for z in (calibration or {}).get("statistics", ()))
    if len(statistics) < MIN_STATISTICS:
        return 1.0
    quantile = statistics[min(len(statistics) - 1, int(DEPENDENCE_QUANTILE * len(statistics)))]
    return min(MAX_DEPENDENCE, max(1.0, quantile / INDEPENDENT_QUANTILE))


def held(calibration: Mapping[str, Any] | None) -> list[tuple[int, float]]:
    """The (position, statistic) of the detections outside incidents that are not yet old enough to count."""
    return [(int(position), float(z)) for position, z in (calibration or {}).get("held", ())]


def observe(
    calibration: Mapping[str, Any] | None,
    p_values: Iterable[float],
    waiting: Iterable[tuple[int, float]] = (),
    *,
    position: int = 0,
    window: int = 50,
) -> dict[str, Any]:
    """The calibration after these ordinary detections' p-values, with the statistics ``waiting`` to join
    (:func:`held`, plus this call's, less those of an incident that opened): those HELD_WINDOWS windows
    before ``position`` (the stream's events so far) join the ordinary ones (JSON-ready, for the meta)."""
    n = float((calibration or {}).get("n", 0.0))
    hits = {str(level): float((calibration or {}).get("hits", {}).get(str(level), 0.0)) for level in LEVELS}
    for p in p_values:
        n = n * _DECAY + 1.0
        for level in LEVELS:
            key = str(level)
            hits[key] = hits[key] * _DECAY + (1.0 if p <= level else 0.0)
    due = position - HELD_WINDOWS * window
    waiting = list(waiting)
    joining = [round(z, 3) for at, z in waiting if at <= due]
    recent = [*(calibration or {}).get("statistics", ()), *joining][-STATISTICS:]
    still = [[at, round(z, 3)] for at, z in waiting if at > due][-STATISTICS:]
    return {"n": round(n, 3), "hits": {k: round(v, 4) for k, v in hits.items()}, "statistics": recent, "held": still}
