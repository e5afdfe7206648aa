"""``DriftlockSyncClient``: the SDK page's client, blocking. I/O only; the requests are in ``_operations``."""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from driftlock import _protocol as protocol
from driftlock.client import _operations as ops
from driftlock.client._base import UNSET, ClientBase, _Unset, installed_transport, request_for, resolve_config
from driftlock.client._monitor import monitored
from driftlock.client._stream import MAX_BUFFERED, SyncStream
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

__all__ = ["DriftlockSyncClient"]

logger = logging.getLogger("driftlock.client")

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class _Resources:
    """What a sync client must release: its pool and its open streams. Closed by ``close()`` or, when the
    client is collected or the interpreter exits first, by a finalizer (so nothing warns about sockets)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.http: httpx.Client | None = None
        self.streams: dict[int, SyncStream] = {}

    def close(self) -> None:
        for stream in list(self.streams.values()):
            try:
                stream.close()
            except Exception:  # close() reports to the handlers; this is the last resort
                logger.exception("driftlock: closing %r failed", stream)
        with self.lock:
            http, self.http = self.http, None
        if http is not None:
            http.close()


class DriftlockSyncClient(ClientBase):
    """The Driftlock API, blocking. Thread-safe; rebuilds its connection pool after ``fork()``.

    ``DriftlockSyncClient('dlk_...')`` or ``DriftlockSyncClient(api_key=..., base_url=..., timeout=...,
    max_retries=..., retry_delay=..., max_retry_delay=...)``; any other setting (``stream_id``,
    ``max_batch_size``, ``config_override`` ...) as a keyword too, or a resolved ``Config``. With no
    API key and no base URL, the embedded engine answers in process.

    Namespaces: ``detection`` (demo), ``anomalies``, ``streams`` (profiles, tuning, anchors), ``incidents``,
    ``utils`` (``from_dataframe``). ``metrics=True`` (or a ``CollectorRegistry``) counts calls, errors,
    retries and durations in Prometheus; ``transport=`` (an httpx transport, such as
    ``driftlock.testing.FakeDriftlock().transport``) answers the requests instead of the network.
    Use it as a context manager or call ``close()``; one left open is closed when collected or at exit.
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
        super().__init__(resolve_config(api_key, config, options), metrics=metrics, transport=transport)
        self._pid = os.getpid()
        self._resources = _Resources()
        self._finalizer = weakref.finalize(self, self._resources.close)
        self._monitors: dict[str | None, SyncStream] = {}
        self.detection = SyncDetection(self)
        self.anomalies = SyncAnomalies(self)
        self.streams = SyncStreams(self)
        self.incidents = SyncIncidents(self)

    # -- I/O ----------------------------------------------------------------------------------

    def _client(self) -> httpx.Client:
        res = self._resources
        if res.http is None or self._pid != os.getpid():
            with res.lock:
                if res.http is None or self._pid != os.getpid():
                    # A pool inherited across fork() shares sockets with the parent: never reuse it.
                    res.http = httpx.Client(follow_redirects=False, **self._transport_kwargs())
                    self._pid = os.getpid()
        return res.http

    def _drive(self, flow: protocol.Flow) -> Any:
        action = next(flow)
        while True:
            outcome: Any
            if isinstance(action, protocol.Send) and installed_transport() is not None:
                outcome = _answer(installed_transport(), action)
            elif isinstance(action, protocol.Send):
                try:
                    reply = self._client().request(
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
                outcome = self._closed.wait(action.seconds)
            try:
                action = flow.send(outcome)
            except StopIteration as stop:
                return stop.value

    def _run(self, op: ops.Operation[T], deadline: float | None = None) -> T:
        result: T = self._drive(self._flow(op, deadline))
        return result

    # -- the API ------------------------------------------------------------------------------

    def detect(
        self,
        events: Iterable[Any],
        stream_id: str | None = None,
        config_override: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> DetectionResult:
        """Send events for detection; more than MAX_BATCH_SIZE are sent in several requests.

        Anomaly indexes always point into ``events``. ``timeout`` (default TIMEOUT) bounds the whole call.
        """
        deadline = self._deadline(timeout)
        parts = self._detect_parts(events, stream_id, config_override)
        return merge_results([(offset, self._run(op, deadline)) for offset, op in parts])

    def verify(self, *, timeout: float | None = None) -> Verification:
        """Check the key cheaply (at start-up, say): one authenticated read, nothing sent or stored.

        Returns a :class:`~driftlock.models.Verification` (``restricted`` for a key that may only ingest);
        raises :class:`~driftlock.exceptions.DriftlockAuthenticationError` when the key is refused,
        :class:`~driftlock.exceptions.DriftlockNetworkError` when the API cannot be reached.
        """
        try:
            return self._verification(self._run(ops.verify(), self._deadline(timeout)))
        except DriftlockAuthenticationError as exc:
            return self._refused(exc)

    def health(self) -> Health:
        """``GET /healthz``: ``.ok``."""
        return self._run(ops.health())

    def readiness(self) -> Readiness:
        """``GET /readyz``: ``.ready`` and ``.database``."""
        return self._run(ops.readiness())

    def create_stream(
        self,
        stream_id: str | None = None,
        batch_size: int = 100,
        flush_interval: float | None = 5,
        *,
        max_buffered: int = MAX_BUFFERED,
    ) -> SyncStream:
        """A buffered stream: ``push`` events, they are sent ``batch_size`` at a time and every
        ``flush_interval`` seconds. See :class:`~driftlock.client.SyncStream`."""
        stream = SyncStream(
            self, stream_id, batch_size=batch_size, flush_interval=flush_interval, max_buffered=max_buffered
        )
        self._resources.streams[id(stream)] = stream
        return stream

    def monitor(
        self, stream_id: str | None = None, *, batch_size: int = 100, flush_interval: float | None = 5
    ) -> Callable[[F], F]:
        """Decorator: each call of the function (plain or async) is sent as an event to ``stream_id``.

        Never slows or fails the call; the function's exceptions propagate unchanged. Events are sent
        in batches from a background thread, and at ``close()``.
        """
        stream = self._monitors.get(stream_id)
        if stream is None:
            stream = self._monitors[stream_id] = self.create_stream(stream_id, batch_size, flush_interval)

        def decorate(function: F) -> F:
            return monitored(function, stream.push)

        return decorate

    def close(self) -> None:
        """Send what open streams hold, close connections, interrupt any retry backoff. Idempotent."""
        self._finalizer()
        self._closed.set()

    def _forget_stream(self, stream: SyncStream) -> None:
        self._resources.streams.pop(id(stream), None)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _answer(transport: Any, send: protocol.Send) -> Any:
    """``send`` answered by a transport a test installed (no pool: it may change between tests)."""
    try:
        reply = transport.handle_request(request_for(send))
        return protocol.Response(reply.status_code, reply.headers, reply.read())
    except httpx.TransportError as exc:
        return exc


class SyncDetection:
    """``client.detection``."""

    def __init__(self, client: DriftlockSyncClient) -> None:
        self._client = client

    def demo(self, events: Iterable[Any], config_override: Mapping[str, Any] | None = None) -> DetectionResult:
        """``POST /v1/demo/detect``: no key, nothing stored; ``result.demo.remaining_calls``."""
        return self._client._run(ops.demo(events, config_override))


class SyncAnomalies:
    """``client.anomalies``: list, read, give feedback on and export anomalies."""

    def __init__(self, client: DriftlockSyncClient) -> None:
        self._client = client

    def list(
        self,
        stream_id: str | None = None,
        status: str | None = None,
        from_date: str | None = None,
        to_date: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> AnomalyPage:
        """``GET /v1/anomalies``, newest first: ``.anomalies`` and ``.total``."""
        return self._client._run(ops.list_anomalies(stream_id, status, from_date, to_date, limit, offset))

    def get(self, anomaly_id: str) -> Anomaly:
        return self._client._run(ops.get_anomaly(anomaly_id))

    def feedback(self, anomaly_id: str, feedback_type: str, reason: str | None = None) -> ActionResult:
        """``feedback_type``: ``false_positive``, ``confirmed`` or ``dismissed``."""
        return self._client._run(ops.anomaly_feedback(anomaly_id, feedback_type, reason))

    def export(self, anomaly_id: str, fmt: str = "json") -> ExportJob:
        """Start an export (``json``, ``markdown``, ``html``, ``pdf``); fetch it with :meth:`get_export`."""
        return self._client._run(ops.export_anomaly(anomaly_id, fmt))

    def export_bulk(self, anomaly_ids: Sequence[str], fmt: str = "json") -> ExportJob:
        return self._client._run(ops.export_anomalies(anomaly_ids, fmt))

    def get_export(self, job_id: str) -> ExportJob:
        """``GET /v1/exports/{job_id}``: the job's ``status`` and, when done, its ``result``."""
        return self._client._run(ops.get_export(job_id))


class SyncStreams:
    """``client.streams``: a stream's detection profile, its tuning history and its drift anchor."""

    def __init__(self, client: DriftlockSyncClient) -> None:
        self._client = client

    def get_profile(self, stream_id: str) -> StreamProfile:
        return self._client._run(ops.get_profile(stream_id))

    def update_profile(self, stream_id: str, changes: Mapping[str, Any]) -> ActionResult:
        """``changes``: any of ``profile`` (sensitive|balanced|strict|custom), ``auto_tune_enabled``,
        ``adaptive_window_enabled``."""
        return self._client._run(ops.update_profile(stream_id, changes))

    def get_tuning(self, stream_id: str) -> StreamTuning:
        return self._client._run(ops.get_tuning(stream_id))

    def get_anchor(self, stream_id: str) -> AnchorSettings:
        return self._client._run(ops.get_anchor(stream_id))

    def get_anchor_details(self, stream_id: str) -> AnchorDetails:
        return self._client._run(ops.get_anchor_details(stream_id))

    def reset_anchor(self, stream_id: str, request: Mapping[str, Any]) -> ActionResult:
        """``request``: ``{'events': [...], 'force_reset': bool}``. A stream not calibrated yet answers 412
        (:class:`~driftlock.exceptions.DriftlockValidationError` with ``status`` 412)."""
        return self._client._run(ops.reset_anchor(stream_id, request))

    def deactivate_anchor(self, stream_id: str) -> ActionResult:
        return self._client._run(ops.deactivate_anchor(stream_id))


class SyncIncidents:
    """``client.incidents``: the alarms the detection service opened, and feedback on them."""

    def __init__(self, client: DriftlockSyncClient) -> None:
        self._client = client

    def list(
        self, stream_id: str | None = None, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> IncidentPage:
        return self._client._run(ops.list_incidents(stream_id, status, limit, offset))

    def get(self, incident_id: str) -> Incident:
        return self._client._run(ops.get_incident(incident_id))

    def feedback(self, incident_id: str, feedback_type: str, reason: str | None = None) -> ActionResult:
        return self._client._run(ops.incident_feedback(incident_id, feedback_type, reason))
