"""The Driftlock API's semantics, without a web framework.

:class:`DetectionService` validates requests, keeps one detector state per stream, runs detections
and shapes responses as the Driftlock API does (API-AND-CBAD.md §1). ``driftlock serve`` puts HTTP,
authentication and persistence around it; :func:`embedded_transport` answers the SDK's requests in
process with it, which is what the clients use when no API key and no base URL are configured.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs

import httpx

from driftlock._version import __version__
from driftlock.engine.settings import DEMO_SETTINGS, DetectionSettings, SettingsError, resolve_settings
from driftlock.engine.stream import MIN_BASELINE_SIZE, StreamState, WindowResult, ingest
from driftlock.engine.tokenize import event_bytes

__all__ = ["ApiError", "DetectionService", "MemoryStore", "Store", "embedded_transport", "go_duration"]

MAX_EVENTS = 1000
MAX_DEMO_EVENTS = 200
MAX_EVENT_BYTES = 1 << 20
DEFAULT_STREAM = "default"
FEEDBACK_TYPES = ("false_positive", "confirmed", "dismissed")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class ApiError(Exception):
    """An error response: HTTP status, error code and message, as the error envelope carries them."""

    CODES = {
        400: "invalid_argument",
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        413: "payload_too_large",
        429: "rate_limit_exceeded",
        503: "service_unavailable",
    }

    def __init__(self, status: int, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after

    def body(self, request_id: str) -> dict[str, Any]:
        error: dict[str, Any] = {
            "code": self.CODES.get(self.status, "internal"),
            "message": self.message,
            "request_id": request_id,
        }
        if self.retry_after is not None:
            error["retry_after_seconds"] = self.retry_after
        return {"error": error}


class Store(Protocol):
    """Where stream state and anomalies live: memory for the embedded engine, SQLite for the server."""

    def load_stream(self, stream_id: str) -> StreamState | None: ...
    def save_stream(self, state: StreamState, appended: int) -> None: ...
    def list_stream_ids(self) -> list[str]: ...
    def add_anomalies(self, records: list[dict[str, Any]]) -> None: ...
    def list_anomalies(self, stream_id: str | None, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]: ...
    def get_anomaly(self, anomaly_id: str) -> dict[str, Any] | None: ...
    def add_feedback(self, anomaly_id: str, feedback_type: str, reason: str | None) -> bool: ...


class MemoryStore:
    """Keeps everything in this process; anomalies are capped so memory stays bounded."""

    def __init__(self, max_anomalies: int = 10_000) -> None:
        self._streams: dict[str, StreamState] = {}
        self._anomalies: dict[str, dict[str, Any]] = {}
        self._max = max_anomalies
        self._lock = threading.Lock()

    def load_stream(self, stream_id: str) -> StreamState | None:
        return self._streams.get(stream_id)

    def save_stream(self, state: StreamState, appended: int) -> None:
        self._streams[state.stream_id] = state

    def list_stream_ids(self) -> list[str]:
        return sorted(self._streams)

    def add_anomalies(self, records: list[dict[str, Any]]) -> None:
        with self._lock:
            for record in records:
                self._anomalies[record["id"]] = record
            while len(self._anomalies) > self._max:
                del self._anomalies[next(iter(self._anomalies))]

    def list_anomalies(self, stream_id: str | None, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        with self._lock:
            rows = [a for a in reversed(self._anomalies.values()) if stream_id in (None, a["stream_id"])]
        return rows[offset : offset + limit], len(rows)

    def get_anomaly(self, anomaly_id: str) -> dict[str, Any] | None:
        return self._anomalies.get(anomaly_id)

    def add_feedback(self, anomaly_id: str, feedback_type: str, reason: str | None) -> bool:
        record = self._anomalies.get(anomaly_id)
        if record is None:
            return False
        record.setdefault("feedback", []).append({"feedback_type": feedback_type, "reason": reason})
        record["status"] = "acknowledged" if feedback_type == "confirmed" else "resolved"
        return True


@dataclass
class StreamStats:
    """Counters since start, for ``/metrics``."""

    events: int = 0
    anomalies: int = 0
    detections: int = 0
    latency_sum: float = 0.0
    latency_count: int = 0
    latency_buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))

    def observe(self, seconds: float) -> None:
        self.latency_sum += seconds
        self.latency_count += 1
        for i, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                self.latency_buckets[i] += 1


def go_duration(seconds: float) -> str:
    """Format like Go's time.Duration: ``850µs``, ``1.234ms``, ``2.5s``."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f}µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3f}".rstrip("0").rstrip(".") + "ms"
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"


