"""The Django side of configuration: the ``DRIFTLOCK`` dict, hooks, and instrumentation set-up."""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from opentelemetry.trace import Span

from driftlock.anomalies import SpanDetails, add_anomaly_handler
from driftlock.config import Config
from driftlock.events import CONTEXT_ATTRIBUTE, USER_ATTRIBUTE, USER_ID_ATTRIBUTE, user_class
from driftlock.exceptions import DriftlockConfigurationError
from driftlock.models import Anomaly
from driftlock.registry import REGISTRY

__all__ = ["OTEL_MIDDLEWARE", "get_config", "instrument", "instrumentation_disabled"]

logger = logging.getLogger("driftlock.django")

OTEL_MIDDLEWARE = "opentelemetry.instrumentation.django.middleware.otel_middleware._DjangoMiddleware"
DRIFTLOCK_MIDDLEWARE = "driftlock.django.DriftlockMiddleware"
USER_ATTR = "_driftlock_user"


def get_config() -> Config:
    """Defaults < DRIFTLOCK_* environment < ``settings.DRIFTLOCK``; read now, never at import."""
    try:
        return Config.resolve(getattr(settings, "DRIFTLOCK", None) or {})
    except DriftlockConfigurationError as exc:
        raise ImproperlyConfigured(f"settings.DRIFTLOCK: {exc}") from None


def instrumentation_disabled() -> bool:
    """The standard OpenTelemetry switches that turn Django tracing off."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return True
    if os.environ.get("OTEL_PYTHON_DJANGO_INSTRUMENT", "").strip() == "False":
        return True
    disabled = [d.strip() for d in os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "").split(",")]
    return "django" in disabled or "*" in disabled


def excluded_urls(paths: tuple[str, ...]) -> str | None:
    """EXCLUDE_PATHS as the instrumentation wants them: one comma-joined string of anchored regexes
    matched against the absolute URL without query (``/health/`` must not exclude ``/api/health/``)."""
    patterns = [r"^https?://[^/]+" + re.escape(p.rstrip("/")) + r"(?:/.*)?$" for p in paths if "," not in p]
    return ",".join(patterns) or None


def request_hook(span: Span, request: HttpRequest) -> None:
    if span.is_recording():
        span.set_attribute("url.path", request.path)


def response_hook(span: Span, request: HttpRequest, response: HttpResponse) -> None:
    """User class and ``request.driftlock_context``; runs after the view, so both are known."""
    if not span.is_recording():
        return
    match = getattr(request, "resolver_match", None)
    route = getattr(match, "route", None)
    if route:  # resolved even when middleware before ours answered before the view (a CSRF 403)
        span.set_attribute("http.route", route)
    context = getattr(request, "driftlock_context", None)
    if context:
        span.set_attribute(CONTEXT_ATTRIBUTE, json.dumps(context, default=str, sort_keys=True))
    user = getattr(request, USER_ATTR, None)  # resolved with auser() on the async path
    if user is None:
        user = getattr(request, "user", None)  # sync path: the lazy user, usually loaded by the view already
    if user is None:
        return
    kind = user_class(user)
    span.set_attribute(USER_ATTRIBUTE, kind)
    if kind != "anonymous" and _state().capture_user_id:
        span.set_attribute(USER_ID_ATTRIBUTE, str(user.pk))


@dataclass
class _Django:
    """This process's Django integration (the registry's slot ``django``)."""

    capture_user_id: bool = False
    warned_hidden: bool = False


def _state() -> _Django:
    return REGISTRY.slot("django", _Django)


def warn_hidden_answers() -> None:
    """Say once, at start-up, when the middleware's position hides answers made outside it."""
    from driftlock.django.checks import hidden_answers

    problem = hidden_answers(list(settings.MIDDLEWARE), list(settings.INSTALLED_APPS))
    state = _state()
    if problem and not state.warned_hidden:
        state.warned_hidden = True
        logger.warning("driftlock.W003: %s", problem)


def send_signal(anomaly: Anomaly, span: SpanDetails) -> None:
    from driftlock.django.signals import anomaly_detected
    from driftlock.exporter import DriftlockSpanExporter

    anomaly_detected.send(sender=DriftlockSpanExporter, anomaly=anomaly, span=span)


def instrument(config: Config, *, keep_middleware: bool = False) -> None:
    """Set up the exporter and the Django instrumentation once.

    ``keep_middleware=False`` (the middleware's case): the instrumentor edits a *copy* of MIDDLEWARE,
    because Django is iterating the real list while it builds middleware. ``True`` (the app's
    ``ready()``, before any handler exists): the instrumentation's middleware goes first in MIDDLEWARE.
    """
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.django.middleware.otel_middleware import _DjangoMiddleware

    import driftlock

    _state().capture_user_id = config.capture_user_id
    driftlock.configure(config)
    add_anomaly_handler(send_signal)
    instrumentor = DjangoInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        # Instrumented already (opentelemetry-instrument, or the app): add our hooks if none are set.
        if _DjangoMiddleware._otel_request_hook is None and _DjangoMiddleware._otel_response_hook is None:
            _DjangoMiddleware._otel_request_hook = request_hook
            _DjangoMiddleware._otel_response_hook = response_hook
        return
    original: Any = settings.MIDDLEWARE
    if not keep_middleware:
        settings.MIDDLEWARE = list(original)
    try:
        instrumentor.instrument(
            excluded_urls=excluded_urls(config.exclude_paths),
            request_hook=request_hook,
            response_hook=response_hook,
        )
    finally:
        if not keep_middleware:
            settings.MIDDLEWARE = original
