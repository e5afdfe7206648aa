"""How anomalies reach the application: a log line, the ON_ANOMALY callable, and registered handlers.

Handlers run on the export thread. A handler that raises is logged and the others still run.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from driftlock.events import SpanRecord
from driftlock.models import Anomaly

__all__ = ["SpanDetails", "add_anomaly_handler", "dispatch", "remove_anomaly_handler"]

logger = logging.getLogger("driftlock.anomalies")
_internal = logging.getLogger("driftlock.exporter")

Handler = Callable[[Anomaly, "SpanDetails"], Any]
_handlers: list[Handler] = []
_lock = threading.Lock()


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
    with _lock:
        if handler not in _handlers:
            _handlers.append(handler)


def remove_anomaly_handler(handler: Handler) -> None:
    with _lock:
        if handler in _handlers:
            _handlers.remove(handler)


def dispatch(anomaly: Anomaly, span: SpanDetails, on_anomaly: Handler | None = None) -> None:
    """Log the anomaly, then call ON_ANOMALY and the registered handlers; never raises."""
    m = anomaly.metrics
    logger.warning(
        "Driftlock anomaly in stream %s at %s: %s (NCD %.3f, p=%.3f, trace %s)",
        span.stream_id,
        span.route or span.name,
        anomaly.why,
        m.ncd if m.ncd is not None else float("nan"),
        m.p_value if m.p_value is not None else float("nan"),
        span.trace_id,
        extra={"driftlock_stream": span.stream_id, "trace_id": span.trace_id, "anomaly_id": anomaly.id},
    )
    with _lock:
        handlers = list(_handlers)
    if on_anomaly is not None:
        handlers.insert(0, on_anomaly)
    for handler in handlers:
        try:
            handler(anomaly, span)
        except Exception:
            _internal.exception("Driftlock anomaly handler %r raised; continuing", handler)
