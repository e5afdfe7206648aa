"""A stream's incidents as the service keeps them: the rule (:mod:`driftlock.incident_rule`) applied to
each detection, under the stream's lock, with the incident rows it opens, grows and resolves.

:func:`step` is called once a detection, in order; it changes the stream's :class:`IncidentState` and
the rows, and says what the caller must do to the engine's baseline (freeze it on opening, thaw it on
resolving) and whom to tell (``changes``). It does no I/O.

An open incident does not swallow what comes next: when its evidence changes, it is *updated*, and
the application, the console and the webhooks are told, so an attack that starts during an open
incident is still told as itself. Evidence changes, conservatively, when a detection that could have
opened an incident (p <= the rule's ``p_value``) finds a route over-represented in its window that the
incident had not seen, holding at least :data:`NEW_SHARE` more of the window's events than of the
baseline the incident froze, or an NCD at least :data:`NCD_JUMP` above the highest the incident
reached. What arrives within one window of the opening (or of the last update) is the same onset: it
joins the evidence silently, so an attack whose window is still filling does not update its own
incident. Another signal counts when it comes with such a route.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from driftlock.incident_rule import (
    ALARM_P_VALUE,
    DEFAULT_CONFIRMATIONS,
    IncidentRule,
    IncidentState,
    merge_explanation,
    route_of,
)

__all__ = [
    "ALARM_P_VALUE",
    "DEFAULT_CONFIRMATIONS",
    "IncidentRule",
    "IncidentState",
    "Step",
    "incident_mark",
    "merge_explanation",
    "new_row",
    "over_represented",
    "route_of",
    "route_shares",
    "step",
]

NEW_SHARE = 0.2
"""A route new to the incident is new evidence when it holds at least this share of the window's events more
than it held of the baseline (a scanner's paths, a few percent each, never do)."""
OVER = 0.04
"""A route is over-represented when its share of the window exceeds its share of the baseline by this."""
NCD_JUMP = 0.2
"""An NCD this far above the incident's highest is new evidence (a jump in strength)."""
MAX_KNOWN_ROUTES = 100
MAX_UPDATES = 20
"""Updates kept on an incident's row, newest last (the console shows them)."""


@dataclass
class Step:
    """What one detection did to the stream's incidents."""

    opened: dict[str, Any] | None = None  # the row of the incident it opened (freeze the baseline)
    updated: dict[str, Any] | None = None  # the row of the open incident whose evidence it changed
    resolved: dict[str, Any] | None = None  # the row of the incident it resolved (thaw the baseline)
    absorbed: bool = False  # resolved as the stream's new normal: the baseline learns what came
    members: list[str] = field(default_factory=list)  # earlier anomalies that confirmed the opened incident
    changed: dict[str, Any] | None = None  # the row it changed (to store)


def incident_mark(incident_id: str | None, opened: bool, *, updated: bool = False) -> dict[str, Any] | None:
    """An anomaly's ``incident``: which incident it belongs to, and whether it opened it (or updated it)."""
    if incident_id is None:
        return None
    mark: dict[str, Any] = {"id": incident_id, "opened": opened}
    if updated:
        mark["updated"] = True
    return mark


def route_shares(events: Iterable[Any]) -> dict[str, float]:
    """Each route's share of ``events`` (decoded events; those naming no route count as ``?``)."""
    counts: dict[str, int] = {}
    total = 0
    for event in events:
        route = route_of(event) or "?"
        counts[route] = counts.get(route, 0) + 1
        total += 1
    return {route: n / total for route, n in counts.items()} if total else {}


def over_represented(window: Mapping[str, float], baseline: Mapping[str, float]) -> dict[str, float]:
    """The routes whose share of the window exceeds their share of the baseline by :data:`OVER`, with the excess."""
    excess = {route: share - baseline.get(route, 0.0) for route, share in window.items() if route != "?"}
    return {route: e for route, e in excess.items() if e >= OVER}


def _ncd(anomaly: Mapping[str, Any]) -> float:
    return float((anomaly.get("metrics") or {}).get("ncd") or 0.0)


def _evidence(row: dict[str, Any]) -> dict[str, Any]:
    """The row's evidence bookkeeping: the routes its surges named, its highest NCD, and the position from
    which a change counts as new (one window after the opening or the last update)."""
    found = row.get("evidence")
    if not isinstance(found, dict):
        found = row["evidence"] = {}
    found.setdefault("routes", [])
    found.setdefault("peak_ncd", 0.0)
    found.setdefault("settled_at", row["last_position"])  # a row stored before updates existed
    return found


def _changed(
    row: dict[str, Any], rule: IncidentRule, position: int, anomaly: Mapping[str, Any], over: dict[str, float]
) -> str | None:
    """What new evidence ``anomaly`` (whose window over-represents the routes ``over``) brings to the open
    incident, said in words; None when nothing new (the evidence then takes in what it brought)."""
    evidence = _evidence(row)
    new = {r: share for r, share in over.items() if r not in evidence["routes"]}
    ncd = _ncd(anomaly)
    settled = position >= evidence["settled_at"]
    what = None
    big = [route for route, excess in new.items() if excess >= NEW_SHARE]
    if settled and big:
        what = "new surging route(s): " + ", ".join(big)
    elif settled and ncd >= evidence["peak_ncd"] + NCD_JUMP:
        what = f"strength rose: NCD {ncd:.3f} (was at most {evidence['peak_ncd']:.3f})"
    if not settled or what is not None:  # the onset's routes, or the new attack's, are the incident's now
        evidence["routes"] = list(dict.fromkeys([*evidence["routes"], *new]))[-MAX_KNOWN_ROUTES:]
    evidence["peak_ncd"] = max(float(evidence["peak_ncd"]), ncd)
    if what is not None:
        evidence["settled_at"] = position + rule.window
    return what


def new_row(
    stream_id: str, position: int, now: float, anomaly: Mapping[str, Any], members: int, muted: bool
) -> dict[str, Any]:
    """The row of an incident opened at ``position`` by ``anomaly``."""
    return {
        "id": str(uuid.uuid4()),
        "stream_id": stream_id,
        "status": "muted" if muted else "open",
        "opened_ts": now,
        "last_seen_ts": now,
        "resolved_ts": None,
        "resolution": None,
        "anomaly_count": members,
        "opened_position": position,
        "last_position": position,
        "opened_by": anomaly["id"],
        "muted": muted,
        "explanation": merge_explanation(None, anomaly["explanation"]),
        "feedback": [],
    }


def step(
    state: IncidentState,
    rule: IncidentRule,
    position: int,
    p_value: float,
    anomaly: dict[str, Any] | None,
    *,
    stream_id: str,
    now: float,
    muted: bool,
    window_routes: Callable[[dict[str, Any]], dict[str, float]] | None = None,
) -> Step:
    """Apply the rule to one detection at ``position`` (``anomaly``: its record when it was anomalous; it gets
    its ``incident_id`` and ``incident`` mark here). ``window_routes(row)`` gives the routes the detection's
    window over-represents against the open incident's baseline (asked only of detections that may update)."""
    out = Step()
    row = state.open
    if row is not None:
        if anomaly is not None:
            what = None
            if rule.confirms(p_value) and window_routes is not None:
                what = _changed(row, rule, position, anomaly, window_routes(row))
            elif rule.confirms(p_value):
                what = _changed(row, rule, position, anomaly, {})
            row.update(
                last_seen_ts=now,
                anomaly_count=row["anomaly_count"] + 1,
                explanation=merge_explanation(row["explanation"], anomaly["explanation"]),
            )
            if rule.confirms(p_value):  # only what could open an incident keeps one open
                row["last_position"] = position
            anomaly["incident_id"] = row["id"]
            told = what is not None and not row.get("muted")
            anomaly["incident"] = incident_mark(row["id"], False, updated=told)
            if what is not None:
                row["updates"] = [
                    *row.get("updates", []),
                    {"at": now, "position": position, "anomaly_id": anomaly["id"], "change": what},
                ][-MAX_UPDATES:]
                out.updated = row
            out.changed = row
        quiet = position - row["last_position"]
        if quiet >= rule.quiet or position - row["opened_position"] >= rule.max_span:
            out.absorbed = quiet < rule.quiet
            row.update(status="resolved", resolved_ts=now, resolution="absorbed" if out.absorbed else "quiet")
            out.resolved = out.changed = row
            state.open = None
        return out
    if anomaly is None or not rule.confirms(p_value):
        return out
    members = state.confirm(rule, position, anomaly["id"])
    if members is None:
        return out
    row = new_row(stream_id, position, now, anomaly, len(members), muted)
    row["evidence"] = {"routes": [], "peak_ncd": _ncd(anomaly), "settled_at": position + rule.window}
    state.open = out.opened = out.changed = row
    anomaly["incident_id"] = row["id"]
    anomaly["incident"] = incident_mark(row["id"], not muted)
    out.members = [m for m in members if m != anomaly["id"]]
    return out
