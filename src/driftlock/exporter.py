"""``DriftlockSpanExporter``: an OpenTelemetry span exporter that sends spans to Driftlock as events.

Registered as the ``opentelemetry_traces_exporter`` entry point ``driftlock``, so
``OTEL_TRACES_EXPORTER=driftlock opentelemetry-instrument ...`` builds it with no arguments; its
settings then come from ``DRIFTLOCK_*`` variables and, once Django is configured, the ``DRIFTLOCK``
dict, resolved at the first export. ``export()`` never raises and never outlives TIMEOUT; what it
cannot deliver is counted in ``dropped_events``.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from driftlock.anomalies import SpanDetails, dispatch
from driftlock.client import DriftlockSyncClient
from driftlock.config import Config
from driftlock.events import SpanRecord, record_from_sdk_span, span_to_event, stream_for
from driftlock.exceptions import DriftlockError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

__all__ = ["DriftlockSpanExporter"]

logger = logging.getLogger("driftlock.exporter")
DROP_LOG_INTERVAL = 60.0

_live: weakref.WeakSet[DriftlockSpanExporter] = weakref.WeakSet()


def live_exporters() -> list[DriftlockSpanExporter]:
    """Exporters alive in this process (used by ``driftlock.configure`` to avoid a second one)."""
    return list(_live)


class DriftlockSpanExporter(SpanExporter):
    """Thread-safe. Built with no arguments it reads the environment (and Django settings) lazily.

    Attributes:
        exported_events: events the API accepted.
        dropped_events: events lost to errors, timeouts or shutdown.
    """

    def __init__(self, config: Config | None = None, **options: Any) -> None:
        self.from_environment = config is None and not options
        self._config: Config | None = config.replace(**options) if config and options else config
        if self._config is None and options:
            self._config = Config.resolve(**options)
        self._client: DriftlockSyncClient | None = None
        self._lock = threading.Lock()
        self._shutdown = threading.Event()
        self.exported_events = 0
        self.dropped_events = 0
        self._last_drop_log = -DROP_LOG_INTERVAL
        _live.add(self)

    # -- configuration ----------------------------------------------------------------------

    @property
    def config(self) -> Config:
        if self._config is None:
            with self._lock:
                if self._config is None:
                    self._config = Config.resolve()
        return self._config

    def configure(self, config: Config) -> None:
        """Adopt new settings (``driftlock.configure`` and the Django integration push theirs in)."""
        with self._lock:
            self._config = config
            old, self._client = self._client, None
        if old is not None:
            old.close()

    def _get_client(self) -> DriftlockSyncClient:
        client = self._client
        if client is None:
            config = self.config
            with self._lock:
                if self._client is None:
                    self._client = DriftlockSyncClient(config)
                client = self._client
        return client

    # -- SpanExporter -----------------------------------------------------------------------

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown.is_set():
            logger.warning("Driftlock exporter already shut down: %d spans not exported", len(spans))
            return SpanExportResult.FAILURE
        try:
            from opentelemetry.instrumentation.utils import suppress_http_instrumentation, suppress_instrumentation

            with suppress_instrumentation(), suppress_http_instrumentation():
                return self._export(spans)
        except Exception:  # a bug of ours must cost events, never the application
            logger.exception("Driftlock exporter failed; %d spans dropped", len(spans))
            self._count_dropped(len(spans), "internal error")
            return SpanExportResult.FAILURE

    def _export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        config = self.config
        if not config.enabled:
            return SpanExportResult.SUCCESS
        deadline = time.monotonic() + config.timeout
        batches: dict[str, list[tuple[SpanRecord, dict[str, Any]]]] = {}
        for span in spans:
            record = record_from_sdk_span(span)
            event = span_to_event(record, span_kinds=config.span_kinds, exclude_paths=config.exclude_paths)
            if event is not None:
                stream = stream_for(record, stream_id=config.stream_id, celery_stream_id=config.celery_stream_id)
                batches.setdefault(stream, []).append((record, event))
        if not batches:
            return SpanExportResult.SUCCESS
        client = self._get_client()
        callback = config.anomaly_callback()
        ok = True
        for stream_id, items in batches.items():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._shutdown.is_set():
                self._count_dropped(len(items), "deadline passed" if remaining <= 0 else "shut down")
                ok = False
                continue
            try:
                result = client.detect([event for _, event in items], stream_id=stream_id, timeout=remaining)
            except DriftlockError as exc:
                self._count_dropped(len(items), str(exc))
                ok = False
                continue
            self.exported_events += len(items)
            for anomaly in result.anomalies:
                if 0 <= anomaly.index < len(items):
                    record, event = items[anomaly.index]
                    dispatch(anomaly, SpanDetails.of(record, stream_id, event), callback)
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def _count_dropped(self, count: int, reason: str) -> None:
        with self._lock:
            self.dropped_events += count
            now = time.monotonic()
            if now - self._last_drop_log < DROP_LOG_INTERVAL:
                return
            self._last_drop_log = now
            total = self.dropped_events
        logger.warning(
            "Driftlock dropped %d events (%d in total since start): %s. Detection continues with the next batch.",
            count,
            total,
            reason,
        )

    def shutdown(self, timeout_millis: float = 30_000) -> None:
        """Interrupt any retry backoff and close connections. Idempotent; returns at once."""
        if self._shutdown.is_set():
            return
        self._shutdown.set()
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Nothing is buffered here (the span processor holds the queue)."""
        return True
