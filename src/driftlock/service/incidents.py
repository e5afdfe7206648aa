"""A stream's incidents as the service keeps them: the rule (:mod:`driftlock.incident_rule`) applied to
each detection, under the stream's lock, with the incident rows it opens, grows and resolves.

:func:`step` is called once a detection, in order; it changes the stream's :class:`IncidentState` and
the rows, and says what the caller must do to the engine's baseline (freeze it on opening, thaw it on
resolving) and whom to tell (``changes``). It does no I/O.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
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
    "route_of",
    "step",
]


@dataclass
class Step:
    """What one detection did to the stream's incidents."""

    opened: dict[str, Any] | None = None  # the row of the incident it opened (freeze the baseline)
    resolved: dict[str, Any] | None = None  # the row of the incident it resolved (thaw the baseline)
    absorbed: bool = False  # resolved as the stream's new normal: the baseline learns what came
    members: list[str] = field(default_factory=list)  # earlier anomalies that confirmed the opened incident
    changed: dict[str, Any] | None = None  # the row it changed (to store)


def incident_mark(incident_id: str | None, opened: bool) -> dict[str, Any] | None:
    """An anomaly's ``incident``: which incident it belongs to, and whether it opened it."""
    return None if incident_id is None else {"id": incident_id, "opened": opened}


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
) -> Step:
    """Apply the rule to one detection at ``position`` (``anomaly``: its record when it was anomalous; it gets
    its ``incident_id`` and ``incident`` mark here)."""
    out = Step()
    row = state.open
    if row is not None:
        if anomaly is not None:
            row.update(
                last_seen_ts=now,
                anomaly_count=row["anomaly_count"] + 1,
                explanation=merge_explanation(row["explanation"], anomaly["explanation"]),
            )
            if rule.confirms(p_value):  # only what could open an incident keeps one open
                row["last_position"] = position
            anomaly["incident_id"] = row["id"]
            anomaly["incident"] = incident_mark(row["id"], False)
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
    state.open = out.opened = out.changed = row
    anomaly["incident_id"] = row["id"]
    anomaly["incident"] = incident_mark(row["id"], not muted)
    out.members = [m for m in members if m != anomaly["id"]]
    return out
