"""What the commands print: the same facts as text for people or as JSON for scripts."""

from __future__ import annotations

import json
from typing import Any

from driftlock.models import Anomaly, DetectionResult, Incident

__all__ = [
    "anomaly_dict",
    "anomaly_text",
    "detection_dict",
    "detection_text",
    "history_text",
    "incident_dict",
    "incident_text",
]

_WHY_WIDTH = 90


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def anomaly_dict(anomaly: Anomaly) -> dict[str, Any]:
    return {
        "id": anomaly.id,
        "index": anomaly.index,
        "stream_id": anomaly.stream_id,
        "ncd": anomaly.ncd,
        "p_value": anomaly.p_value,
        "confidence": anomaly.confidence,
        "why": anomaly.why,
        "event": anomaly.event,
        "detected_at": anomaly.detected_at,
        "incident": None
        if anomaly.incident is None
        else {"id": anomaly.incident.id, "opened": anomaly.incident.opened},
    }


def incident_dict(incident: Incident) -> dict[str, Any]:
    return {
        "id": incident.id,
        "stream_id": incident.stream_id,
        "change": incident.change,
        "status": incident.status,
        "opened_at": incident.opened_at,
        "anomaly_count": incident.anomaly_count,
        "summary": incident.explanation.summary if incident.explanation else "",
        "routes": list(incident.routes),
    }


def detection_dict(result: DetectionResult) -> dict[str, Any]:
    calibration = result.calibration
    return {
        "status": result.status,
        "stream_id": result.stream_id,
        "total_events": result.total_events,
        "anomaly_count": len(result.anomalies),
        "anomalies": [anomaly_dict(a) for a in result.anomalies],
        "incidents": [incident_dict(i) for i in result.incidents or ()],
        "calibration": None if calibration is None else calibration.message,
    }


def incident_text(incident: Incident) -> str:
    """``[INCIDENT OPENED] <id> on <stream>: <summary>`` (and the routes it names)."""
    change = (incident.change or incident.status or "open").upper()
    summary = incident.explanation.summary if incident.explanation else ""
    lines = [f"[INCIDENT {change}] {incident.id} on stream {incident.stream_id or '-'}: {summary}".rstrip(": ")]
    if incident.routes and incident.change != "resolved":
        lines.append("Routes: " + ", ".join(incident.routes))
    return "\n".join(lines)


def anomaly_text(anomaly: Anomaly) -> str:
    """The CLI page's block: ``[ANOMALY DETECTED]``, ``Confidence:``, ``Why:``, and the event."""
    return "\n".join(
        [
            "[ANOMALY DETECTED]",
            f"Confidence: {_figure(anomaly.confidence)}",
            f"Why: {anomaly.why or '-'}",
            f"Event {anomaly.index}: {json.dumps(_body(anomaly.event), sort_keys=True)[:200]}",
        ]
    )


def detection_text(result: DetectionResult) -> str:
    """The CLI page's block per anomaly, then incidents; otherwise one line saying nothing was found and
    why not, when the stream is still collecting its baseline."""
    blocks = [anomaly_text(a) for a in result.anomalies]
    blocks += [incident_text(i) for i in result.incidents or ()]
    if not result.anomalies:
        stream = f" (stream {result.stream_id})" if result.stream_id else ""
        line = f"No anomalies in {result.total_events} event{'s' * (result.total_events != 1)}{stream}."
        calibration = result.calibration
        if calibration is not None and not calibration.detection_ready and calibration.message:
            seen = f" ({calibration.events_ingested} so far)" if calibration.events_ingested is not None else ""
            line += f"\nCalibrating: {calibration.message}{seen}"
        blocks.append(line)
    return "\n\n".join(blocks)


def _body(event: Any) -> Any:
    """What was sent: the body of an envelope the CLI made from a bare event."""
    if isinstance(event, dict) and set(event) == {"body"}:
        return event["body"]
    return event


def history_text(anomalies: tuple[Anomaly, ...], stream_id: str | None) -> str:
    if not anomalies:
        return f"No anomalies{f' for stream {stream_id}' if stream_id else ''}."
    rows = [("DETECTED AT", "STREAM", "CONFIDENCE", "P-VALUE", "WHY")]
    for a in anomalies:
        why = a.why or a.explanation or "-"
        rows.append(
            (
                a.detected_at or "-",
                a.stream_id or "-",
                _figure(a.confidence),
                _figure(a.p_value),
                why if len(why) <= _WHY_WIDTH else why[: _WHY_WIDTH - 1] + "…",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4] for row in rows
    )
