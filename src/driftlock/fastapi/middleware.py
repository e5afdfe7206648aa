"""``DriftlockMiddleware``: OpenTelemetry's ASGI middleware for FastAPI and any Starlette app, in one line.

Its keywords are the settings of the Django ``DRIFTLOCK`` dict in lower case (``api_key``, ``base_url``,
``stream_id``, ``exclude_paths``, ``async_mode``, ...), validated by :class:`driftlock.Config`, with the
``DRIFTLOCK_*`` environment as fallback. Built (by Starlette, in each worker) it installs the Driftlock
exporter once per process with :func:`driftlock.configure`, as the Django middleware does.

Each HTTP request then becomes exactly one SERVER span, made by ``opentelemetry-instrumentation-asgi``
without its per-message receive/send spans: named and tagged with the route template the router will
match (``GET /items/{item_id}``), its status, and, set just before the response's last body message, the
user (``scope["user"]``, from Starlette's ``AuthenticationMiddleware``) and ``request.state.driftlock_context``.
An exception that escapes the app is recorded as a 500, the answer Starlette's error middleware (outside
this one) gives. When an outer instrumentation (``opentelemetry-instrument``) already made the server span,
this middleware only adds its attributes to that span. At the end of the app's lifespan it sends the spans
still queued and closes the client :func:`~driftlock.fastapi.get_driftlock_client` made.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware, set_status_code
from opentelemetry.util.http import get_excluded_urls
from starlette.routing import Host, Mount

from driftlock.config import Config
from driftlock.events import (
    CONTEXT_ATTRIBUTE,
    STREAM_ATTRIBUTE,
    USER_ATTRIBUTE,
    USER_ID_ATTRIBUTE,
    path_excluded,
    user_class,
)
from driftlock.exceptions import DriftlockConfigurationError
from driftlock.fastapi.dependencies import CONFIG_SCOPE_KEY, close_app_client
from driftlock.fastapi.routes import route_template
from driftlock.setup import configure

__all__ = ["CONTEXT_STATE_KEY", "DriftlockMiddleware"]

logger = logging.getLogger("driftlock.fastapi")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CONTEXT_STATE_KEY = "driftlock_context"
"""``request.state.driftlock_context``: a dict judged with the request, like Django's ``request.driftlock_context``."""
FASTAPI_TELEMETRY_KEY = "fastapi.telemetry"
"""FastAPI's native telemetry (0.16x) traces no request whose scope holds this key."""
_METHODS = frozenset(("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE", "QUERY"))
_INSTRUMENTATION_NAMES = ("fastapi", "starlette", "asgi", "*")


def instrumentation_disabled() -> bool:
    """The standard OpenTelemetry switch that turns FastAPI/Starlette/ASGI tracing off."""
    disabled = [d.strip() for d in os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "").split(",")]
    return any(name in disabled for name in _INSTRUMENTATION_NAMES)


