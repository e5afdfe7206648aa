"""The ASGI application of ``driftlock serve``: the Driftlock API, an OTLP/HTTP trace receiver, metrics.

HTTP concerns live here (authentication, the demo rate limit, body limits and decompression,
content types); the API's semantics live in :class:`~driftlock.engine.service.DetectionService`,
which runs in worker threads so that streams never wait on each other's detections.
"""

from __future__ import annotations

import gzip
import hmac
import json
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from driftlock.engine.service import LATENCY_BUCKETS, ApiError, DetectionService
from driftlock.events import span_to_event, stream_for
from driftlock.server import otlp

__all__ = ["create_app"]

MAX_BODY_BYTES = 10 * 1024 * 1024
DEMO_LIMIT_PER_MINUTE = 10
OTLP_CHUNK = 1000


class DemoLimiter:
    """A sliding 60-second window of calls per client address."""

    def __init__(self, limit: int = DEMO_LIMIT_PER_MINUTE, window: float = 60.0, max_clients: int = 10_000) -> None:
        self.limit, self.window, self.max_clients = limit, window, max_clients
        self._calls: dict[str, deque[float]] = {}

    def take(self, client: str, now: float | None = None) -> tuple[bool, int, int]:
        """Returns (allowed, remaining calls, seconds until the next call is allowed)."""
        now = time.monotonic() if now is None else now
        calls = self._calls.get(client)
        if calls is None:
            if len(self._calls) >= self.max_clients:
                self._calls.pop(next(iter(self._calls)))
            calls = self._calls[client] = deque()
        while calls and calls[0] <= now - self.window:
            calls.popleft()
        if len(calls) >= self.limit:
            return False, 0, max(1, int(calls[0] + self.window - now + 0.999))
        calls.append(now)
        return True, self.limit - len(calls), 0


def _error(status: int, message: str, *, retry_after: int | None = None) -> JSONResponse:
    body = ApiError(status, message, retry_after=retry_after).body(str(time.time_ns()))
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse(body, status_code=status, headers=headers)


