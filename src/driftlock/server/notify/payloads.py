"""The JSON bodies of webhook events, in the envelope of Driftlock's webhooks page.

Every event is ``{"id": "evt_...", "type": ..., "created_at": "<ISO-8601, seconds, Z>", "data": {...}}``;
the ``id`` is the same on every retry and for every webhook the event goes to.

``anomaly.detected`` (once per incident, for the anomaly that opened it): ``data`` holds ``stream_id``,
``anomaly_id``, ``metrics`` (``ncd``, ``confidence``, ``p_value``), ``event`` (as it was sent), ``why``, and,
beyond the page, ``incident_id``, ``routes`` (where the incident happens) and ``url`` (its console page, when
the server knows its address). ``incident.opened`` / ``incident.updated`` / ``incident.resolved``: ``data``
holds ``stream_id``, ``incident_id``, ``routes``, ``url`` and ``incident`` (as ``GET /v1/incidents/{id}``
shows it). A test event from the console has ``"test": true`` and made-up data of the same shape.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "anomaly_detected",
    "event_id",
    "incident_event",
    "incident_link",
    "now_iso",
    "sample_anomaly",
    "sample_incident",
    "test_event",
]


def event_id() -> str:
    return "evt_" + secrets.token_hex(12)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def incident_link(console_url: str | None, incident_id: Any) -> str | None:
    return f"{console_url.rstrip('/')}/incidents/{incident_id}" if console_url and incident_id else None


def _envelope(event_type: str, data: dict[str, Any], eid: str, created_at: str) -> dict[str, Any]:
    return {"id": eid, "type": event_type, "created_at": created_at, "data": data}


def _routes(incident: Mapping[str, Any]) -> list[Any]:
    explanation = incident.get("explanation")
    routes = explanation.get("routes") if isinstance(explanation, Mapping) else None
    return list(routes) if isinstance(routes, list) else []


def anomaly_detected(
    anomaly: Mapping[str, Any],
    incident: Mapping[str, Any],
    *,
    eid: str,
    created_at: str,
    console_url: str | None = None,
) -> dict[str, Any]:
    """``anomaly`` as the store keeps it (``GET /v1/anomalies/{id}``), ``incident`` as the API shows it."""
    metrics = anomaly.get("metrics") or {}
    data: dict[str, Any] = {
        "stream_id": anomaly.get("stream_id", incident.get("stream_id")),
        "anomaly_id": anomaly.get("id"),
        "metrics": {
            "ncd": metrics.get("ncd"),
            "confidence": metrics.get("confidence_level", metrics.get("confidence")),
            "p_value": metrics.get("p_value"),
        },
        "event": anomaly.get("event"),
        "why": anomaly.get("why"),
        "incident_id": incident.get("id"),
        "routes": _routes(incident),
    }
    link = incident_link(console_url, incident.get("id"))
    if link:
        data["url"] = link
    return _envelope("anomaly.detected", data, eid, created_at)


def incident_event(
    event_type: str,
    incident: Mapping[str, Any],
    *,
    eid: str,
    created_at: str,
    console_url: str | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "stream_id": incident.get("stream_id"),
        "incident_id": incident.get("id"),
        "routes": _routes(incident),
    }
    link = incident_link(console_url, incident.get("id"))
    if link:
        data["url"] = link
    data["incident"] = dict(incident)
    return _envelope(event_type, data, eid, created_at)


def sample_incident(status: str = "open") -> dict[str, Any]:
    """Made-up data for test events."""
    return {
        "id": "inc_test",
        "stream_id": "driftlock-test",
        "status": status,
        "opened_at": now_iso(),
        "last_seen_at": now_iso(),
        "resolved_at": now_iso() if status == "resolved" else None,
        "resolution": "quiet" if status == "resolved" else None,
        "anomaly_count": 3,
        "explanation": {
            "summary": "A test notification from the Driftlock console",
            "signal": "frequency",
            "routes": ["GET /test"],
            "surges": [],
            "least_like": [],
        },
        "feedback": [],
    }


def sample_anomaly() -> dict[str, Any]:
    return {
        "id": "anom_test",
        "stream_id": "driftlock-test",
        "metrics": {"ncd": 0.85, "confidence_level": 0.98, "p_value": 0.001},
        "event": {"timestamp": now_iso(), "type": "trace", "body": {"method": "GET", "route": "/test", "status": 200}},
        "why": "A test notification from the Driftlock console",
    }


def test_event(event_type: str) -> dict[str, Any]:
    """A made-up event of ``event_type``, marked ``"test": true`` (it links nowhere)."""
    incident = sample_incident("resolved" if event_type == "incident.resolved" else "open")
    if event_type == "anomaly.detected":
        payload = anomaly_detected(sample_anomaly(), incident, eid=event_id(), created_at=now_iso())
    else:
        payload = incident_event(event_type, incident, eid=event_id(), created_at=now_iso())
    payload["test"] = True
    return payload
