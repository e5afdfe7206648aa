"""``FakeDriftlock``: the Driftlock API in memory, for testing an application's own anomaly handling.

Its ``transport`` is an httpx transport (sync and async), so the real clients run unchanged on top of it: the same
retries, deadlines, parsing and result types as against a server. Installed (``with FakeDriftlock()``
or the ``driftlock_fake`` pytest fixture), it answers every client of the process, including those the
application builds itself and the exporter's; or pass ``transport=fake.transport`` to one client.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import threading
import time
import urllib.parse
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import httpx

from driftlock.client import DriftlockClient, DriftlockSyncClient
from driftlock.client._base import install_transport, uninstall_transport

__all__ = ["Call", "DetectCall", "FakeDriftlock", "Feedback"]

Flag = Callable[[Mapping[str, Any]], bool | str | None]
"""Decides whether an event is anomalous: truthy means yes, a string is also the anomaly's ``why``."""

_FIGURES = {"ncd": 0.82, "p_value": 0.001, "confidence_level": 0.999, "compression_ratio": 1.9}


@dataclass(frozen=True)
class Call:
    """One request the fake received: what was asked and what it answered (``status`` 0: a network error)."""

    method: str
    path: str
    params: Mapping[str, str]
    body: Any
    api_key: str | None
    status: int


@dataclass(frozen=True)
class DetectCall:
    """One ``POST /v1/detect`` the fake answered: the events as sent (envelopes with ``body``)."""

    stream_id: str
    events: list[dict[str, Any]]
    config_override: Mapping[str, Any] | None
    anomalies: list[int]


@dataclass(frozen=True)
class Feedback:
    """Feedback given on an anomaly or an incident."""

    target: str
    id: str
    feedback_type: str
    reason: str | None


@dataclass
class _Fault:
    status: int  # 0: a network error; -1: a timeout
    times: int | None
    retry_after: float | None = None
    message: str | None = None


@dataclass
class _State:
    calls: list[Call] = field(default_factory=list)
    detects: list[DetectCall] = field(default_factory=list)
    feedback: list[Feedback] = field(default_factory=list)
    anomalies: dict[str, dict[str, Any]] = field(default_factory=dict)
    incidents: dict[str, dict[str, Any]] = field(default_factory=dict)
    scripted: deque[list[Any]] = field(default_factory=deque)
    faults: deque[_Fault] = field(default_factory=deque)


class _Transport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """The httpx face of a :class:`FakeDriftlock` (``fake.transport``)."""

    def __init__(self, fake: FakeDriftlock) -> None:
        self.fake = fake

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        wait, timeout = self.fake._wait(request)
        if wait:
            time.sleep(wait)
        return self.fake._answer(request, timed_out=timeout)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        wait, timeout = self.fake._wait(request)
        if wait:
            await asyncio.sleep(wait)
        return self.fake._answer(request, timed_out=timeout)


