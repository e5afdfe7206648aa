"""What the application is told of a batch's answer: the incidents the detection service decided.

The service decides incidents for the whole stream and marks, in its answer, the anomaly that opened
each one, so exactly one process, the one that sent that batch, tells its handlers
(:func:`driftlock.anomalies.dispatch`: the log line, ON_ANOMALY, the handlers, the Django signal).
Against an API that marks no incidents, :class:`Dispatcher` applies the same rule to this process's
own share of the stream (:class:`driftlock.alarms.IncidentTracker`) and says once in the log that
alarms are then per process. The exporter delivers; this module tells.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from driftlock._urls import without_credentials
from driftlock.alarms import DEFAULT_CONFIRMATIONS, IncidentTracker, window_for
from driftlock.anomalies import SpanDetails, dispatch, dispatch_incident
from driftlock.config import AnomalyCallback, Config
from driftlock.events import SpanRecord
from driftlock.models import DetectionResult

__all__ = ["MAX_TRACKED_STREAMS", "Dispatcher"]

logger = logging.getLogger("driftlock.exporter")

MAX_TRACKED_STREAMS = 1000
"""Streams whose incidents are followed at once (per-process fallback); the least recently used one is
forgotten first."""


class Dispatcher:
    """Thread-safe: SimpleSpanProcessor exports, and so tells, from many request threads."""

    def __init__(self) -> None:
        self._streams: dict[str, tuple[IncidentTracker, int]] = {}  # per-process fallback: (incidents, sent)
        self._lock = threading.Lock()
        self._warned_per_process = False

    def tell(
        self,
        result: DetectionResult,
        stream_id: str,
        items: list[tuple[SpanRecord, dict[str, Any]]],
        config: Config,
        callback: AnomalyCallback | None,
    ) -> None:
        """Dispatch the incidents this batch (``items``, as sent) opened, updated and resolved to the application
        (``callback``: ON_ANOMALY, resolved before the batch was sent)."""
        anomalies = [a for a in sorted(result.anomalies, key=lambda a: a.index) if 0 <= a.index < len(items)]
        if result.incidents is None:
            if not self._warned_per_process:
                self._warned_per_process = True
                logger.warning(
                    "The Driftlock API at %s marks no incidents: alarms are counted by each process on its "
                    "own share of a stream (CONFIRMATIONS %d)",
                    without_credentials(config.api_root),
                    config.confirmations or DEFAULT_CONFIRMATIONS,
                )
            with self._lock:
                tracker, sent = self._stream(stream_id, config)
                alarms = [a for a in anomalies if tracker.observe(sent + a.index, a.metrics.p_value)]
                self._streams[stream_id] = (tracker, sent + len(items))
            for anomaly in alarms:
                record, event = items[anomaly.index]
                dispatch(anomaly, SpanDetails.of(record, stream_id, event), callback)
            return
        incidents = {i.id: i for i in result.incidents}
        for anomaly in anomalies:
            if anomaly.incident is not None and (anomaly.incident.opened or anomaly.incident.updated):
                record, event = items[anomaly.index]
                dispatch(
                    anomaly, SpanDetails.of(record, stream_id, event), callback, incidents.get(anomaly.incident.id)
                )
        for incident in result.incidents:
            if incident.change == "resolved":
                dispatch_incident(incident)

    def _stream(self, stream_id: str, config: Config) -> tuple[IncidentTracker, int]:
        """This stream's incident tracker and the events sent to it so far (under ``_lock``)."""
        found = self._streams.pop(stream_id, None)  # re-inserted last: the dict keeps recency order
        confirmations = config.confirmations or DEFAULT_CONFIRMATIONS
        if found is None or found[0].confirmations != confirmations:
            found = (IncidentTracker(confirmations, window_for(config.config_override)), 0)
            if len(self._streams) >= MAX_TRACKED_STREAMS:
                self._streams.pop(next(iter(self._streams)))
        self._streams[stream_id] = found
        return found
