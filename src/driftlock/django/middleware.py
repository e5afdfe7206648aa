"""``DriftlockMiddleware``: the OpenTelemetry Django instrumentation's middleware, installed by one line.

It *is* the instrumentation's middleware (a subclass), so exactly one SERVER span is made per
request, with the instrumentation's attributes, semantic conventions, exclusions and propagation.
It steps aside (``MiddlewareNotUsed``) when that middleware is already in MIDDLEWARE
(``opentelemetry-instrument`` or the ``driftlock.django`` app), when tracing is switched off by the
standard environment variables, or when ``DRIFTLOCK['ENABLED']`` is False. It is sync and async
capable: under ASGI it runs on the event loop, with no thread hop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import MiddlewareNotUsed
from django.http import HttpRequest, HttpResponse
from opentelemetry.instrumentation.django.middleware.otel_middleware import _DjangoMiddleware

from driftlock.django import conf

__all__ = ["DriftlockMiddleware"]

GetResponse = Callable[[HttpRequest], Any]


class DriftlockMiddleware(_DjangoMiddleware):
    sync_capable = True
    async_capable = True
    _is_async: bool = False

    def __init__(self, get_response: GetResponse) -> None:
        if conf.instrumentation_disabled():
            raise MiddlewareNotUsed("OpenTelemetry Django instrumentation is disabled by the environment")
        config = conf.get_config()
        if not config.enabled:
            raise MiddlewareNotUsed("DRIFTLOCK['ENABLED'] is False")
        conf.instrument(config)
        conf.warn_hidden_answers()
        if conf.OTEL_MIDDLEWARE in settings.MIDDLEWARE:
            raise MiddlewareNotUsed("the OpenTelemetry Django middleware is already installed")
        if _DjangoMiddleware._tracer is None:
            raise MiddlewareNotUsed("the OpenTelemetry Django instrumentation did not initialize")
        super().__init__(get_response)
        self._is_async = iscoroutinefunction(get_response)
        if self._is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self._is_async:
            return self.__acall__(request)
        return super().__call__(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        self.process_request(request)
        get_response: Callable[[HttpRequest], Awaitable[HttpResponse]] = self.get_response
        response = await get_response(request)
        auser = getattr(request, "auser", None)
        if auser is not None:
            # The response hook must not touch the lazy request.user on the event loop.
            try:
                setattr(request, conf.USER_ATTR, await auser())
            except Exception:  # user lookup failing must not fail the request
                conf.logger.debug("Could not resolve request.auser()", exc_info=True)
        result: HttpResponse = self.process_response(request, response)
        return result