class FakeDriftlock:
    """The Driftlock API in memory. Thread-safe; one instance serves sync and async clients alike.

    Args:
        api_key: when set, requests with another ``X-Api-Key`` are refused with 401, as the API does.
        flag: a function of each event (the envelope, ``{"body": ...}``): truthy marks it anomalous, a
            string is also its ``why``. Without it (and without :meth:`next_detect`), nothing is anomalous.

    Script it with :meth:`next_detect`, :meth:`flag`, :meth:`fail`, :meth:`disconnect`, :meth:`slow`;
    read what it received from :attr:`calls`, :attr:`detect_calls`, :meth:`events` and :attr:`feedback`.
    Each detect that finds anomalies opens one incident, its first anomaly opening it, so the exporter's
    handlers (``ON_ANOMALY``, the ``anomaly_detected`` signal) hear of it once.
    """

    def __init__(self, *, api_key: str | None = None, flag: Flag | None = None) -> None:
        self.api_key = api_key
        self._flag = flag
        self._delay = 0.0
        self._lock = threading.Lock()
        self._state = _State()
        self.transport = _Transport(self)
        """An httpx transport (sync and async): ``DriftlockClient(transport=fake.transport)``."""

    # -- scripting ------------------------------------------------------------------------------

    def flag(self, predicate: Flag | None) -> None:
        """From now on, events for which ``predicate(event)`` is truthy are anomalies (None: none are)."""
        self._flag = predicate

    def next_detect(self, *anomalies: int | Mapping[str, Any]) -> None:
        """The next detect call answers these anomalies: event indexes, or dicts with ``index`` and any of
        ``why``, ``ncd``, ``p_value``, ``confidence``. Call it again to script the call after."""
        self._state.scripted.append(list(anomalies))

    def fail(
        self, status: int = 503, *, times: int | None = 1, retry_after: float | None = None, message: str | None = None
    ) -> None:
        """The next ``times`` requests (None: all, until :meth:`heal`) answer ``status`` with the API's error
        envelope, and ``Retry-After`` when given. The client retries 429/502/503/504 as it would."""
        self._state.faults.append(_Fault(status, times, retry_after, message))

    def disconnect(self, *, times: int | None = 1) -> None:
        """The next ``times`` requests (None: all, until :meth:`heal`) fail to connect."""
        self._state.faults.append(_Fault(0, times))

    def slow(self, seconds: float) -> None:
        """Every request takes ``seconds``; longer than the client's timeout is a timeout, as on a network."""
        self._delay = float(seconds)

    def heal(self) -> None:
        """No more faults nor slowness."""
        with self._lock:
            self._state.faults.clear()
        self._delay = 0.0

    def reset(self) -> None:
        """Forget everything received and scripted (the ``flag`` and the key stay)."""
        with self._lock:
            self._state = _State()
        self._delay = 0.0

    # -- what it received -------------------------------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        """Every request, in order, retries included."""
        with self._lock:
            return list(self._state.calls)

    @property
    def detect_calls(self) -> list[DetectCall]:
        """The detect calls answered (a retried call appears once, a failed one not at all)."""
        with self._lock:
            return list(self._state.detects)

    @property
    def feedback(self) -> list[Feedback]:
        with self._lock:
            return list(self._state.feedback)

    def events(self, stream_id: str | None = None) -> list[dict[str, Any]]:
        """The events detected, in order (of one stream, or all)."""
        return [e for d in self.detect_calls if stream_id in (None, d.stream_id) for e in d.events]

    # -- clients and installation -------------------------------------------------------------------

    def client(self, **options: Any) -> DriftlockClient:
        """A real ``DriftlockClient`` answered by this fake (with its key, when it has one)."""
        options.setdefault("api_key", self.api_key or "dlk_test")
        return DriftlockClient(transport=self.transport, **options)

    def sync_client(self, **options: Any) -> DriftlockSyncClient:
        """A real ``DriftlockSyncClient`` answered by this fake."""
        options.setdefault("api_key", self.api_key or "dlk_test")
        return DriftlockSyncClient(transport=self.transport, **options)

    def install(self) -> None:
        """Answer every client of this process (built before or after) until :meth:`uninstall`."""
        install_transport(self.transport)

    def uninstall(self) -> None:
        uninstall_transport(self.transport)

    def __enter__(self) -> Self:
        self.install()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.uninstall()

    # -- the transport ---------------------------------------------------------------------------

    def _wait(self, request: httpx.Request) -> tuple[float, bool]:
        limit = (request.extensions.get("timeout") or {}).get("read")
        if limit is not None and self._delay > limit:
            return float(limit), True
        return self._delay, False

    def _answer(self, request: httpx.Request, *, timed_out: bool) -> httpx.Response:
        path = _api_path(request.url.path)
        params = dict(request.url.params)
        body = _json(request.content)
        key = request.headers.get("x-api-key")
        status, payload, headers = 0, None, {}
        try:
            if timed_out:
                raise httpx.ReadTimeout("FakeDriftlock.slow(): slower than the client's timeout", request=request)
            fault = self._take_fault()
            if fault is not None and fault.status == 0:
                raise httpx.ConnectError("FakeDriftlock.disconnect(): connection refused", request=request)
            if fault is not None:
                status, payload = fault.status, _error(_code(fault.status), fault.message or "fault injected by a test")
                if fault.retry_after is not None:
                    headers["Retry-After"] = f"{fault.retry_after:g}"
            elif self.api_key is not None and key != self.api_key and _needs_key(path):
                status, payload = 401, _error("unauthorized", "authentication failed")
            else:
                status, payload = self._route(request.method, path, params, body)
        finally:
            with self._lock:
                self._state.calls.append(Call(request.method, path, params, body, key, status))
        return httpx.Response(status, json=payload, headers=headers)

    def _take_fault(self) -> _Fault | None:
        with self._lock:
            faults = self._state.faults
            if not faults:
                return None
            fault = faults[0]
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    faults.popleft()
            return fault

    # -- the API ---------------------------------------------------------------------------------

    def _route(self, method: str, path: str, params: Mapping[str, str], body: Any) -> tuple[int, Any]:
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
        if (method, path) == ("GET", "/healthz"):
            return 200, {"success": True, "library_status": "healthy", "version": "fake"}
        if (method, path) == ("GET", "/readyz"):
            return 200, {"ready": True, "database": "connected"}
        if method == "POST" and path in ("/v1/detect", "/v1/demo/detect"):
            return self._detect(body, demo=path == "/v1/demo/detect")
        if parts[:2] in (["v1", "anomalies"], ["v1", "incidents"]):
            kind = parts[1]
            one = "anomaly" if kind == "anomalies" else "incident"
            with self._lock:
                store = self._state.anomalies if kind == "anomalies" else self._state.incidents
                if method == "GET" and len(parts) == 2:
                    return 200, _page(kind, list(store.values()), params)
                found = store.get(str(parts[2])) if len(parts) > 2 else None
                if found is not None and method == "GET" and len(parts) == 3:
                    return 200, found
                if found is not None and method == "POST" and parts[3:] == ["feedback"] and isinstance(body, dict):
                    self._state.feedback.append(
                        Feedback(one, parts[2], str(body.get("feedback_type")), body.get("reason"))
                    )
                    return 200, {"success": True, "message": "Feedback recorded"}
            if len(parts) > 2:
                return 404, _error("not_found", f"no {one} {parts[2]!r}")
        return 404, _error("not_found", f"driftlock.testing.FakeDriftlock does not answer {method} {path}")

    def _detect(self, body: Any, *, demo: bool) -> tuple[int, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("events"), list) or not body["events"]:
            return 400, _error("invalid_argument", "events must be a non-empty list")
        events: list[dict[str, Any]] = body["events"]
        stream = str(body.get("stream_id") or "default")
        with self._lock:
            script = self._state.scripted.popleft() if self._state.scripted else None
        marked = self._mark(events, script)
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        incident_id = str(uuid.uuid4()) if marked and not demo else None
        anomalies = []
        for position, (index, spec) in enumerate(marked):
            figures = {**_FIGURES, **{k: spec[k] for k in ("ncd", "p_value") if k in spec}}
            if "confidence" in spec:
                figures["confidence_level"] = spec["confidence"]
            why = str(spec.get("why") or "the event is unlike the stream's baseline (scripted by a test)")
            anomaly: dict[str, Any] = {
                "id": str(uuid.uuid4()),
                "index": index,
                "detected": True,
                "stream_id": stream,
                "why": why,
                "explanation": why,
                "status": "open",
                "detected_at": now,
                "metrics": {**figures, "is_statistically_significant": True, "is_anomaly": True},
                "event": events[index],
            }
            if incident_id is not None:
                anomaly["incident"] = {"id": incident_id, "opened": position == 0}
            anomalies.append(anomaly)
        answer: dict[str, Any] = {
            "success": True,
            "stream_id": stream,
            "batch_id": str(uuid.uuid4()),
            "total_events": len(events),
            "anomaly_count": len(anomalies),
            "anomalies": anomalies,
            "status": "ready",
            "detection_ready": True,
            "processing_time": "0ms",
            "compression_algo": "zstd",
            "request_id": "fake-" + uuid.uuid4().hex[:12],
        }
        if demo:
            answer["demo"] = {"remaining_calls": 9, "limit_per_minute": 10, "max_events_per_request": 200}
            return 200, answer
        incidents: list[dict[str, Any]] = []
        if incident_id is not None:
            incidents.append(
                {
                    "id": incident_id,
                    "stream_id": stream,
                    "status": "open",
                    "change": "opened",
                    "opened_at": now,
                    "last_seen_at": now,
                    "anomaly_count": len(anomalies),
                    "explanation": {"summary": anomalies[0]["why"]},
                    "anomalies": anomalies,
                }
            )
        answer["incidents"] = incidents
        with self._lock:
            for anomaly in anomalies:
                self._state.anomalies[anomaly["id"]] = anomaly
            for incident in incidents:
                self._state.incidents[str(incident["id"])] = {**incident, "change": None}
            override = body.get("config_override")
            self._state.detects.append(
                DetectCall(stream, events, override if isinstance(override, dict) else None, [i for i, _ in marked])
            )
        return 200, answer

    def _mark(self, events: list[dict[str, Any]], script: list[Any] | None) -> list[tuple[int, Mapping[str, Any]]]:
        """(index, spec) of each anomalous event: the script's, else the flag's."""
        if script is not None:
            marked = []
            for item in script:
                spec: Mapping[str, Any] = {"index": item} if isinstance(item, int) else item
                index = spec.get("index")
                if not isinstance(index, int) or not 0 <= index < len(events):
                    raise ValueError(
                        f"FakeDriftlock.next_detect: index {index!r} is not an event of a batch of {len(events)}"
                    )
                marked.append((index, spec))
            return sorted(marked, key=lambda m: m[0])
        if self._flag is None:
            return []
        found: list[tuple[int, Mapping[str, Any]]] = []
        for index, event in enumerate(events):
            verdict = self._flag(event)
            if verdict:
                found.append((index, {"why": verdict} if isinstance(verdict, str) else {}))
        return found


