"""Buffered streams: events pushed one at a time, sent in batches, answers handed to handlers.

:class:`StreamBuffer` holds the decisions (when a batch is due, what is dropped when the buffer is
full, a failed batch kept for the next flush) and :class:`Handlers` the handlers; :class:`Stream`
(asyncio) and :class:`SyncStream` (a worker thread) only add waiting and sending: both drive
:func:`flush_flow`, the one flush, as the clients drive ``_protocol.call_flow``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar

from driftlock import _protocol as protocol
from driftlock.exceptions import DriftlockError
from driftlock.models import DetectionResult

if TYPE_CHECKING:
    from driftlock.client._async import DriftlockClient
    from driftlock.client._sync import DriftlockSyncClient

__all__ = ["CallHandler", "SendBatch", "Stream", "StreamBuffer", "SyncStream", "flush_flow"]

logger = logging.getLogger("driftlock.client")

EVENTS: Final = ("anomaly", "batch", "error")
MAX_BUFFERED: Final = 10_000
"""Default cap on events held by one stream (unsent and failed together)."""

H = TypeVar("H", bound=Callable[..., Any])


class StreamBuffer:
    """The events of one stream not yet sent, oldest first, never more than ``max_buffered``. Not thread-safe."""

    def __init__(self, stream_id: str | None, batch_size: int, max_buffered: int) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if isinstance(max_buffered, bool) or not isinstance(max_buffered, int) or max_buffered < batch_size:
            raise ValueError(f"max_buffered must be an integer >= batch_size ({batch_size}), got {max_buffered!r}")
        self.stream_id = stream_id
        self.batch_size = batch_size
        self.max_buffered = max_buffered
        self._events: deque[Any] = deque()
        self._lock = threading.Lock()
        self.dropped = 0
        """Events dropped because the buffer was full, since the stream was made."""
        self.sent = 0
        """Events the API has answered for."""

    def __len__(self) -> int:
        return len(self._events)

    @property
    def due(self) -> bool:
        """A full batch is waiting."""
        return len(self._events) >= self.batch_size

    def add(self, event: Any) -> DriftlockError | None:
        """Buffer one event (checked and wrapped as ``detect`` would); returns the error to report if the
        oldest events had to be dropped to make room."""
        envelope = protocol.encode_events([event])[0]
        with self._lock:
            self._events.append(envelope)
            return self._trim()

    def take(self) -> list[Any]:
        """Remove and return the next batch (the oldest events first)."""
        with self._lock:
            count = min(self.batch_size, len(self._events))
            return [self._events.popleft() for _ in range(count)]

    def restore(self, batch: list[Any]) -> DriftlockError | None:
        """Put a batch whose send failed back in front, to be sent first next time."""
        with self._lock:
            self._events.extendleft(reversed(batch))
            return self._trim()

    def delivered(self, batch: list[Any]) -> None:
        with self._lock:
            self.sent += len(batch)

    def _trim(self) -> DriftlockError | None:
        excess = len(self._events) - self.max_buffered
        if excess <= 0:
            return None
        for _ in range(excess):
            self._events.popleft()
        self.dropped += excess
        return DriftlockError(
            f"Stream {self.stream_id!r} holds at most {self.max_buffered} unsent events (max_buffered): dropped "
            f"the {excess} oldest ({self.dropped} so far). The API is failing or events arrive faster than "
            "they are sent; check the 'error' handler's earlier errors, or raise batch_size or max_buffered.",
            code="events_dropped",
        )


UNHANDLED_LOG_INTERVAL: Final = 60.0
"""Errors nobody handles are logged at most once a minute per stream."""


class Handlers:
    """The ``on('anomaly' | 'batch' | 'error')`` handlers of one stream, in registration order."""

    def __init__(self, *, coroutines: bool) -> None:
        self._coroutines = coroutines
        self._handlers: dict[str, list[Callable[[Any], Any]]] = {name: [] for name in EVENTS}
        self._logged_at: float | None = None
        self._unlogged = 0

    def on(self, event: str) -> Callable[[H], H]:
        if event not in self._handlers:
            raise ValueError(f"stream.on() takes one of {', '.join(map(repr, EVENTS))}, got {event!r}")

        def register(handler: H) -> H:
            if not callable(handler):
                raise TypeError(f"stream.on({event!r}) decorates a function, got {handler!r}")
            if not self._coroutines and inspect.iscoroutinefunction(handler):
                raise TypeError(
                    f"stream.on({event!r}) got the coroutine function {handler.__qualname__}: a DriftlockSyncClient "
                    "stream calls its handlers from a thread, so they must be plain functions "
                    "(use DriftlockClient for async handlers)"
                )
            self._handlers[event].append(handler)
            return handler

        return register

    def calls(self, result: DetectionResult) -> list[tuple[Callable[[Any], Any], Any]]:
        """The handler calls one answer makes: each anomaly, then the batch."""
        return [(h, anomaly) for anomaly in result.anomalies for h in self._handlers["anomaly"]] + [
            (h, result) for h in self._handlers["batch"]
        ]

    def error_calls(self, error: BaseException) -> list[tuple[Callable[[Any], Any], Any]]:
        if not self._handlers["error"]:
            now = time.monotonic()
            if self._logged_at is None or now - self._logged_at >= UNHANDLED_LOG_INTERVAL:
                more = f"; {self._unlogged} more since the last report" if self._unlogged else ""
                logger.warning("driftlock stream: %s (register stream.on('error') to handle this%s)", error, more)
                self._logged_at, self._unlogged = now, 0
            else:
                self._unlogged += 1
        return [(h, error) for h in self._handlers["error"]]


@dataclass(frozen=True)
class SendBatch:
    """Send these events; the driver answers with the DetectionResult or the exception raised."""

    events: list[Any]


@dataclass(frozen=True)
class CallHandler:
    """Call one handler; the driver answers None (a handler's failure is logged, never passed on)."""

    handler: Callable[[Any], Any]
    arg: Any


FlushFlow = Generator[SendBatch | CallHandler, Any, int]


def flush_flow(buffer: StreamBuffer, handlers: Handlers) -> FlushFlow:
    """One flush, written once for both streams: batches out in order until the buffer is empty or a
    send fails; a failed batch goes back in front (and is reported); returns the events delivered."""
    sent = 0
    while True:
        batch = buffer.take()
        if not batch:
            return sent
        try:
            outcome = yield SendBatch(batch)
        except BaseException:  # cancelled or interrupted: the batch is kept for the next flush
            buffer.restore(batch)
            raise
        if isinstance(outcome, BaseException):
            dropped = buffer.restore(batch)
            for call in handlers.error_calls(outcome):
                yield CallHandler(*call)
            if dropped is not None:
                for call in handlers.error_calls(dropped):
                    yield CallHandler(*call)
            return sent
        buffer.delivered(batch)
        sent += len(batch)
        for call in handlers.calls(outcome):
            yield CallHandler(*call)


def _failed_handler(handler: Callable[..., Any], exc: BaseException) -> None:
    logger.error("driftlock stream handler %r raised", handler, exc_info=exc)


class Stream:
    """A buffered stream on :class:`~driftlock.DriftlockClient`; made by ``client.create_stream``.

    ``await push(event)`` buffers one event and sends a batch once ``batch_size`` are waiting; a timer
    sends what is waiting every ``flush_interval`` seconds. Nothing here raises an API error: failures
    go to the ``'error'`` handlers and the failed batch is sent again by the next flush. At most
    ``max_buffered`` events are held; beyond that the oldest are dropped and counted (``dropped``).
    Handlers may be functions or coroutine functions. Async-safe within one event loop; not thread-safe.
    """

    def __init__(
        self,
        client: DriftlockClient,
        stream_id: str | None,
        *,
        batch_size: int = 100,
        flush_interval: float | None = 5,
        max_buffered: int = MAX_BUFFERED,
    ) -> None:
        self.stream_id = stream_id
        self.flush_interval = _interval(flush_interval)
        self._client = client
        self._buffer = StreamBuffer(stream_id, batch_size, max_buffered)
        self._handlers = Handlers(coroutines=True)
        self._lock: asyncio.Lock | None = None
        self._timer: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False

    def __repr__(self) -> str:
        return f"Stream({self.stream_id!r}, buffered={len(self._buffer)}, sent={self.sent}, dropped={self.dropped})"

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def sent(self) -> int:
        return self._buffer.sent

    @property
    def dropped(self) -> int:
        return self._buffer.dropped

    def on(self, event: str) -> Callable[[H], H]:
        """Decorator: ``@stream.on('anomaly')`` (each Anomaly), ``'batch'`` (each DetectionResult), ``'error'``."""
        return self._handlers.on(event)

    async def push(self, event: Any) -> None:
        """Buffer one event; sends a batch first when ``batch_size`` are waiting.

        Raises:
            DriftlockValidationError: the event cannot be sent as JSON (it is not buffered).
            RuntimeError: the stream is closed.
        """
        if self._closed:
            raise RuntimeError(f"push() on closed stream {self.stream_id!r}: create a new stream")
        dropped = self._buffer.add(event)
        if dropped is not None:
            await self._run(self._handlers.error_calls(dropped))
        await self._start()
        if self._buffer.due:
            await self.flush()

    async def flush(self) -> int:
        """Send every buffered event now; returns how many the API answered for. Never raises an API error."""
        return await self._flush(self._send)

    async def _send(self, batch: list[Any]) -> DetectionResult:
        return await self._client.detect(batch, stream_id=self.stream_id)

    async def _send_blocking(self, batch: list[Any]) -> DetectionResult:
        return self._client._sync.detect(batch, stream_id=self.stream_id)

    async def _flush(self, send: Callable[[list[Any]], Awaitable[DetectionResult]]) -> int:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            flow = flush_flow(self._buffer, self._handlers)
            try:
                action = next(flow)
                while True:
                    outcome: Any = None
                    if isinstance(action, SendBatch):
                        try:
                            outcome = await send(action.events)
                        except Exception as exc:
                            outcome = exc
                        except BaseException as exc:
                            flow.throw(exc)
                            raise
                    else:
                        await self._call(action.handler, action.arg)
                    action = flow.send(outcome)
            except StopIteration as stop:
                sent: int = stop.value
                return sent

    async def _close_at_shutdown(self) -> None:
        """The event loop is shutting down (``shutdown_asyncgens``): new async I/O would start async
        generators the loop refuses, so what is left goes out through the client's blocking pool."""
        self._closed = True
        if self._timer is not None and not self._timer.done():
            self._timer.cancel()
        self._timer = None
        await self._flush(self._send_blocking)
        self._client._forget_stream(self)

    async def close(self) -> None:
        """Stop the timer and send what is buffered (a batch that failed before included). Idempotent."""
        if self._closed:
            return
        self._closed = True
        timer, self._timer = self._timer, None
        if timer is not None and not timer.done() and timer is not asyncio.current_task():
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer
        await self.flush()
        self._client._forget_stream(self)

    aclose = close

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _start(self) -> None:
        """On the first push: the client closes this stream if its event loop ends first; the timer starts."""
        if self._started:
            return
        self._started = True
        await self._client._adopt_stream(self)
        if self.flush_interval is not None:
            self._timer = asyncio.get_running_loop().create_task(self._tick(self.flush_interval))

    async def _tick(self, interval: float) -> None:
        while not self._closed:
            await asyncio.sleep(interval)
            await self.flush()

    async def _run(self, calls: list[tuple[Callable[[Any], Any], Any]]) -> None:
        for handler, arg in calls:
            await self._call(handler, arg)

    @staticmethod
    async def _call(handler: Callable[[Any], Any], arg: Any) -> None:
        try:
            outcome = handler(arg)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception as exc:
            _failed_handler(handler, exc)


class SyncStream:
    """A buffered stream on :class:`~driftlock.DriftlockSyncClient`; made by ``client.create_stream``.

    ``push(event)`` only buffers (it never waits for the network); a worker thread sends a batch when
    ``batch_size`` are waiting and every ``flush_interval`` seconds, and calls the handlers. ``flush()``
    sends in the calling thread. Failures go to the ``'error'`` handlers, never to the caller; the
    failed batch is sent again by the next flush. At most ``max_buffered`` events are held; beyond that
    the oldest are dropped and counted. Thread-safe.
    """

    def __init__(
        self,
        client: DriftlockSyncClient,
        stream_id: str | None,
        *,
        batch_size: int = 100,
        flush_interval: float | None = 5,
        max_buffered: int = MAX_BUFFERED,
    ) -> None:
        self.stream_id = stream_id
        self.flush_interval = _interval(flush_interval)
        self._client = client
        self._buffer = StreamBuffer(stream_id, batch_size, max_buffered)
        self._handlers = Handlers(coroutines=False)
        self._cond = threading.Condition()
        self._sending = threading.Lock()
        self._worker: threading.Thread | None = None
        self._closed = False
        self._retry_later = False  # the last flush failed: wait for the interval, not for a full batch
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"SyncStream({self.stream_id!r}, buffered={len(self)}, sent={self.sent}, dropped={self.dropped})"

    def __len__(self) -> int:
        with self._cond:
            return len(self._buffer)

    @property
    def buffered(self) -> int:
        return len(self)

    @property
    def sent(self) -> int:
        return self._buffer.sent

    @property
    def dropped(self) -> int:
        return self._buffer.dropped

    def on(self, event: str) -> Callable[[H], H]:
        """Decorator: ``@stream.on('anomaly')`` (each Anomaly), ``'batch'`` (each DetectionResult), ``'error'``."""
        return self._handlers.on(event)

    def push(self, event: Any) -> None:
        """Buffer one event and return at once.

        Raises:
            DriftlockValidationError: the event cannot be sent as JSON (it is not buffered).
            RuntimeError: the stream is closed.
        """
        with self._cond:
            if self._closed:
                raise RuntimeError(f"push() on closed stream {self.stream_id!r}: create a new stream")
            dropped = self._buffer.add(event)
            if self._buffer.due:
                self._cond.notify()
            if self._pid != os.getpid():  # forked: the worker thread stayed in the parent
                self._worker, self._pid = None, os.getpid()
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name=f"driftlock-stream-{self.stream_id}")
                self._worker.daemon = True
                self._worker.start()
        if dropped is not None:
            self._run(self._handlers.error_calls(dropped))

    def flush(self) -> int:
        """Send every buffered event now, in this thread; returns how many the API answered for.
        Never raises an API error."""
        with self._sending:
            flow = flush_flow(self._buffer, self._handlers)
            failed = False
            try:
                action = next(flow)
                while True:
                    outcome: Any = None
                    if isinstance(action, SendBatch):
                        try:
                            outcome = self._client.detect(action.events, stream_id=self.stream_id)
                        except Exception as exc:
                            outcome, failed = exc, True
                        except BaseException as exc:
                            flow.throw(exc)
                            raise
                    else:
                        self._call(action.handler, action.arg)
                    action = flow.send(outcome)
            except StopIteration as stop:
                self._retry_later = failed
                sent: int = stop.value
                return sent

    def close(self, timeout: float | None = None) -> None:
        """Stop the worker and send what is buffered (a batch that failed before included). Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
            worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(self._client.config.timeout + 1 if timeout is None else timeout)
        self.flush()
        self._client._forget_stream(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: self._closed or (self._buffer.due and not self._retry_later), self.flush_interval
                )
                if self._closed:
                    return
            self.flush()

    def _run(self, calls: list[tuple[Callable[[Any], Any], Any]]) -> None:
        for handler, arg in calls:
            self._call(handler, arg)

    @staticmethod
    def _call(handler: Callable[[Any], Any], arg: Any) -> None:
        try:
            outcome = handler(arg)
            if inspect.isawaitable(outcome):
                _discard(outcome)
                raise TypeError("a SyncStream handler must be a plain function, not a coroutine function")
        except Exception as exc:
            _failed_handler(handler, exc)


def _discard(awaitable: Awaitable[Any]) -> None:
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()


def _interval(value: float | None) -> float | None:
    if value is None or value == 0:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"flush_interval must be a number of seconds >= 0 or None, got {value!r}")
    return float(value)
