"""System checks, run by ``manage.py check`` when ``driftlock.django`` is in INSTALLED_APPS."""

from __future__ import annotations

import importlib.util
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning

from driftlock.config import Config
from driftlock.exceptions import DriftlockConfigurationError

MIDDLEWARE_PATH = "driftlock.django.DriftlockMiddleware"


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    value = getattr(settings, "DRIFTLOCK", None)
    if value is None:
        return []
    try:
        config = Config.resolve(value)
    except DriftlockConfigurationError as exc:
        return [
            Error(exc.message, hint="Fix the DRIFTLOCK setting in settings.py.", obj="DRIFTLOCK", id="driftlock.E001")
        ]
    messages: list[CheckMessage] = []
    if not config.async_mode and not settings.DEBUG:
        messages.append(
            Warning(
                "DRIFTLOCK['ASYNC_MODE'] is False: every request waits for the Driftlock API before responding.",
                hint="Set 'ASYNC_MODE': True (the default) in production.",
                obj="DRIFTLOCK",
                id="driftlock.W001",
            )
        )
    return messages


ANSWERING_MIDDLEWARE = {
    "django.middleware.security.SecurityMiddleware": "HTTPS redirects",
    "django.middleware.common.CommonMiddleware": "APPEND_SLASH redirects (recorded as the 404 inside)",
    "django.middleware.csrf.CsrfViewMiddleware": "CSRF rejections (403)",
    "django.middleware.locale.LocaleMiddleware": "language redirects",
}
"""Middleware that can answer a request itself, or change the answer on its way out."""


def check_middleware(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    if middleware.count(MIDDLEWARE_PATH) > 1:
        return [
            Error(
                f"{MIDDLEWARE_PATH} is listed {middleware.count(MIDDLEWARE_PATH)} times in MIDDLEWARE.",
                hint="List it once; a second copy would trace each request twice.",
                obj="MIDDLEWARE",
                id="driftlock.E002",
            )
        ]
    return []


def hidden_answers(middleware: list[str], installed_apps: list[str]) -> str | None:
    """Why, with this MIDDLEWARE, some answers the client gets would not be what Driftlock records
    (and what to do), or None. The request span starts at DriftlockMiddleware unless the app is
    installed, so middleware listed before it answers unseen."""
    if MIDDLEWARE_PATH not in middleware or "driftlock.django" in installed_apps:
        return None
    outside = [m for m in middleware[: middleware.index(MIDDLEWARE_PATH)] if m in ANSWERING_MIDDLEWARE]
    if not outside:
        return None
    hidden = "; ".join(f"{m.rsplit('.', 1)[-1]}: {ANSWERING_MIDDLEWARE[m]}" for m in outside)
    return (
        f"{MIDDLEWARE_PATH} comes after middleware whose own answers it cannot see ({hidden}): Driftlock records "
        "the response of what is inside it, not what the client got. Fix: add 'driftlock.django' to "
        "INSTALLED_APPS; the request span then wraps every middleware, and DriftlockMiddleware can stay where "
        "it is (after AuthenticationMiddleware, for user information)."
    )


def check_asgi_support(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if importlib.util.find_spec("opentelemetry.instrumentation.asgi") is None:
        return [
            Warning(
                "opentelemetry-instrumentation-asgi is not installed: requests served over ASGI are not "
                "traced and Driftlock sees none of them.",
                hint='pip install "opentelemetry-instrumentation-django[asgi]"',
                id="driftlock.W002",
            )
        ]
    return []
