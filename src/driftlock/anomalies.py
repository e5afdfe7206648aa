"""How incidents reach the application: a log line, the ON_ANOMALY callable, and registered handlers.

The detection service opens incidents and marks, in its answer, the anomaly that opened each one:
the process that sent that batch tells its handlers, once (``add_anomaly_handler``: called as
``f(anomaly, span)`` with the opening anomaly). Handlers added with ``add_incident_handler`` also
hear when an incident resolves (``f(incident, span)``, ``incident.change`` says which). Handlers run
on the export thread. A handler that raises is logged and the others still run.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from driftlock.events import SpanRecord
from driftlock.models import Anomaly, Incident
from driftlock.registry import REGISTRY

__all__ = [
    "SpanDetails",
    "add_anomaly_handler",
    "add_incident_handler",
    "dispatch",
    "dispatch_incident",
    "remove_anomaly_handler",
    "remove_incident_handler",
]

logger = logging.getLogger("driftlock.anomalies")
_internal = logging.getLogger("driftlock.exporter")

Handler = Callable[[Anomaly, "SpanDetails"], Any]
IncidentHandler = Callable[[Incident, "SpanDetails | None"], Any]


class _Handlers:
    """The handlers added in this process, under one lock (dispatch copies them and calls outside it)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.anomaly: list[Handler] = []
        self.incident: list[IncidentHandler] = []


def _handlers() -> _Handlers:
    return REGISTRY.slot("anomalies.handlers", _Handlers)


@dataclass(frozen=True)
class SpanDetails:
    """The span behind an anomaly's event, kept client-side so no id travels to the API."""

    stream_id: str
    trace_id: str
    span_id: str
    name: str
    kind: str
    service: str
    event: Mapping[str, Any]
    attributes: Mapping[str, Any] = field(default_factory=dict)

    @property
    def route(self) -> str | None:
        body = self.event.get("body") or {}
        value = body.get("route") or body.get("task") or body.get("name")
        return None if value is None else str(value)

    @classmethod
    def of(cls, record: SpanRecord, stream_id: str, event: Mapping[str, Any]) -> SpanDetails:
        return cls(
            stream_id=stream_id,
            trace_id=record.trace_id,
            span_id=record.span_id,
            name=record.name,
            kind=record.kind,
            service=record.service,
            event=event,
            attributes=dict(record.attributes),
        )


def add_anomaly_handler(handler: Handler) -> None:
    """Call ``handler(anomaly, span)`` for every anomaly the exporter receives. Idempotent."""
    _add(_handlers().anomaly, handler)


def remove_anomaly_handler(handler: Handler) -> None:
    _remove(_handlers().anomaly, handler)


def add_incident_handler(handler: IncidentHandler) -> None:
    """Call ``handler(incident, span)`` when an incident opens and when it resolves. Idempotent."""
    _add(_handlers().incident, handler)


def remove_incident_handler(handler: IncidentHandler) -> None:
    _remove(_handlers().incident, handler)


def _add(handlers: list[Any], handler: Any) -> None:
    with _handlers().lock:
        if handler not in handlers:
            handlers.append(handler)


def _remove(handlers: list[Any], handler: Any) -> None:
    with _handlers().lock:
        if handler in handlers:
            handlers.remove(handler)


def _call(handler: Callable[..., Any], *args: Any) -> None:
    try:
        handler(*args)
    except Exception:
        _internal.exception("Driftlock handler %r raised; continuing", handler)


def dispatch(
    anomaly: Anomaly, span: SpanDetails, on_anomaly: Handler | None = None, incident: Incident | None = None
) -> None:
    """Log the incident that ``anomaly`` opened, then call ON_ANOMALY and the handlers; never raises."""
    m = anomaly.metrics
    routes = ", ".join(incident.routes) if incident and incident.routes else (span.route or span.name)
    logger.warning(
        "Driftlock incident %s%s in stream %s (%s): %s (NCD %.3f, p=%.3f, trace %s)",
        f"{incident.id} " if incident else "",
        "updated" if incident is not None and incident.change == "updated" else "opened",
        span.stream_id,
        routes,
        anomaly.why,
        m.ncd if m.ncd is not None else float("nan"),
        m.p_value if m.p_value is not None else float("nan"),
        span.trace_id,
        extra={
            "driftlock_stream": span.stream_id,
            "trace_id": span.trace_id,
            "anomaly_id": anomaly.id,
            "incident_id": incident.id if incident else None,
        },
    )
    registered = _handlers()
    with registered.lock:
        handlers = list(registered.anomaly)
        incident_handlers = list(registered.incident)
    if on_anomaly is not None:
        handlers.insert(0, on_anomaly)
    for handler in handlers:
        _call(handler, anomaly, span)
    if incident is not None:
        for incident_handler in incident_handlers:
            _call(incident_handler, incident, span)


def dispatch_incident(incident: Incident, span: SpanDetails | None = None) -> None:
    """Tell the incident handlers that ``incident`` resolved; never raises."""
    logger.info(
        "Driftlock incident %s resolved in stream %s after %d anomalous detections",
        incident.id,
        incident.stream_id,
        incident.anomaly_count,
        extra={"driftlock_stream": incident.stream_id, "incident_id": incident.id},
    )
    registered = _handlers()
    with registered.lock:
        handlers = list(registered.incident)
    for handler in handlers:
        _call(handler, incident, span)
