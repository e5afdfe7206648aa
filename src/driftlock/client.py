"""``DriftlockSyncClient`` and ``DriftlockClient``: the Driftlock API from Python.

Both share :mod:`driftlock._protocol` (request building, response parsing, retries, deadline) and
:class:`_ClientBase` (configuration, batching, merging); they differ only in how they do I/O.
With no API key and no base URL, requests are answered in process by the embedded engine.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import httpx

from driftlock import _protocol as protocol
from driftlock.config import Config
from driftlock.models import Anomaly, DetectionResult, merge_results

__all__ = ["AnomalyPage", "DriftlockClient", "DriftlockSyncClient", "Health"]

_EMBEDDED_ROOT = "http://driftlock.embedded"


@dataclass(frozen=True)
class Health:
    """``GET /healthz``: ``ok`` is True when the API says it is healthy."""

    ok: bool
    version: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Health:
        ok = data.get("ok")
        if ok is None:
            ok = data.get("success", False) and data.get("library_status", "healthy") == "healthy"
        version = data.get("version")
        return cls(ok=bool(ok), version=None if version is None else str(version), raw=dict(data))


@dataclass(frozen=True)
class AnomalyPage:
    """One page of ``GET /v1/anomalies``."""

    anomalies: tuple[Anomaly, ...]
    total: int
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AnomalyPage:
        items = data.get("anomalies") or []
        anomalies = tuple(Anomaly.from_dict(a) for a in items if isinstance(a, Mapping))
        total = data.get("total")
        return cls(anomalies=anomalies, total=int(total) if total is not None else len(anomalies), raw=data)


class _ClientBase:
    def __init__(self, config: Config | None = None, **options: Any) -> None:
        if config is not None and options:
            config = config.replace(**options)
        self.config = config if config is not None else Config.resolve(**options)
        if self.config.uses_embedded_engine:
            self.config = self.config.replace(base_url=_EMBEDDED_ROOT)
            self._embedded = True
        else:
            self._embedded = False
        self._closed = threading.Event()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    def _plan(
        self, events: Iterable[Any], stream_id: str | None, config_override: Mapping[str, Any] | None
    ) -> list[tuple[int, dict[str, Any]]]:
        items = protocol.encode_events(events)
        override = config_override if config_override is not None else self.config.config_override
        stream = stream_id or self.config.stream_id
        return [
            (offset, protocol.detect_body(part, stream, override))
            for offset, part in protocol.chunk(items, self.config.max_batch_size)
        ]

    def _deadline(self, timeout: float | None) -> float:
        return time.monotonic() + (self.config.timeout if timeout is None else timeout)

    def _transport_kwargs(self, *, asynchronous: bool) -> dict[str, Any]:
        if not self._embedded:
            return {}
        from driftlock.service.embedded import EmbeddedTransport

        return {"transport": EmbeddedTransport(self.config.embedded_db)}

    @staticmethod
    def _anomaly_path(anomaly_id: str, suffix: str = "") -> str:
        return "/v1/anomalies/" + httpx.URL(anomaly_id).raw_path.decode() + suffix


class DriftlockSyncClient(_ClientBase):
    """Synchronous client. Thread-safe; rebuilds its connection pool after ``fork()``.

    Args:
        config: a resolved :class:`Config`; keyword options override it.
        **options: any configuration keyword (``api_key``, ``base_url``, ``timeout``, ...).
    """

    def __init__(self, config: Config | None = None, **options: Any) -> None:
        super().__init__(config, **options)
        self._lock = threading.Lock()
        self._http: httpx.Client | None = None
        self._pid = os.getpid()

    def _client(self) -> httpx.Client:
        if self._http is None or self._pid != os.getpid():
            with self._lock:
                if self._http is None or self._pid != os.getpid():
                    # A pool inherited across fork() shares sockets with the parent: never reuse it.
                    self._http = httpx.Client(follow_redirects=False, **self._transport_kwargs(asynchronous=False))
                    self._pid = os.getpid()
        return self._http

    def _drive(self, flow: protocol.Flow) -> Any:
        action = next(flow)
        while True:
            outcome: Any
            if isinstance(action, protocol.Send):
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

    def _call(self, method: str, path: str, *, deadline: float | None = None, **kwargs: Any) -> Any:
        return self._drive(protocol.call_flow(self.config, method, path, deadline=deadline, **kwargs))

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
        parts = [
            (
                offset,
                DetectionResult.from_dict(self._call("POST", "/v1/detect", body=body, deadline=deadline)),
            )
            for offset, body in self._plan(events, stream_id, config_override)
        ]
        return merge_results(parts)

    def health(self) -> Health:
        return Health.from_dict(self._call("GET", "/healthz"))

    def list_anomalies(self, stream_id: str | None = None, limit: int = 50, offset: int = 0) -> AnomalyPage:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if stream_id:
            params["stream_id"] = stream_id
        return AnomalyPage.from_dict(self._call("GET", "/v1/anomalies", params=params))

    def get_anomaly(self, anomaly_id: str) -> Anomaly:
        return Anomaly.from_dict(self._call("GET", self._anomaly_path(anomaly_id)))

    def send_feedback(self, anomaly_id: str, feedback_type: str, reason: str | None = None) -> dict[str, Any]:
        body = {"feedback_type": feedback_type, **({"reason": reason} if reason else {})}
        result: dict[str, Any] = self._call("POST", self._anomaly_path(anomaly_id, "/feedback"), body=body)
        return result

    def close(self) -> None:
        """Close connections and interrupt any retry backoff in progress. Idempotent."""
        self._closed.set()
        with self._lock:
            if self._http is not None:
                self._http.close()
                self._http = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class DriftlockClient(_ClientBase):
    """Asynchronous client, with ``detect_sync`` for synchronous code such as Django views.

    The async connection pool belongs to one event loop and is rebuilt when used from another;
    ``detect_sync`` uses a thread-safe synchronous pool.
    """

    def __init__(self, config: Config | None = None, **options: Any) -> None:
        super().__init__(config, **options)
        self._sync = DriftlockSyncClient(self.config)
        self._sync._embedded = self._embedded
        self._http: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._http is None or self._loop is not loop:
            self._http = httpx.AsyncClient(follow_redirects=False, **self._transport_kwargs(asynchronous=True))
            self._loop = loop
        return self._http

    async def _drive(self, flow: protocol.Flow) -> Any:
        action = next(flow)
        while True:
            outcome: Any
            if isinstance(action, protocol.Send):
                try:
                    reply = await self._client().request(
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

    async def _call(self, method: str, path: str, *, deadline: float | None = None, **kwargs: Any) -> Any:
        return await self._drive(protocol.call_flow(self.config, method, path, deadline=deadline, **kwargs))

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
        parts = []
        for offset, body in self._plan(events, stream_id, config_override):
            data = await self._call("POST", "/v1/detect", body=body, deadline=deadline)
            parts.append((offset, DetectionResult.from_dict(data)))
        return merge_results(parts)

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

    async def health(self) -> Health:
        return Health.from_dict(await self._call("GET", "/healthz"))

    async def list_anomalies(self, stream_id: str | None = None, limit: int = 50, offset: int = 0) -> AnomalyPage:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if stream_id:
            params["stream_id"] = stream_id
        return AnomalyPage.from_dict(await self._call("GET", "/v1/anomalies", params=params))

    async def get_anomaly(self, anomaly_id: str) -> Anomaly:
        return Anomaly.from_dict(await self._call("GET", self._anomaly_path(anomaly_id)))

    async def send_feedback(self, anomaly_id: str, feedback_type: str, reason: str | None = None) -> dict[str, Any]:
        body = {"feedback_type": feedback_type, **({"reason": reason} if reason else {})}
        result: dict[str, Any] = await self._call("POST", self._anomaly_path(anomaly_id, "/feedback"), body=body)
        return result

    async def aclose(self) -> None:
        """Close both connection pools. Idempotent."""
        self._closed.set()
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        self._sync.close()

    def close(self) -> None:
        """Close the synchronous pool (use ``aclose`` from async code to close both)."""
        self._closed.set()
        self._sync.close()

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