async def _read_body(request: Request) -> bytes:
    """The request body, decompressed, or ApiError 413 past 10 MB."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiError(413, f"request body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MB")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, f"request body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MB")
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "").lower()
    try:
        if encoding == "gzip":
            body = _bounded(zlib.decompressobj(wbits=31), body)
        elif encoding == "deflate":
            body = _bounded(zlib.decompressobj(), body)
    except (OSError, zlib.error, gzip.BadGzipFile) as exc:
        raise ApiError(400, f"invalid {encoding} body: {exc}") from None
    return body


def _bounded(decompressor: Any, body: bytes) -> bytes:
    out = decompressor.decompress(body, MAX_BODY_BYTES + 1)
    if len(out) > MAX_BODY_BYTES:
        raise ApiError(413, f"decompressed body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MB")
    return bytes(out)


def create_app(
    service: DetectionService,
    *,
    api_keys: Iterable[str] = (),
    span_kinds: Iterable[str] = ("server", "consumer"),
    demo_limiter: DemoLimiter | None = None,
) -> Starlette:
    """Build the app. With ``api_keys``, every ``/v1`` route but the demo needs one of them."""
    keys = [k.encode() for k in api_keys]
    kinds = tuple(span_kinds)
    limiter = demo_limiter or DemoLimiter()

    def authorized(request: Request) -> bool:
        if not keys:
            return True
        given = request.headers.get("x-api-key")
        if given is None:
            auth = request.headers.get("authorization", "")
            given = auth[7:] if auth.lower().startswith("bearer ") else None
        return given is not None and any(hmac.compare_digest(given.encode(), k) for k in keys)

    def guarded(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if not authorized(request):
                return _error(401, "authentication failed")
            try:
                return await handler(request)
            except ApiError as exc:
                return _error(exc.status, exc.message, retry_after=exc.retry_after)

        return endpoint

    async def api(request: Request) -> Response:
        body = await _read_body(request) if request.method == "POST" else b""
        status, data = await run_in_threadpool(
            service.handle, request.method, request.url.path, dict(request.query_params), body
        )
        return JSONResponse(data, status_code=status)

    async def demo(request: Request) -> Response:
        client = request.client.host if request.client else "unknown"
        allowed, remaining, wait = limiter.take(client)
        if not allowed:
            return _error(429, "demo rate limit exceeded: 10 requests per minute", retry_after=wait)
        body = await _read_body(request)
        try:
            payload = json.loads(body)
        except ValueError as exc:
            return _error(400, f"invalid json: {exc}")
        request_id = str(time.time_ns())
        try:
            data = await run_in_threadpool(
                lambda: service.demo_detect(
                    payload, request_id=request_id, remaining_calls=remaining, limit=limiter.limit
                )
            )
        except ApiError as exc:
            return _error(exc.status, exc.message)
        return JSONResponse(data)

    async def traces(request: Request) -> Response:
        content_type = request.headers.get("content-type", "application/x-protobuf").split(";")[0].strip()
        body = await _read_body(request)
        try:
            export = otlp.decode_request(body, content_type)
        except otlp.OtlpError as exc:
            return _error(400, str(exc))
        rejected, message = await run_in_threadpool(_ingest_otlp, export)
        return Response(otlp.encode_response(rejected, message, content_type), media_type=content_type)

    def _ingest_otlp(export: Any) -> tuple[int, str]:
        by_stream: dict[str, list[Any]] = {}
        rejected, problems = 0, []
        for record in otlp.records(export):
            try:
                event = span_to_event(record, span_kinds=kinds)
            except Exception as exc:  # a malformed span must not lose the rest of the batch
                rejected += 1
                problems.append(f"span {record.span_id or record.name}: {exc}")
                continue
            if event is not None:
                by_stream.setdefault(stream_for(record), []).append(event)
        for stream_id, events in by_stream.items():
            for start in range(0, len(events), OTLP_CHUNK):
                chunk = events[start : start + OTLP_CHUNK]
                try:
                    service.detect({"stream_id": stream_id, "events": chunk}, request_id=str(time.time_ns()))
                except ApiError as exc:
                    rejected += len(chunk)
                    problems.append(f"stream {stream_id}: {exc.message}")
        return rejected, "; ".join(problems[:5])

    async def healthz(request: Request) -> Response:
        return JSONResponse(service.health(request_id=str(time.time_ns())))

    async def readyz(request: Request) -> Response:
        try:
            await run_in_threadpool(service.store.list_stream_ids)
        except Exception as exc:
            return JSONResponse({"ready": False, "database": "disconnected", "error": str(exc)}, status_code=503)
        return JSONResponse(
            {"ready": True, "database": "connected", "checks": {"database": "ok", "cbad_library": "ok"}}
        )

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(_prometheus(service), media_type="text/plain; version=0.0.4")

    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/v1/demo/detect", demo, methods=["POST"]),
        Route("/api/v1/demo/detect", demo, methods=["POST"]),
        Route("/v1/traces", guarded(traces), methods=["POST"]),
        Route("/v1/detect", guarded(api), methods=["POST"]),
        Route("/api/v1/detect", guarded(api), methods=["POST"]),
        Route("/v1/anomalies", guarded(api), methods=["GET"]),
        Route("/v1/anomalies/{anomaly_id}", guarded(api), methods=["GET"]),
        Route("/v1/anomalies/{anomaly_id}/feedback", guarded(api), methods=["POST"]),
        Route("/v1/streams", guarded(api), methods=["GET"]),
        Route("/v1/streams/{stream_id:path}", guarded(api), methods=["GET"]),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        return _error(status, f"no route for {request.method} {request.url.path}")

    return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _prometheus(service: DetectionService) -> str:
    stats = dict(service.stats)
    lines = [
        "# HELP driftlock_events_processed_total Events received for detection.",
        "# TYPE driftlock_events_processed_total counter",
        f"driftlock_events_processed_total {sum(s.events for s in stats.values())}",
        "# HELP driftlock_anomalies_detected_total Anomalies found.",
        "# TYPE driftlock_anomalies_detected_total counter",
        f"driftlock_anomalies_detected_total {sum(s.anomalies for s in stats.values())}",
        "# HELP driftlock_stream_events_total Events received, per stream.",
        "# TYPE driftlock_stream_events_total counter",
    ]
    lines += [f'driftlock_stream_events_total{{stream_id="{_label(k)}"}} {s.events}' for k, s in stats.items()]
    lines += [
        "# HELP driftlock_stream_anomalies_total Anomalies found, per stream.",
        "# TYPE driftlock_stream_anomalies_total counter",
    ]
    lines += [f'driftlock_stream_anomalies_total{{stream_id="{_label(k)}"}} {s.anomalies}' for k, s in stats.items()]
    lines += [
        "# HELP driftlock_detection_seconds Time to answer one detect request, per stream.",
        "# TYPE driftlock_detection_seconds histogram",
    ]
    for key, s in stats.items():
        label = _label(key)
        for bound, count in zip(LATENCY_BUCKETS, s.latency_buckets, strict=True):
            lines.append(f'driftlock_detection_seconds_bucket{{stream_id="{label}",le="{bound}"}} {count}')
        lines.append(f'driftlock_detection_seconds_bucket{{stream_id="{label}",le="+Inf"}} {s.latency_count}')
        lines.append(f'driftlock_detection_seconds_sum{{stream_id="{label}"}} {s.latency_sum:.6f}')
        lines.append(f'driftlock_detection_seconds_count{{stream_id="{label}"}} {s.latency_count}')
    return "\n".join(lines) + "\n"
