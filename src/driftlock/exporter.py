"""``DriftlockSpanExporter``: an OpenTelemetry span exporter that sends spans to Driftlock as events.

Registered as the ``opentelemetry_traces_exporter`` entry point ``driftlock``, so
``OTEL_TRACES_EXPORTER=driftlock opentelemetry-instrument ...`` builds it with no arguments; its
settings then come from ``DRIFTLOCK_*`` variables and, once Django is configured, the ``DRIFTLOCK``
dict, resolved at the first export. ``export()`` never raises and never outlives TIMEOUT; what it
cannot deliver is counted in ``dropped_events``.

The exporter delivers; what the application is told of each answer (the log line, ON_ANOMALY,
handlers, the Django signal) is the :class:`~driftlock.dispatcher.Dispatcher`'s to decide: the
incidents the detection service opened, told by the one process that sent the batch.

Two rules keep a failing API from costing the application anything (the practice of Sentry's and
Elastic's transports): after a failed export, batches are dropped without a try for a pause that
doubles with each failure (1 s to 60 s) or lasts what a 429's Retry-After says; and from interpreter
exit on, all remaining exports share one TIMEOUT, so the batch processor's final drain cannot hold
the process for a TIMEOUT per batch.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import threading
import time
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from driftlock.client import DriftlockSyncClient
from driftlock.config import Config
from driftlock.dispatcher import Dispatcher
from driftlock.events import SDK_SPAN_KINDS, SpanRecord, record_from_sdk_span, span_to_event, stream_for
from driftlock.exceptions import DriftlockError, DriftlockRateLimitError, DriftlockValidationError
from driftlock.registry import REGISTRY

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

__all__ = ["DriftlockBatchSpanProcessor", "DriftlockSpanExporter"]

logger = logging.getLogger("driftlock.exporter")
DROP_LOG_INTERVAL = 60.0
MAX_PAUSE = 60.0
"""Longest pause after failures before the exporter tries the API again."""


def _live() -> weakref.WeakSet[DriftlockSpanExporter]:
    return REGISTRY.slot("exporters", weakref.WeakSet)


def live_exporters() -> list[DriftlockSpanExporter]:
    """Exporters alive in this process (used by ``driftlock.configure`` to avoid a second one)."""
    return list(_live())


def _close_at_exit(ref: weakref.ref[DriftlockSpanExporter]) -> None:
    exporter = ref()
    if exporter is not None:
        exporter.begin_closing()


class DriftlockSpanExporter(SpanExporter):
    """Thread-safe. Built with no arguments it reads the environment (and Django settings) lazily.

    Attributes:
        exported_events: events the API accepted.
        dropped_events: events lost to errors, timeouts or shutdown; at shutdown, also the spans
            that never left a :class:`DriftlockBatchSpanProcessor`'s full queue.
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
        self.queued_spans: int | None = None  # counted by DriftlockBatchSpanProcessor, when it feeds us
        self._received_spans = 0
        self._last_drop_log = -DROP_LOG_INTERVAL
        self._failures = 0
        self._paused_until = 0.0
        self._closing_deadline: float | None = None
        self.dispatcher = Dispatcher()  # tells the application of what each answer decided
        _live().add(self)
        # Registered after the tracer provider's own exit hook (the provider exists first), so it runs
        # before the provider shuts down and drains its queue through this exporter.
        atexit.register(_close_at_exit, weakref.ref(self))

    def begin_closing(self) -> None:
        """From now on, every export shares one TIMEOUT (called at interpreter exit)."""
        if self._closing_deadline is None:
            self._closing_deadline = time.monotonic() + self.config.timeout

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
        if self.queued_spans is not None:
            received = sum(1 for s in spans if self._makes_event(s))
            with self._lock:
                self._received_spans += received
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
        now = time.monotonic()
        if now < self._paused_until:
            self._count_dropped(
                sum(1 for s in spans if self._makes_event(s)),
                f"the API failed {self._failures} time(s) in a row; next try in {self._paused_until - now:.0f} s",
            )
            return SpanExportResult.FAILURE
        deadline = now + config.timeout
        if self._closing_deadline is not None:
            deadline = min(deadline, self._closing_deadline)
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
        override = _override(config)
        ok = True
        for stream_id, items in batches.items():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._shutdown.is_set():
                self._count_dropped(len(items), "deadline passed" if remaining <= 0 else "shut down")
                ok = False
                continue
            try:
                result = client.detect(
                    [event for _, event in items], stream_id=stream_id, config_override=override, timeout=remaining
                )
            except DriftlockError as exc:
                self._count_dropped(len(items), str(exc))
                if not isinstance(exc, DriftlockValidationError):  # a bad batch says nothing of the API
                    self._pause(exc)
                ok = False
                continue
            self._failures = 0
            self.exported_events += len(items)
            self.dispatcher.tell(result, stream_id, items, config, callback)
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def _pause(self, exc: DriftlockError) -> None:
        self._failures += 1
        pause = min(MAX_PAUSE, 2.0 ** (self._failures - 1))
        if isinstance(exc, DriftlockRateLimitError) and exc.retry_after:
            pause = min(MAX_PAUSE, exc.retry_after)
        self._paused_until = time.monotonic() + pause

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
        """Interrupt any retry backoff and close connections. Idempotent; returns at once.

        Says once what this process exported and lost, so drops are never silent (a warning when
        events were dropped, else an info line)."""
        if self._shutdown.is_set():
            return
        self._shutdown.set()
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
        queued = self.queued_spans
        lost_in_queue = max(0, queued - self._received_spans) if queued is not None else 0
        self.dropped_events += lost_in_queue
        logger.log(
            logging.WARNING if self.dropped_events else logging.INFO,
            "Driftlock exporter shut down: %d events exported, %d dropped%s",
            self.exported_events,
            self.dropped_events,
            f" ({lost_in_queue} never left the span processor's full queue)" if lost_in_queue else "",
        )

    def _makes_event(self, span: ReadableSpan) -> bool:
        """Whether the span is of a kind this exporter turns into events (SPAN_KINDS)."""
        return SDK_SPAN_KINDS.get(span.kind.value) in self.config.span_kinds

    def start_counting(self) -> None:
        """A :class:`DriftlockBatchSpanProcessor` feeds this exporter: count what it queues from now on."""
        with self._lock:
            self.queued_spans = self.queued_spans or 0

    def forget_queued(self) -> None:
        """In a forked child the SDK starts with an empty queue: what was queued is the parent's to send.
        (Called right after fork(), so it takes no lock: one held by a parent thread would never be released.)"""
        if self.queued_spans is not None:
            self.queued_spans = self._received_spans

    def count_queued(self, span: ReadableSpan) -> None:
        """A span entered the batch processor's queue (DriftlockBatchSpanProcessor calls this)."""
        if self._makes_event(span):
            with self._lock:
                self.queued_spans = (self.queued_spans or 0) + 1

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Nothing is buffered here (the span processor holds the queue)."""
        return True


def _override(config: Config) -> dict[str, Any] | None:
    """CONFIG_OVERRIDE, with CONFIRMATIONS when it is set: the service applies the incident rule."""
    if config.confirmations is None:
        return dict(config.config_override) if config.config_override else None
    return {**(config.config_override or {}), "confirmations": config.confirmations}


class DriftlockBatchSpanProcessor(BatchSpanProcessor):
    """The SDK's batch processor, counting the spans it is handed for the exporter.

    When the queue is full the SDK drops spans and only logs it; the exporter compares this count
    with the spans that reached it, so its shutdown summary counts those losses too.
    """

    def __init__(self, exporter: DriftlockSpanExporter, **options: Any) -> None:
        super().__init__(exporter, **options)
        self._counting = exporter
        exporter.start_counting()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=functools.partial(_forget_parent_queue, weakref.ref(exporter)))

    def on_end(self, span: ReadableSpan) -> None:
        if span.context and span.context.trace_flags.sampled:  # the SDK queues only these
            self._counting.count_queued(span)
        super().on_end(span)


def _forget_parent_queue(ref: weakref.ref[DriftlockSpanExporter]) -> None:
    """In a forked child the SDK starts with an empty queue: what was queued is the parent's to send."""
    exporter = ref()
    if exporter is not None:
        exporter.forget_queued()
