"""Incidents: what a person is told, decided once per stream, where the whole stream is seen.

A detection judges a window of recent events and runs again every few events, so one incident makes
several anomalous detections in a row, while a p <= 0.05 test flags about one ordinary window in
twenty by chance, and, since windows overlap, one chance fluctuation flags several neighbours at once.
So an incident *opens* when ``confirmations`` anomalous detections, each at p <= ``p_value``, fall
within one window of events (one confirmation: every anomaly opens one). While it is open, every
anomalous detection joins it, and the stream's baseline is frozen, so an attack that goes on stays
anomalous rather than being learnt, and stays one incident. It *resolves* after ``quiet`` events with
no detection that could have opened it (at p <= ``p_value``; a window), and the baseline forgets what
arrived while it was open. Weaker anomalies join it without keeping it open, so how long an incident
lasts does not depend on how loose the stream's decision threshold is. An
incident open for ``max_span`` events is the stream's new normal: it resolves as ``absorbed`` and the
baseline learns it.

This module is the rule alone, on positions (event counts along the stream), and imports nothing of
the package: the service applies it under the stream's lock (:mod:`driftlock.service.incidents`), so
every process and host sending one stream sees one truth, and the exporter's per-process fallback
(:class:`driftlock.alarms.IncidentTracker`) applies the same rule to its own share. Figures: README,
"Incidents".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ALARM_P_VALUE", "DEFAULT_CONFIRMATIONS", "IncidentRule", "IncidentState", "merge_explanation", "route_of"]

DEFAULT_CONFIRMATIONS = 3
"""Three of the five detections that see a 50-event window (hop 10). On ``benchmarks/quality.py``
2 confirmations at p <= 0.02 found every episode too, with a shorter delay, but raised about three
times the false alarms of long quiet runs."""
ALARM_P_VALUE = 0.01
"""With more than one confirmation, a detection confirms an incident only at p <= this. Windows
overlap, so one chance fluctuation of ordinary traffic makes several neighbouring detections at
p of 0.01 to 0.05; real incidents measured here reach p <= 0.01 (most p = 0)."""
MAX_SPAN_BASELINES = 5
"""An incident open for this many baselines' worth of events is the stream's new normal."""
EXPLANATION_LIMITS = {"surges": 8, "least_like": 5, "routes": 8, "fields": 4}


@dataclass(frozen=True)
class IncidentRule:
    confirmations: int = DEFAULT_CONFIRMATIONS
    p_value: float = ALARM_P_VALUE
    window: int = 50
    quiet: int = 50
    max_span: int = 2000

    @classmethod
    def for_sizes(cls, baseline: int, window: int, confirmations: int | None = None) -> IncidentRule:
        return cls(
            confirmations=confirmations or DEFAULT_CONFIRMATIONS,
            window=window,
            quiet=window,
            max_span=MAX_SPAN_BASELINES * baseline,
        )

    def confirms(self, p_value: float) -> bool:
        return self.confirmations == 1 or p_value <= self.p_value


@dataclass
class IncidentState:
    """One stream's incident bookkeeping, stored with the stream.

    ``pending`` holds the confirming detections (position, anomaly id) of an incident not yet
    opened; ``open`` is the open incident's row (its id, times, positions, explanation)."""

    open: dict[str, Any] | None = None
    pending: list[tuple[int, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"open": self.open, "pending": [list(p) for p in self.pending]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> IncidentState:
        if not data:
            return cls()
        return cls(open=data.get("open"), pending=[(int(p), str(a)) for p, a in data.get("pending", [])])

    def confirm(self, rule: IncidentRule, position: int, anomaly_id: str) -> list[str] | None:
        """A confirming detection; the anomaly ids that open an incident, when they now do."""
        self.pending = [(p, a) for p, a in self.pending if position - p <= rule.window]
        self.pending.append((position, anomaly_id))
        if len(self.pending) < rule.confirmations:
            return None
        members = [a for _, a in self.pending]
        self.pending = []
        return members


def route_of(event: Any) -> str | None:
    """What an event names as where it happened: ``METHOD route`` for requests, a task, an endpoint."""
    if not isinstance(event, Mapping):
        return None
    body = event.get("body")
    fields: Mapping[str, Any] = body if isinstance(body, Mapping) else event
    for key in ("route", "endpoint", "path", "task", "name", "action"):
        value = fields.get(key)
        if isinstance(value, str | int) and str(value):
            method = fields.get("method")
            return f"{method} {value}" if isinstance(method, str) else str(value)
    return None


def _key(event: Any) -> str:
    import json

    return json.dumps(event, sort_keys=True, default=str)


def merge_explanation(current: Mapping[str, Any] | None, found: Mapping[str, Any]) -> dict[str, Any]:
    """An incident's evidence after one more anomaly: the surging events and the changed field values with
    their highest counts, the least-like events, and the routes they name (bounded)."""
    merged: dict[str, Any] = dict(current or {})
    merged.setdefault("summary", found.get("summary", ""))
    merged.setdefault("signal", found.get("signal", ""))
    surges = {_key(s["event"]): s for s in merged.get("surges", [])}
    for surge in found.get("surges", []):
        key = _key(surge["event"])
        if key not in surges or surge["count"] > surges[key]["count"]:
            surges[key] = surge
    merged["surges"] = sorted(surges.values(), key=lambda s: -int(s["count"]))[: EXPLANATION_LIMITS["surges"]]
    least = {_key(e["event"]): e for e in merged.get("least_like", [])}
    for item in found.get("least_like", []):
        if len(least) < EXPLANATION_LIMITS["least_like"]:
            least.setdefault(_key(item["event"]), item)
    merged["least_like"] = list(least.values())
    fields = {(f["field"], f["value"]): f for f in merged.get("fields", [])}
    for change in found.get("fields", []):
        pair = (change["field"], change["value"])
        if pair not in fields or change["count"] > fields[pair]["count"]:
            fields[pair] = change
    merged["fields"] = sorted(fields.values(), key=lambda f: -int(f["count"]))[: EXPLANATION_LIMITS["fields"]]
    routes = [r for item in (*merged["surges"], *merged["least_like"]) if (r := route_of(item["event"]))]
    merged["routes"] = list(dict.fromkeys(routes))[: EXPLANATION_LIMITS["routes"]]
    return merged