class DetectionService:
    """Thread-safe. Detections of different streams run concurrently; one stream's run in order."""

    def __init__(self, store: Store | None = None) -> None:
        self.store: Store = store if store is not None else MemoryStore()
        self._states: dict[str, StreamState] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.stats: dict[str, StreamStats] = {}
        self.started = time.time()

    # -- streams ----------------------------------------------------------------------------

    def _lock_for(self, stream_id: str) -> threading.Lock:
        with self._guard:
            lock = self._locks.get(stream_id)
            if lock is None:
                lock = self._locks[stream_id] = threading.Lock()
                self.stats.setdefault(stream_id, StreamStats())
            return lock

    def _state(self, stream_id: str) -> StreamState:
        state = self._states.get(stream_id)
        if state is None:
            state = self.store.load_stream(stream_id) or StreamState(stream_id)
            self._states[stream_id] = state
        return state

    def stream_info(self, stream_id: str) -> dict[str, Any] | None:
        if stream_id not in self._states and self.store.load_stream(stream_id) is None:
            return None
        with self._lock_for(stream_id):
            state = self._state(stream_id)
            need = resolve_settings(None).min_events
            return {
                "stream_id": stream_id,
                "events_ingested": state.events_ingested,
                "status": "calibrating" if state.events_ingested < MIN_BASELINE_SIZE else "ready",
                "detection_ready": len(state.events) >= need,
                "detection_events_needed": max(0, need - len(state.events)),
                "detections": state.detections,
                "anomaly_count": state.anomaly_count,
                "last_event_at": _iso(state.last_event_at),
            }

    def recent_events(self, stream_id: str, limit: int) -> list[Any]:
        """The stream's newest events as the engine stores them (canonical and tokenized), oldest first."""
        if stream_id not in self._states and self.store.load_stream(stream_id) is None:
            raise ApiError(404, f"stream {stream_id} not found")
        with self._lock_for(stream_id):
            events = list(self._state(stream_id).events)[-limit:]
        return [json.loads(e) for e in events]

    def streams(self) -> list[dict[str, Any]]:
        ids = sorted(set(self.store.list_stream_ids()) | set(self._states))
        return [info for sid in ids if (info := self.stream_info(sid)) is not None]

    # -- detection --------------------------------------------------------------------------

    def detect(self, body: Any, *, request_id: str) -> dict[str, Any]:
        events, override = _validated(body, MAX_EVENTS)
        stream_id = body.get("stream_id") or DEFAULT_STREAM
        if not isinstance(stream_id, str) or len(stream_id) > 200:
            raise ApiError(400, "stream_id must be a string of at most 200 characters")
        try:
            settings = resolve_settings(override)
        except SettingsError as exc:
            raise ApiError(400, f"invalid config_override: {exc}") from None
        started = time.perf_counter()
        encoded = [event_bytes(e, tokenizer=settings.tokenizer) for e in events]
        with self._lock_for(stream_id):
            state = self._state(stream_id)
            kept = [(i, e) for i, e in enumerate(encoded) if len(e) <= MAX_EVENT_BYTES]
            found = ingest(state, [e for _, e in kept], settings)
            state.last_event_at = time.time()
            found = [WindowResult(kept[r.index][0], r.detection, r.why) for r in found]
            batch_id = str(uuid.uuid4())
            anomalies = [_anomaly(r, events, stream_id, batch_id) for r in found]
            self.store.save_stream(state, appended=len(kept))
            if anomalies:
                self.store.add_anomalies([_record(a, stream_id, batch_id) for a in anomalies])
            elapsed = time.perf_counter() - started
            stats = self.stats[stream_id]
            stats.events += len(events)
            stats.anomalies += len(anomalies)
            stats.detections += 1
            stats.observe(elapsed)
            return _detect_response(state, settings, anomalies, len(events), batch_id, elapsed, request_id)

    def demo_detect(self, body: Any, *, request_id: str, remaining_calls: int, limit: int) -> dict[str, Any]:
        events, override = _validated(body, MAX_DEMO_EVENTS)
        try:
            settings = resolve_settings(override, base=DEMO_SETTINGS, permutation_cap=None)
        except SettingsError as exc:
            raise ApiError(400, f"invalid config_override: {exc}") from None
        started = time.perf_counter()
        state = StreamState("demo")
        found = ingest(state, [event_bytes(e) for e in events], settings)
        anomalies = [_anomaly(r, events, None, None) for r in found]
        return {
            "success": True,
            "total_events": len(events),
            "anomaly_count": len(anomalies),
            "processing_time": go_duration(time.perf_counter() - started),
            "compression_algo": settings.compressor,
            "anomalies": anomalies,
            "request_id": request_id,
            "demo": {
                "message": "Demo detection: nothing is stored. Run `driftlock serve` for streams.",
                "remaining_calls": remaining_calls,
                "limit_per_minute": limit,
                "max_events_per_request": MAX_DEMO_EVENTS,
                "signup_url": "https://driftlock.net",
            },
        }

    # -- anomalies --------------------------------------------------------------------------

    def list_anomalies(self, query: Mapping[str, str], *, request_id: str) -> dict[str, Any]:
        limit = _int_param(query, "limit", 50, 1, 200)
        offset = _int_param(query, "offset", 0, 0, 10**9)
        rows, total = self.store.list_anomalies(query.get("stream_id") or None, limit, offset)
        return {
            "anomalies": [_summary(r) for r in rows],
            "total": total,
            "limit": limit,
            "offset": offset,
            "request_id": request_id,
        }

    def get_anomaly(self, anomaly_id: str, *, request_id: str) -> dict[str, Any]:
        record = self.store.get_anomaly(anomaly_id)
        if record is None:
            raise ApiError(404, f"anomaly {anomaly_id} not found")
        return {
            **_summary(record),
            "batch_id": record.get("batch_id"),
            "index": record.get("index"),
            "metrics": record["metrics"],
            "event": record.get("event"),
            "why": record["why"],
            "feedback": record.get("feedback", []),
            "request_id": request_id,
        }

    def feedback(self, anomaly_id: str, body: Any, *, request_id: str) -> dict[str, Any]:
        if not isinstance(body, Mapping) or body.get("feedback_type") not in FEEDBACK_TYPES:
            raise ApiError(400, f"feedback_type must be one of {', '.join(FEEDBACK_TYPES)}")
        reason = body.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise ApiError(400, "reason must be a string")
        if not self.store.add_feedback(anomaly_id, body["feedback_type"], reason):
            raise ApiError(404, f"anomaly {anomaly_id} not found")
        return {"success": True, "message": "Feedback recorded", "request_id": request_id}

    def health(self, *, request_id: str) -> dict[str, Any]:
        return {
            "success": True,
            "ok": True,
            "request_id": request_id,
            "library_status": "healthy",
            "version": __version__,
            "available_algos": ["zstd", "zlab", "gzip"],
            "openzl_available": False,
            "database": "connected",
        }

    # -- one router for the embedded transport and the server ----------------------------------

    def handle(self, method: str, path: str, query: Mapping[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        """Answer one API request; returns (status, JSON body). Errors use the error envelope."""
        request_id = str(time.time_ns())
        try:
            return 200, self._route(method, path, query, body, request_id)
        except ApiError as exc:
            return exc.status, exc.body(request_id)

    def _route(self, method: str, path: str, query: Mapping[str, str], body: bytes, request_id: str) -> dict[str, Any]:
        if path.startswith("/api/"):
            path = path[4:]
        if path == "/healthz" and method == "GET":
            return self.health(request_id=request_id)
        if path == "/v1/detect" and method == "POST":
            return self.detect(_json(body), request_id=request_id)
        if path == "/v1/anomalies" and method == "GET":
            return self.list_anomalies(query, request_id=request_id)
        if path == "/v1/streams" and method == "GET":
            return {"streams": self.streams(), "request_id": request_id}
        if path.startswith("/v1/streams/") and path.endswith("/events") and method == "GET":
            stream_id = path.removeprefix("/v1/streams/").removesuffix("/events")
            limit = _int_param(query, "limit", 100, 1, 2000)
            return {"stream_id": stream_id, "events": self.recent_events(stream_id, limit), "request_id": request_id}
        if path.startswith("/v1/streams/") and method == "GET":
            info = self.stream_info(path.removeprefix("/v1/streams/"))
            if info is None:
                raise ApiError(404, f"stream {path.removeprefix('/v1/streams/')} not found")
            return {**info, "request_id": request_id}
        if path.startswith("/v1/anomalies/"):
            rest = path.removeprefix("/v1/anomalies/")
            if rest.endswith("/feedback") and method == "POST":
                return self.feedback(rest.removesuffix("/feedback"), _json(body), request_id=request_id)
            if "/" not in rest and method == "GET":
                return self.get_anomaly(rest, request_id=request_id)
        raise ApiError(404, f"no route for {method} {path}")


def _validated(body: Any, max_events: int) -> tuple[list[Any], Any]:
    if not isinstance(body, Mapping):
        raise ApiError(400, "invalid json: request body must be a JSON object")
    events = body.get("events")
    if not isinstance(events, list) or not events:
        raise ApiError(400, "events required: a non-empty array")
    if len(events) > max_events:
        raise ApiError(400, f"too many events: max {max_events} per request")
    for index, event in enumerate(events):
        if event is None or event == "" or event == {}:
            raise ApiError(400, f"event {index} is empty")
    override = body.get("config_override")
    if override is not None and not isinstance(override, Mapping):
        raise ApiError(400, "invalid config_override: must be an object")
    return events, override


def _json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError as exc:
        raise ApiError(400, f"invalid json: {exc}") from None


def _int_param(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer") from None
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be between {low} and {high}")
    return value


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def _anomaly(found: WindowResult, events: list[Any], stream_id: str | None, batch_id: str | None) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "index": found.index,
        "metrics": found.detection.metrics(),
        "event": events[found.index],
        "why": found.why,
        "detected": True,
    }


def _record(anomaly: dict[str, Any], stream_id: str, batch_id: str) -> dict[str, Any]:
    return {
        **anomaly,
        "stream_id": stream_id,
        "batch_id": batch_id,
        "status": "open",
        "detected_at": _iso(time.time()),
    }


def _summary(record: Mapping[str, Any]) -> dict[str, Any]:
    m = record["metrics"]
    return {
        "id": record["id"],
        "stream_id": record["stream_id"],
        "ncd": m["ncd"],
        "compression_ratio": m["window_compression_ratio"],
        "entropy_change": m["entropy_change"],
        "p_value": m["p_value"],
        "confidence": m["confidence_level"],
        "status": record.get("status", "open"),
        "explanation": record["why"],
        "detected_at": record["detected_at"],
    }


def _detect_response(
    state: StreamState,
    settings: DetectionSettings,
    anomalies: list[dict[str, Any]],
    total: int,
    batch_id: str,
    elapsed: float,
    request_id: str,
) -> dict[str, Any]:
    calibrating = state.events_ingested < MIN_BASELINE_SIZE
    need = settings.min_events
    ready = len(state.events) >= need
    response: dict[str, Any] = {
        "success": True,
        "stream_id": state.stream_id,
        "total_events": total,
        "anomaly_count": len(anomalies),
        "processing_time": go_duration(elapsed),
        "compression_algo": settings.compressor,
        "anomalies": anomalies,
        "request_id": request_id,
        "status": "calibrating" if calibrating else "ready",
        "detection_ready": ready,
    }
    if settings.compressor in ("lz4", "openzl"):
        response["compression_algo"] = "zstd"
        response["fallback_from_algo"] = settings.compressor
    if not calibrating:
        response["batch_id"] = batch_id
    if not ready:
        response["detection_events_needed"] = need - len(state.events)
        response["calibration"] = {
            "events_ingested": state.events_ingested,
            "events_needed": max(0, MIN_BASELINE_SIZE - state.events_ingested),
            "min_baseline_size": MIN_BASELINE_SIZE,
            "progress_percent": min(100, 100 * state.events_ingested // MIN_BASELINE_SIZE),
            "detection_ready": ready,
            "detection_events_needed": need - len(state.events),
            "detection_min_events": need,
            "message": f"Collecting a baseline: detection starts after {need} events.",
        }
    return response


# -- the embedded transport -----------------------------------------------------------------------

_shared: DetectionService | None = None
_shared_lock = threading.Lock()


def shared_service() -> DetectionService:
    """The process-wide in-memory service behind every embedded client."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = DetectionService()
        return _shared


class _EmbeddedTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    def __init__(self, service: DetectionService) -> None:
        self.service = service

    def _answer(self, request: httpx.Request, body: bytes) -> httpx.Response:
        query = {k: v[-1] for k, v in parse_qs(request.url.query.decode()).items()}
        status, data = self.service.handle(request.method, request.url.path, query, body)
        return httpx.Response(status, json=data, request=request)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._answer(request, request.read())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        import asyncio

        body = await request.aread()
        return await asyncio.to_thread(self._answer, request, body)


def embedded_transport(*, asynchronous: bool, service: DetectionService | None = None) -> _EmbeddedTransport:
    """An httpx transport answered by the in-process engine (the same code ``driftlock serve`` runs)."""
    return _EmbeddedTransport(service or shared_service())
