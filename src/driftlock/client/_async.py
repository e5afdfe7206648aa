"""``DriftlockClient``: the SDK page's client, async. I/O only; the requests are in ``_operations``.

A connection pool belongs to one event loop. Each loop the client is used on gets its own pool and a
guard: an async generator the loop closes at shutdown (``asyncio.run`` does, through
``shutdown_asyncgens``), which sends what the client's open streams hold and closes the pool while the
loop still runs. So a client used without ``async with`` leaves no socket behind and warns nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from driftlock import _protocol as protocol
from driftlock.client import _operations as ops
from driftlock.client._base import UNSET, ClientBase, _Unset, installed_transport, request_for, resolve_config
from driftlock.client._stream import MAX_BUFFERED, Stream
from driftlock.client._sync import DriftlockSyncClient
from driftlock.config import Config
from driftlock.exceptions import DriftlockAuthenticationError
from driftlock.models import (
    ActionResult,
    AnchorDetails,
    AnchorSettings,
    Anomaly,
    AnomalyPage,
    DetectionResult,
    ExportJob,
    Health,
    Incident,
    IncidentPage,
    Readiness,
    StreamProfile,
    StreamTuning,
    Verification,
    merge_results,
)
from driftlock.registry import REGISTRY

__all__ = ["DriftlockClient"]

logger = logging.getLogger("driftlock.client")

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def _guards() -> set[AsyncGenerator[None, None]]:
    """Live guards; the loops only hold them weakly."""
    return REGISTRY.slot("client.async_guards", set)


class _LoopResources:
    """One event loop's pool and open streams."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http: httpx.AsyncClient | None = http
        self.streams: dict[int, Stream] = {}
        self.guard: AsyncGenerator[None, None] | None = None

    async def aclose(self, *, shutdown: bool = False) -> None:
        for stream in list(self.streams.values()):
            try:
                await (stream._close_at_shutdown() if shutdown else stream.close())
            except Exception:  # close() reports to the handlers; this is the last resort
                logger.exception("driftlock: closing %r failed", stream)
        http, self.http = self.http, None
        if http is not None:
            await http.aclose()


async def _guard(resources: _LoopResources) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        if resources.guard is not None:
            _guards().discard(resources.guard)
        await resources.aclose(shutdown=True)


def _release(loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopResources]) -> None:
    """The client was collected: have each loop still running close its pool."""
    for loop, resources in list(loops.items()):
        guard = resources.guard
        if guard is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(_close_guard, loop, guard)


def _close_guard(loop: asyncio.AbstractEventLoop, guard: AsyncGenerator[None, None]) -> None:
    async def close() -> None:
        await guard.aclose()

    loop.create_task(close())