def _api_path(path: str) -> str:
    """The API path whatever the base URL's own prefix (``https://host/api/v1/detect`` -> ``/v1/detect``)."""
    at = path.find("/v1/")
    if at >= 0:
        return path[at:]
    for health in ("/healthz", "/readyz"):
        if path.endswith(health):
            return health
    return path


def _needs_key(path: str) -> bool:
    return path not in ("/healthz", "/readyz", "/v1/demo/detect")


def _json(content: bytes) -> Any:
    try:
        return json.loads(content) if content else None
    except ValueError:
        return content.decode("utf-8", "replace")


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "request_id": "fake-" + uuid.uuid4().hex[:12]}}


def _code(status: int) -> str:
    return {429: "rate_limit_exceeded", 401: "unauthorized", 403: "forbidden", 400: "invalid_argument"}.get(
        status, "unavailable" if status >= 500 else "error"
    )


def _page(kind: str, items: list[dict[str, Any]], params: Mapping[str, str]) -> dict[str, Any]:
    chosen = [
        i
        for i in reversed(items)
        if params.get("stream_id") in (None, i.get("stream_id")) and params.get("status") in (None, i.get("status"))
    ]
    limit, offset = _int(params.get("limit"), 50), _int(params.get("offset"), 0)
    return {kind: chosen[offset : offset + limit], "total": len(chosen), "limit": limit, "offset": offset}


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default
