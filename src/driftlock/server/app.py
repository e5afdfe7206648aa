"""The ASGI application of ``driftlock serve``: the Driftlock API, an OTLP/HTTP trace receiver, metrics.

HTTP concerns live here (authentication, body limits and decompression, content types, the error
envelope); the routes are the API's operation table (:data:`driftlock.service.api.OPERATIONS`),
each answered by the service on a worker thread, so that streams never wait on each other. The OTLP
receiver decodes the request here and leaves the ingest rules to :mod:`driftlock.service.ingest`.
"""

from __future__ import annotations

import gzip
import logging
import os
import secrets
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from driftlock.server import otlp
from driftlock.server.access import Access, ApiKey, LoopbackGuard, parse_keys
from driftlock.server.console import console_routes
from driftlock.server.metrics import Metrics
from driftlock.server.notify import Notifier
from driftlock.service.api import OPERATIONS, Api, Call, DemoLimiter, DetectionService, Operation
from driftlock.service.console_sessions import SharedSecret
from driftlock.service.errors import ApiError, store_unavailable
from driftlock.service.ingest import ingest_spans
from driftlock.service.validation import parse_json

__all__ = ["create_app"]

logger = logging.getLogger("driftlock.server")

MAX_BODY_BYTES = 10 * 1024 * 1024


def _request_id(request: Request) -> str:
    given = request.headers.get("x-request-id", "")
    return given[:100] if given.isprintable() and given else str(time.time_ns())