class DriftlockMiddleware:
    """``app.add_middleware(DriftlockMiddleware, api_key=..., stream_id=..., exclude_paths=[...])``.

    A misspelt or mistyped setting fails the app's start-up with a message naming it. With
    ``enabled=False``, ``OTEL_SDK_DISABLED=true`` or the instrumentation disabled by
    ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``, it passes requests through untouched.
    """

    def __init__(self, app: ASGIApp, **settings: Any) -> None:
        self._error: DriftlockConfigurationError | None = None
        try:
            self.config = Config.resolve(None, use_django=False, **settings)
        except DriftlockConfigurationError as exc:  # said when the server starts the app: see _refuse
            self.config, self._error = Config(enabled=False), exc
        self._inner = app
        self._traced: OpenTelemetryMiddleware | None = None
        if self.config.enabled and not instrumentation_disabled() and configure(self.config) is not None:
            self._traced = OpenTelemetryMiddleware(
                self._annotated,
                excluded_urls=get_excluded_urls("FASTAPI"),
                default_span_details=self._span_details,
                exclude_spans=["receive", "send"],
            )
        self.app: ASGIApp = self._traced or app
        """Next in the chain. The OpenTelemetry middleware when tracing: FastAPI's own telemetry, finding it
        there, steps aside, so the span is this one on every FastAPI version and on plain Starlette."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._error is not None:
            await self._refuse(scope, receive, send, self._error)
            return
        kind = scope["type"]
        if kind == "lifespan":
            await self._inner(scope, receive, self._shutdown_aware(scope, send))
            return
        if kind != "http":
            await self._inner(scope, receive, send)
            return
        scope[CONFIG_SCOPE_KEY] = self.config
        if self._traced is None or path_excluded(scope.get("path"), self.config.exclude_paths):
            await self._inner(scope, receive, send)
            return
        added = FASTAPI_TELEMETRY_KEY not in scope
        if added:
            scope[FASTAPI_TELEMETRY_KEY] = None  # FastAPI's own idiom: mounted FastAPI apps add no second span
        try:
            outer = trace.get_current_span()
            if outer.is_recording() and getattr(outer, "kind", None) is trace.SpanKind.SERVER:
                outer.set_attributes(self._span_details(scope)[1])
                await self._annotate_span(outer, scope, receive, send, owned=False)
            else:
                await self._traced(scope, receive, send)
        finally:
            if added:
                scope.pop(FASTAPI_TELEMETRY_KEY, None)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, error: DriftlockConfigurationError) -> None:
        """A bad setting fails the app's start-up with the error's message (the ASGI way: uvicorn and gunicorn
        print it and exit; raised from the constructor, uvicorn would take it for a lifespan-less app)."""
        if scope["type"] != "lifespan":
            raise error
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.failed", "message": f"DriftlockMiddleware: {error}"})

    def _shutdown_aware(self, scope: Scope, send: Send) -> Send:
        """The lifespan's ``send``: once the app has shut down, send the spans still queued and close the
        client the dependency made. Servers may end a worker by its signal right after the lifespan (uvicorn
        re-raises SIGTERM), so exit handlers cannot be relied on to do it."""

        async def lifespan_send(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await close_app_client(scope.get("app"))
                if self._traced is not None:
                    await asyncio.to_thread(_flush, self.config.timeout)
            await send(message)

        return lifespan_send

    def _span_details(self, scope: Scope) -> tuple[str, dict[str, str]]:
        """Span name and start attributes: the method (the route is known once the router has run)."""
        attributes: dict[str, str] = {}
        if self.config.stream_id:
            attributes[STREAM_ATTRIBUTE] = self.config.stream_id  # this app's stream, whatever another app set
        return _method(scope), attributes

    async def _annotated(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app as the OpenTelemetry middleware calls it: inside the server span it just started."""
        await self._annotate_span(trace.get_current_span(), scope, receive, send, owned=True)

    async def _annotate_span(
        self, span: trace.Span, scope: Scope, receive: Receive, send: Send, *, owned: bool
    ) -> None:
        if not span.is_recording():
            await self._inner(scope, receive, send)
            return
        started = annotated = False
        root_path, app = scope.get("root_path", ""), scope.get("app") or self._inner  # before mounts change them

        def annotate() -> None:
            nonlocal annotated
            annotated = True
            _set_route(span, scope, root_path, app, rename=owned)
            _set_request_attributes(span, scope, self.config.capture_user_id)

        async def annotating_send(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                nonlocal started
                started = True
            elif kind == "http.response.body" and not message.get("more_body", False) and not annotated:
                annotate()  # the span ends with this message: the app has set what it will set
            await send(message)

        try:
            await self._inner(scope, receive, annotating_send)
        except Exception:
            if not annotated:
                annotate()
                if owned and not started:
                    _set_server_error(span, self._traced)
            raise
        if not annotated:
            annotate()


def _set_route(span: trace.Span, scope: Scope, root_path: str, app: Any, *, rename: bool) -> None:
    """``http.route`` and the span name ``GET /items/{item_id}``; nothing on a 404.

    The route the router chose (``scope["route"]``, set by FastAPI and Starlette 1.x) when no mount was
    crossed; else the routes are matched again as the router matched them, mount prefixes included."""
    try:
        route = scope.get("route")
        template = getattr(route, "path", None)
        if not isinstance(template, str) or isinstance(route, Mount | Host) or scope.get("root_path", "") != root_path:
            probe = {key: scope[key] for key in ("type", "path", "method", "headers") if key in scope}
            probe["root_path"] = root_path
            template = route_template(probe, app)
        if template is None:
            return
        span.set_attribute("http.route", template)
        if rename:
            span.update_name(f"{_method(scope)} {template}")
    except Exception:  # a custom route's matches() failing must not fail the request
        logger.debug("driftlock: finding the route failed", exc_info=True)


def _method(scope: Scope) -> str:
    """The span name's method, as ``sanitize_method`` names it (which reads the environment on each call)."""
    method = str(scope.get("method", "")).upper()
    return method if method in _METHODS else "HTTP"


def _set_request_attributes(span: trace.Span, scope: Scope, capture_user_id: bool) -> None:
    """User and ``request.state.driftlock_context``; a failure costs the attributes, never the request."""
    try:
        state = scope.get("state")
        context = state.get(CONTEXT_STATE_KEY) if isinstance(state, MutableMapping) else None
        if context:
            span.set_attribute(CONTEXT_ATTRIBUTE, json.dumps(context, default=str, sort_keys=True))
        user = scope.get("user")
        if user is None:
            return
        kind = user_class(user)
        span.set_attribute(USER_ATTRIBUTE, kind)
        if kind != "anonymous" and capture_user_id:
            span.set_attribute(USER_ID_ATTRIBUTE, str(user.identity))
    except Exception:
        logger.debug("driftlock: reading the request's user or context failed", exc_info=True)


def _flush(timeout: float) -> None:
    """Export what the tracer provider's processors hold, within TIMEOUT; never raises."""
    provider = trace.get_tracer_provider()
    force_flush = getattr(provider, "force_flush", None)
    if force_flush is None:
        return
    try:
        force_flush(int(timeout * 1000))
    except Exception:
        logger.warning("driftlock: sending the last spans at shutdown failed", exc_info=True)


def _set_server_error(span: trace.Span, traced: OpenTelemetryMiddleware | None) -> None:
    """The 500 Starlette's error middleware will send, in the attributes of this middleware's semconv mode."""
    mode = getattr(traced, "_sem_conv_opt_in_mode", None)
    if mode is None:
        set_status_code(span, 500)  # type: ignore[no-untyped-call]
    else:
        set_status_code(span, 500, None, mode)  # type: ignore[no-untyped-call]
