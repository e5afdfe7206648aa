"""Jinja filters of the console: times, numbers and events as people read them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from driftlock.engine.explain import field_text

__all__ = ["ago", "clause", "epoch", "event_json", "event_summary", "headline", "number", "when"]


def parse_iso(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def epoch(value: str | None) -> float | None:
    parsed = parse_iso(value)
    return parsed.timestamp() if parsed else None


def when(value: str | None) -> str:
    parsed = parse_iso(value)
    return parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if parsed else "—"


def ago(value: str | None, now: datetime | None = None) -> str:
    parsed = parse_iso(value)
    if parsed is None:
        return "never"
    seconds = int(((now or datetime.now(UTC)) - parsed).total_seconds())
    if seconds < 0:
        return "just now"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if value != 0 and abs(value) < 10**-digits:
            return f"{value:.1e}"
        return f"{value:.{digits}f}"
    return str(value)


def event_body(event: Any) -> Any:
    return event.get("body", event) if isinstance(event, Mapping) else event


def event_summary(event: Any) -> str:
    """``GET /wp-login.php 404`` for HTTP events; compact JSON for anything else."""
    body = event_body(event)
    if isinstance(body, Mapping) and body.get("route") is not None:
        route = str(body.get("route"))
        route = route if route.startswith("/") else "/" + route
        bits = [str(body["method"])] if body.get("method") else []
        bits.append(route)
        if body.get("status") is not None:
            bits.append(str(body["status"]))
        return " ".join(bits)
    if isinstance(body, Mapping) and body.get("task"):
        return f"task {body['task']} {body.get('state', '')}".strip()
    return event_json(event, limit=100)


def event_json(event: Any, limit: int = 600) -> str:
    text = json.dumps(event_body(event), sort_keys=True, separators=(", ", ": "), default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clause(text: Any) -> str:
    """The first clause of an explanation ("Anomalous window: ..., p=0.000, 100% confidence"), without its prefix."""
    first = str(text or "").split("; ")[0].removeprefix("Anomalous window: ").strip()
    return first[:1].upper() + first[1:]


def headline(incident: Mapping[str, Any], limit: int = 90) -> str:
    """A title for an incident: what surged, else a field's unusual value, else what was least like the
    baseline, else its summary."""
    explanation = incident.get("explanation") or {}
    fields = explanation.get("fields") or []
    for key, label in (("surges", "Surge of"), ("least_like", "Unlike the baseline:")):
        items = explanation.get(key) or []
        if key == "least_like" and fields:
            text = f"Unusual {field_summary(fields[0])}"
            if len(fields) > 1:
                text += f" and {len(fields) - 1} more"
            break
        if items:
            text = f"{label} {event_summary(items[0].get('event'))}"
            if len(items) > 1:
                text += f" and {len(items) - 1} more"
            break
    else:
        text = clause(explanation.get("summary")) or "Incident"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def field_summary(change: Mapping[str, Any]) -> str:
    """A changed field value as a person reads it (``duration <250ms``)."""
    return field_text(str(change.get("field", "")), change.get("value", ""))