def _error(
    request: Request, exc: ApiError, headers: dict[str, str] | None = None, request_id: str | None = None
) -> JSONResponse:
    headers = {**(headers or {}), "X-Driftlock-Pid": str(os.getpid())}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    body = exc.body(request_id or _request_id(request))
    return JSONResponse(body, status_code=exc.status, headers=headers)


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
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding not in ("", "identity", "gzip", "deflate"):
        raise ApiError(415, f"unsupported Content-Encoding {encoding[:40]!r}: send gzip, deflate or none")
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
    api_keys: Iterable[str | ApiKey] = (),
    span_kinds: Iterable[str] = ("server", "consumer"),
    demo_limiter: DemoLimiter | None = None,
    notifier: Notifier | None = None,
    console_secret: bytes | None = None,
) -> Starlette:
    """Build the app. With ``api_keys`` (``KEY``, ``KEY:ingest``, ``KEY:streams=a,b``; :mod:`.access`), every
    ``/v1`` route but the demo needs one of them, within its scope, and the console (at ``/``) a sign-in with an
    admin key; without, the API answers loopback names and local writes only. ``notifier`` is told of incidents
    opened and resolved (started and stopped with the app); ``console_secret`` signs console sessions
    (default: the store's, shared by every process and replica: :mod:`driftlock.service.console_sessions`)."""
    metrics = Metrics(lambda: service.totals)
    given = list(api_keys)
    access = Access(
        [*parse_keys([k for k in given if isinstance(k, str)]), *(k for k in given if isinstance(k, ApiKey))],
        count=lambda reason: metrics.auth_failures.labels(reason).inc(),
    )
    service.add_listener(metrics.on_incident)
    if notifier is None:  # the console's webhooks (server/notify)
        notifier = Notifier(store=service.store)
    service.add_listener(notifier)
    metrics.add_notifier(notifier.stats)
    kinds = tuple(span_kinds)
    api = Api(service, limiter=demo_limiter)
    pid = {"X-Driftlock-Pid": str(os.getpid())}  # which worker answered (driftlock serve --workers N)

    def owner(kind: str, ident: str) -> str | None:
        """The stream of an anomaly or incident (for keys bound to streams)."""
        row = service.store.get_anomaly(ident) if kind == "anomaly" else service.store.get_incident(ident)
        return str(row["stream_id"]) if row else None

    def client_of(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    async def in_scope(request: Request, route: str, body: Any = None) -> None:
        """ApiError 403 unless the request's key (set by ``guarded``) may call this route with this body."""
        key: ApiKey | None = request.scope.get("driftlock.key")
        if key is None or key.role == "admin":
            return
        await run_in_threadpool(
            access.check_scope,
            key,
            request.method,
            route,
            dict(request.path_params),
            dict(request.query_params),
            body,
            owner,
            client_of(request),
        )

    def guarded(
        handler: Callable[[Request], Awaitable[Response]], auth: bool
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                if auth and not access.open:
                    request.scope["driftlock.key"] = access.authenticate(request.headers, client_of(request))
                return await handler(request)
            except ApiError as exc:
                return _error(request, exc)

        return endpoint

    def endpoint_for(op: Operation) -> Callable[[Request], Awaitable[Response]]:
        async def answer(request: Request) -> Response:
            body = parse_json(await _read_body(request)) if op.json_body else None
            await in_scope(request, op.path, body)
            call = Call(
                params=dict(request.path_params),
                query=dict(request.query_params),
                body=body,
                request_id=_request_id(request),
                client=client_of(request),
            )
            started = time.perf_counter()
            result = await run_in_threadpool(api.call, op, call)
            if op.path == "/v1/detect":
                metrics.observe_detect(time.perf_counter() - started)
            return JSONResponse(result.body, status_code=result.status, headers=pid)

        return guarded(answer, op.auth)

    async def traces(request: Request) -> Response:
        await in_scope(request, "/v1/traces")
        content_type = request.headers.get("content-type", "application/x-protobuf").split(";")[0].strip()
        body = await _read_body(request)
        try:
            export = otlp.decode_request(body, content_type)
        except otlp.OtlpError as exc:
            raise ApiError(400, str(exc)) from None
        rejected, message = await run_in_threadpool(
            ingest_spans, service.core, otlp.records(export), kinds, timed=metrics.observe_detect
        )
        return Response(otlp.encode_response(rejected, message, content_type), media_type=content_type)

    async def exposition(request: Request) -> Response:  # aggregate only: stream ids are the clients' to choose
        await in_scope(request, "/metrics")
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    routes: list[BaseRoute] = [Route(op.path, endpoint_for(op), methods=[op.method]) for op in OPERATIONS]
    routes += [
        Route("/metrics", guarded(exposition, True), methods=["GET"]),
        Route("/v1/traces", guarded(traces, True), methods=["POST"]),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}; allowed: {headers.get('Allow', '')}"
        elif exc.status_code == 404:
            message = f"no route for {request.method} {request.url.path}"
        else:
            message = str(exc.detail)
        return _error(request, ApiError(exc.status_code, message), headers)

    async def server_error(request: Request, exc: Exception) -> Response:
        request_id = _request_id(request)
        unavailable = store_unavailable(exc)  # the OTLP receiver and the console: 503 with Retry-After too
        if unavailable is not None:
            logger.warning("the store cannot answer %s %s now: %s", request.method, request.url.path, exc)
            return _error(request, unavailable, request_id=request_id)
        logger.error(
            "unexpected error answering %s %s (request id %s)",
            request.method,
            request.url.path,
            request_id,
            exc_info=exc,
        )
        message = f"internal error ({type(exc).__name__}); the server's log has the details under this request id"
        return _error(request, ApiError(500, message), request_id=request_id)

    sessions = getattr(service.store, "console_sessions", None)  # signed-in sessions, revoked on sign-out
    secret: bytes | SharedSecret = console_secret or (
        SharedSecret(sessions) if sessions is not None else secrets.token_bytes(32)
    )
    routes += console_routes(
        service.core,
        # the console is an admin's: ingest and stream keys cannot sign in (with no admin key, nobody can)
        api_keys=access.admin_keys or ([] if access.open else [secrets.token_urlsafe(32)]),
        throttle=access.throttle,
        secret=secret,
        sessions=sessions,
        metrics=metrics,
        webhooks=notifier,
    )

    def refused(scope: Scope, exc: ApiError) -> Response:
        return _error(Request(scope), exc)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if notifier is not None:
            notifier.start()
        try:
            yield
        finally:
            if notifier is not None:
                await run_in_threadpool(notifier.stop, 5.0)

    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(_ApiPrefix)] + ([Middleware(LoopbackGuard, on_refused=refused)] if access.open else []),
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )


class _ApiPrefix:
    """``/api/v1/...`` is ``/v1/...``, as on the hosted API (API-AND-CBAD.md §1.1)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path.startswith("/api/v1/"):
            scope = {**scope, "path": path[4:], "raw_path": path[4:].encode()}
        await self.app(scope, receive, send)
