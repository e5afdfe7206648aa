"""Auto-tuning from feedback: a stream's thresholds move so that its confirmed false positives would
not have fired (the reference's FPR-target calibration, API-AND-CBAD.md §1.8 and §2.11).

Every feedback on one of a stream's anomalies is counted in the stream's ``meta["tuning"]`` (under
the stream's lock), with the anomaly's metrics for the labels tuning learns from: the last
:data:`KEPT_LABELS` false positives and confirmations. When the stream's ``auto_tune_enabled`` is
on, a feedback may then change one threshold:

* only once the stream has had :data:`MIN_FEEDBACK` feedbacks in all (the reference waits for 20;
  3 keeps a small stream tunable);
* at most once per :data:`COOLDOWN_SECONDS` of wall time, so one burst of feedback cannot swing it;
* only for the false positives that a threshold can silence: the engine's decision (§2.7) fires on
  ``ncd >= ncd_threshold and p <= p_value_threshold``, or on compression, entropy and novelty
  signals that no threshold gates; a false positive that fired on the latter is counted, not tuned on;
* to the (1 − :data:`FPR_TARGET`) quantile of the false positives' NCD, just above it (with fewer than
  a hundred labels, just above the largest): the NCD threshold is raised so that none of them would
  pass. Where that would exceed the bound, or would also silence a confirmed anomaly that lowering the
  p-value threshold spares, the p-value threshold is lowered below theirs instead. Either stays within
  the reference's bounds (``autotune.go``): NCD 0.1-0.8, p 0.001-0.2.

A change makes the stream's profile ``custom`` (the tuned thresholds over the sizes of the profile it
had) and is recorded in the tuning history, newest first, with its reason. The profile's p-value
threshold, tuned or not, is the ceiling under which the stream's own calibration
(:mod:`driftlock.service.calibration`) picks the level its ordinary traffic allows; lowering the ceiling
below a false positive's p silences it at any level.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from driftlock.engine.cbad import COMPOSITE_PASS, CR_DROP, ENTROPY_JUMP, NOVELTY_PASS
from driftlock.engine.settings import PERMUTATION_CAP
from driftlock.service.meta import StreamMeta
from driftlock.service.profiles import profile_settings, settings_values, with_thresholds
from driftlock.service.shapes import iso

__all__ = [
    "COOLDOWN_SECONDS",
    "MIN_FEEDBACK",
    "NCD_BOUNDS",
    "P_BOUNDS",
    "fires",
    "record_feedback",
    "tune",
    "tuning_view",
]

MIN_FEEDBACK = 3
COOLDOWN_SECONDS = 600.0
NCD_BOUNDS = (0.1, 0.8)
P_BOUNDS = (0.001, 0.2)
FPR_TARGET = 0.01
NCD_MARGIN = 0.005
KEPT_LABELS = 50
HISTORY = 20
METRICS = (
    "ncd",
    "p_value",
    "permutation_count",
    "compression_ratio_change",
    "entropy_change",
    "composite_score",
    "conditional_novelty",
)


def fires(metrics: Mapping[str, Any], ncd_threshold: float, p_value_threshold: float) -> bool:
    """The engine's decision (:func:`driftlock.engine.cbad.analyse`) for a detection's stored metrics
    at other thresholds (the figures it compares do not depend on the thresholds)."""
    ncd = float(metrics.get("ncd", 0.0))
    p = float(metrics.get("p_value", 1.0))
    ncd_pass = ncd >= ncd_threshold
    p_pass = p <= p_value_threshold
    drop = float(metrics.get("compression_ratio_change", 0.0)) <= CR_DROP
    jump = float(metrics.get("entropy_change", 0.0)) >= ENTROPY_JUMP
    composite_pass = float(metrics.get("composite_score", 0.0)) >= COMPOSITE_PASS
    novelty_pass = float(metrics.get("conditional_novelty", 0.0)) >= NOVELTY_PASS
    strong = ncd_pass and p_pass
    votes = drop + jump + composite_pass + novelty_pass
    return strong or (composite_pass and (votes >= 2 or ncd_pass)) or (novelty_pass and (votes >= 2 or strong))


def _p_floor(metrics: Mapping[str, Any]) -> float:
    """The least p-value the detection's full permutation test could have reached: its p was measured
    over ``permutation_count`` permutations of at most PERMUTATION_CAP (the test stops once the
    decision is certain), so the full count was at least what those found."""
    done = max(1, int(metrics.get("permutation_count", 1) or 1))
    count = round(float(metrics.get("p_value", 1.0)) * done)
    return count / max(done, PERMUTATION_CAP)


def _state(meta: StreamMeta) -> dict[str, Any]:
    state = meta.get("tuning")
    if not isinstance(state, dict):
        state = meta["tuning"] = {}
    state.setdefault("feedback", {"false_positive": 0, "confirmed": 0, "dismissed": 0})
    state.setdefault("false_positives", [])
    state.setdefault("confirmed", [])
    state.setdefault("history", [])
    return state


def record_feedback(meta: StreamMeta, anomaly: Mapping[str, Any], feedback_type: str, now: float) -> None:
    """Count one feedback on ``anomaly`` (a stored anomaly record) and keep its label (the latest
    label of an anomaly wins)."""
    state = _state(meta)
    counts = state["feedback"]
    counts[feedback_type] = int(counts.get(feedback_type, 0)) + 1
    anomaly_id = str(anomaly.get("id"))
    for key in ("false_positives", "confirmed"):
        state[key] = [label for label in state[key] if label.get("anomaly_id") != anomaly_id]
    kept = {"false_positive": "false_positives", "confirmed": "confirmed"}.get(feedback_type)
    if kept is not None:
        metrics = anomaly.get("metrics") or {}
        label = {"anomaly_id": anomaly_id, "at": now, "metrics": {k: metrics[k] for k in METRICS if k in metrics}}
        state[kept] = [*state[kept], label][-KEPT_LABELS:]


@dataclass(frozen=True)
class _Move:
    tune_type: str  # ncd_threshold | pvalue_threshold
    old: float
    new: float
    ncd: float
    p: float
    silenced: int
    spared: int  # confirmed anomalies that still fire


def _candidates(fps: list[Mapping[str, Any]], confirmed: list[Mapping[str, Any]], ncd: float, p: float) -> list[_Move]:
    moves = []
    scores = sorted(float(m.get("ncd", 0.0)) for m in fps)
    quantile = scores[round((len(scores) - 1) * (1 - FPR_TARGET))]
    new_ncd = round(math.floor((quantile + NCD_MARGIN) * 1000 + 1) / 1000, 3)
    if ncd < new_ncd <= NCD_BOUNDS[1]:
        moves.append(_Move("ncd_threshold", ncd, max(NCD_BOUNDS[0], new_ncd), max(NCD_BOUNDS[0], new_ncd), p, 0, 0))
    floor = min(_p_floor(m) for m in fps)
    new_p = math.floor(floor * 0.9 * 10_000) / 10_000
    if P_BOUNDS[0] <= new_p < p:
        moves.append(_Move("pvalue_threshold", p, new_p, ncd, new_p, 0, 0))
    out = []
    for move in moves:
        silenced = sum(not fires(m, move.ncd, move.p) for m in fps)
        spared = sum(fires(m, move.ncd, move.p) for m in confirmed)
        if silenced:
            out.append(_Move(move.tune_type, move.old, move.new, move.ncd, move.p, silenced, spared))
    return out


def tune(meta: StreamMeta, now: float) -> dict[str, Any] | None:
    """Change one threshold of the stream if its feedback calls for it (see the module); the tuning
    history entry it recorded, or None."""
    if not meta.get("auto_tune_enabled"):
        return None
    state = _state(meta)
    counts = state["feedback"]
    total = sum(int(v) for v in counts.values())
    if total < MIN_FEEDBACK:
        return None
    last = state.get("last_tuned_at")
    if isinstance(last, int | float) and now - last < COOLDOWN_SECONDS:
        return None
    base = profile_settings(meta)
    ncd, p = base.ncd_threshold, base.p_value_threshold
    labels = [label["metrics"] for label in state["false_positives"]]
    firing = [m for m in labels if fires(m, ncd, p)]
    tunable = [m for m in firing if not fires(m, math.inf, 0.0)]
    if not tunable:
        return None
    confirmed = [label["metrics"] for label in state["confirmed"] if fires(label["metrics"], ncd, p)]
    moves = _candidates(tunable, confirmed, ncd, p)
    if not moves:
        return None
    move = max(moves, key=lambda m: (m.silenced, m.spared, m.tune_type == "ncd_threshold"))
    meta["custom"] = settings_values(with_thresholds(base, move.ncd, move.p))
    meta["profile"] = "custom"
    state["last_tuned_at"] = now
    rate = counts.get("false_positive", 0) / total
    others = len(firing) - len(tunable)
    if move.tune_type == "ncd_threshold":
        what = f"raised above their largest NCD ({max(float(m['ncd']) for m in tunable):.3f})"
    else:
        what = f"lowered below their p-values (least {min(_p_floor(m) for m in tunable):.4f})"
    reason = (
        f"{move.silenced} of {len(tunable)} false positive(s) would have fired at ncd_threshold {ncd:g}, "
        f"pvalue_threshold {p:g}; {move.tune_type} {what} so they would not"
        + (f"; {others} more fired on signals no threshold gates" if others else "")
        + (f"; {len(confirmed) - move.spared} confirmed anomaly(ies) would no longer fire" if confirmed else "")
        + f" (feedback: {counts.get('false_positive', 0)} false positive(s) of {total})"
    )
    entry = {
        "tune_type": move.tune_type,
        "old_value": move.old,
        "new_value": move.new,
        "reason": reason,
        "confidence": round(rate, 4),
        "created_at": iso(now),
    }
    state["history"] = [entry, *state["history"]][:HISTORY]
    return entry


def tuning_view(meta: Mapping[str, Any], current_settings: dict[str, Any]) -> dict[str, Any]:
    """``GET /v1/streams/{id}/tuning`` (``meta`` is not changed)."""
    state = _state({"tuning": copy.deepcopy(meta.get("tuning") or {})})
    counts = state["feedback"]
    total = sum(int(v) for v in counts.values())
    return {
        "current_settings": current_settings,
        "tune_history": list(state["history"])[:HISTORY],
        "feedback_stats": {
            "total_feedback": total,
            "false_positives": int(counts.get("false_positive", 0)),
            "confirmed": int(counts.get("confirmed", 0)),
            "dismissed": int(counts.get("dismissed", 0)),
            "false_positive_rate": round(counts.get("false_positive", 0) / total, 4) if total else 0.0,
        },
        "auto_tune": {
            "enabled": bool(meta.get("auto_tune_enabled", False)),
            "min_feedback": MIN_FEEDBACK,
            "cooldown_seconds": COOLDOWN_SECONDS,
            "last_tuned_at": iso(state.get("last_tuned_at")),
        },
    }