class DriftlockClient(ClientBase):
    """The Driftlock API, async; ``detect_sync`` for synchronous code such as Django views.

    ``DriftlockClient('dlk_...')`` or ``DriftlockClient(api_key=..., base_url=..., timeout=...,
    max_retries=..., retry_delay=..., max_retry_delay=...)``; any other setting as a keyword too, or a
    resolved ``Config``. With no API key and no base URL, the embedded engine answers in process.

    Namespaces: ``detection`` (demo), ``anomalies``, ``streams`` (profiles, tuning, anchors), ``incidents``,
    ``utils``; ``metrics=`` and ``transport=`` as on :class:`DriftlockSyncClient`. ``async with`` or
    ``await aclose()`` closes it; one left open is closed when its event loop shuts down. Async-safe;
    usable from several event loops (one pool each). ``detect_sync`` and ``monitor`` use a thread-safe
    synchronous pool, closed by ``close()``/``aclose()`` or at exit.
    """

    def __init__(
        self,
        api_key: str | Config | _Unset | None = UNSET,
        *,
        base_url: str | _Unset | None = UNSET,
        timeout: float | _Unset = UNSET,
        max_retries: int | _Unset = UNSET,
        retry_delay: float | _Unset = UNSET,
        max_retry_delay: float | _Unset = UNSET,
        config: Config | None = None,
        metrics: Any = False,
        transport: Any = None,
        **options: Any,
    ) -> None:
        options.update(
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            retry_delay=retry_delay,
            max_retry_delay=max_retry_delay,
        )
        resolved = resolve_config(api_key, config, options)
        super().__init__(resolved, metrics=metrics, transport=transport)
        self._sync = DriftlockSyncClient(resolved, metrics=metrics, transport=transport)
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopResources] = weakref.WeakKeyDictionary()
        self._finalizer = weakref.finalize(self, _release, self._loops)
        self.detection = Detection(self)
        self.anomalies = Anomalies(self)
        self.streams = Streams(self)
        self.incidents = Incidents(self)

    # -- I/O ----------------------------------------------------------------------------------

    async def _resources(self) -> _LoopResources:
        loop = asyncio.get_running_loop()
        resources = self._loops.get(loop)
        if resources is None or resources.http is None:
            http = httpx.AsyncClient(follow_redirects=False, **self._transport_kwargs())
            resources = self._loops[loop] = _LoopResources(http)
            guard = resources.guard = _guard(resources)
            _guards().add(guard)
            await guard.__anext__()  # started on this loop: the loop now closes it at shutdown
        return resources

    async def _client(self) -> httpx.AsyncClient:
        while True:
            http = (await self._resources()).http
            if http is not None:
                return http

    async def _drive(self, flow: protocol.Flow) -> Any:
        action = next(flow)
        while True:
            outcome: Any
            if isinstance(action, protocol.Send) and installed_transport() is not None:
                outcome = await _answer(installed_transport(), action)
            elif isinstance(action, protocol.Send):
                try:
                    reply = await (await self._client()).request(
                        action.method,
                        action.url,
                        headers=action.headers,
                        content=action.content,
                        params=action.params,
                        timeout=action.timeout,
                    )
                    outcome = protocol.Response(reply.status_code, reply.headers, reply.content)
                except httpx.TransportError as exc:
                    outcome = exc
            else:
                await asyncio.sleep(action.seconds)
                outcome = self._closed.is_set()
            try:
                action = flow.send(outcome)
            except StopIteration as stop:
                return stop.value

    async def _run(self, op: ops.Operation[T], deadline: float | None = None) -> T:
        result: T = await self._drive(self._flow(op, deadline))
        return result

    # -- the API ------------------------------------------------------------------------------

    async def detect(
        self,
        events: Iterable[Any],
        stream_id: str | None = None,
        config_override: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> DetectionResult:
        """Send events for detection; see :meth:`DriftlockSyncClient.detect`."""
        deadline = self._deadline(timeout)
        parts = self._detect_parts(events, stream_id, config_override)
        return merge_results([(offset, await self._run(op, deadline)) for offset, op in parts])

    def detect_sync(
        self,
        events: Iterable[Any],
        stream_id: str | None = None,
        config_override: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> DetectionResult:
        """The same as :meth:`detect`, blocking, for synchronous code."""
        return self._sync.detect(events, stream_id, config_override, timeout=timeout)

    async def verify(self, *, timeout: float | None = None) -> Verification:
        """Check the key cheaply; see :meth:`DriftlockSyncClient.verify`."""
        try:
            return self._verification(await self._run(ops.verify(), self._deadline(timeout)))
        except DriftlockAuthenticationError as exc:
            return self._refused(exc)

    async def health(self) -> Health:
        """``GET /healthz``: ``.ok``."""
        return await self._run(ops.health())

    async def readiness(self) -> Readiness:
        """``GET /readyz``: ``.ready`` and ``.database``."""
        return await self._run(ops.readiness())

    def create_stream(
        self,
        stream_id: str | None = None,
        batch_size: int = 100,
        flush_interval: float | None = 5,
        *,
        max_buffered: int = MAX_BUFFERED,
    ) -> Stream:
        """A buffered stream: ``await push`` events, they are sent ``batch_size`` at a time and every
        ``flush_interval`` seconds; ``async with`` flushes and closes it. See :class:`~driftlock.client.Stream`."""
        return Stream(self, stream_id, batch_size=batch_size, flush_interval=flush_interval, max_buffered=max_buffered)

    def monitor(
        self, stream_id: str | None = None, *, batch_size: int = 100, flush_interval: float | None = 5
    ) -> Callable[[F], F]:
        """Decorator: each call of the function (plain or async) is sent as an event to ``stream_id``.

        Never slows or fails the call; the function's exceptions propagate unchanged. Events are sent
        in batches from a background thread, and at ``close()``/``aclose()`` or exit.
        """
        return self._sync.monitor(stream_id, batch_size=batch_size, flush_interval=flush_interval)

    async def aclose(self) -> None:
        """Send what open streams hold and close every pool. Idempotent."""
        resources = self._loops.pop(asyncio.get_running_loop(), None)
        if resources is not None:
            await resources.aclose()  # streams flushed the usual way, then the pool
            if resources.guard is not None:
                _guards().discard(resources.guard)
                await resources.guard.aclose()  # nothing left for it to do
        _release(self._loops)
        await asyncio.to_thread(self._sync.close)
        self._closed.set()

    def close(self) -> None:
        """Close the synchronous pool (and what ``monitor`` holds); use ``aclose`` from async code to close all."""
        self._sync.close()
        self._closed.set()

    async def _adopt_stream(self, stream: Stream) -> None:
        """A stream in use on this loop: the loop's guard closes (flushes) it if the loop ends first."""
        (await self._resources()).streams[id(stream)] = stream

    def _forget_stream(self, stream: Stream) -> None:
        for resources in list(self._loops.values()):
            resources.streams.pop(id(stream), None)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


async def _answer(transport: Any, send: protocol.Send) -> Any:
    """``send`` answered by a transport a test installed (no pool: it may change between tests)."""
    try:
        reply = await transport.handle_async_request(request_for(send))
        return protocol.Response(reply.status_code, reply.headers, await reply.aread())
    except httpx.TransportError as exc:
        return exc


class Detection:
    """``client.detection``."""

    def __init__(self, client: DriftlockClient) -> None:
        self._client = client

    async def demo(self, events: Iterable[Any], config_override: Mapping[str, Any] | None = None) -> DetectionResult:
        """``POST /v1/demo/detect``: no key, nothing stored; ``result.demo.remaining_calls``."""
        return await self._client._run(ops.demo(events, config_override))


class Anomalies:
    """``client.anomalies``: list, read, give feedback on and export anomalies."""

    def __init__(self, client: DriftlockClient) -> None:
        self._client = client

    async def list(
        self,
        stream_id: str | None = None,
        status: str | None = None,
        from_date: str | None = None,
        to_date: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> AnomalyPage:
        """``GET /v1/anomalies``, newest first: ``.anomalies`` and ``.total``."""
        return await self._client._run(ops.list_anomalies(stream_id, status, from_date, to_date, limit, offset))

    async def get(self, anomaly_id: str) -> Anomaly:
        return await self._client._run(ops.get_anomaly(anomaly_id))

    async def feedback(self, anomaly_id: str, feedback_type: str, reason: str | None = None) -> ActionResult:
        """``feedback_type``: ``false_positive``, ``confirmed`` or ``dismissed``."""
        return await self._client._run(ops.anomaly_feedback(anomaly_id, feedback_type, reason))

    async def export(self, anomaly_id: str, fmt: str = "json") -> ExportJob:
        """Start an export (``json``, ``markdown``, ``html``, ``pdf``); fetch it with :meth:`get_export`."""
        return await self._client._run(ops.export_anomaly(anomaly_id, fmt))

    async def export_bulk(self, anomaly_ids: Sequence[str], fmt: str = "json") -> ExportJob:
        return await self._client._run(ops.export_anomalies(anomaly_ids, fmt))

    async def get_export(self, job_id: str) -> ExportJob:
        """``GET /v1/exports/{job_id}``: the job's ``status`` and, when done, its ``result``."""
        return await self._client._run(ops.get_export(job_id))


class Streams:
    """``client.streams``: a stream's detection profile, its tuning history and its drift anchor."""

    def __init__(self, client: DriftlockClient) -> None:
        self._client = client

    async def get_profile(self, stream_id: str) -> StreamProfile:
        return await self._client._run(ops.get_profile(stream_id))

    async def update_profile(self, stream_id: str, changes: Mapping[str, Any]) -> ActionResult:
        """``changes``: any of ``profile`` (sensitive|balanced|strict|custom), ``auto_tune_enabled``,
        ``adaptive_window_enabled``."""
        return await self._client._run(ops.update_profile(stream_id, changes))

    async def get_tuning(self, stream_id: str) -> StreamTuning:
        return await self._client._run(ops.get_tuning(stream_id))

    async def get_anchor(self, stream_id: str) -> AnchorSettings:
        return await self._client._run(ops.get_anchor(stream_id))

    async def get_anchor_details(self, stream_id: str) -> AnchorDetails:
        return await self._client._run(ops.get_anchor_details(stream_id))

    async def reset_anchor(self, stream_id: str, request: Mapping[str, Any]) -> ActionResult:
        """``request``: ``{'events': [...], 'force_reset': bool}``. A stream not calibrated yet answers 412
        (:class:`~driftlock.exceptions.DriftlockValidationError` with ``status`` 412)."""
        return await self._client._run(ops.reset_anchor(stream_id, request))

    async def deactivate_anchor(self, stream_id: str) -> ActionResult:
        return await self._client._run(ops.deactivate_anchor(stream_id))


class Incidents:
    """``client.incidents``: the alarms the detection service opened, and feedback on them."""

    def __init__(self, client: DriftlockClient) -> None:
        self._client = client

    async def list(
        self, stream_id: str | None = None, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> IncidentPage:
        return await self._client._run(ops.list_incidents(stream_id, status, limit, offset))

    async def get(self, incident_id: str) -> Incident:
        return await self._client._run(ops.get_incident(incident_id))

    async def feedback(self, incident_id: str, feedback_type: str, reason: str | None = None) -> ActionResult:
        return await self._client._run(ops.incident_feedback(incident_id, feedback_type, reason))
