"""Settings of the demo shop. ``driftlock demo`` points DRIFTLOCK_BASE_URL at its local server."""

from __future__ import annotations

import os

from driftlock.demo.scenarios import EXCLUDED

SECRET_KEY = "driftlock-demo-not-secret"  # a local demo
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
ROOT_URLCONF = "driftlock.demo.shop.urls"
WSGI_APPLICATION = "driftlock.demo.shop.wsgi.application"
INSTALLED_APPS: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
LOGGING_CONFIG = None

MIDDLEWARE = [
    "driftlock.django.DriftlockMiddleware",
    "driftlock.demo.shop.faults.FaultMiddleware",  # inside the request span: its errors and delays are seen
    "django.contrib.sessions.middleware.SessionMiddleware",
]
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"  # a visitor's cart and login, with no database

DRIFTLOCK = {
    "STREAM_ID": "demo-shop",
    "EXCLUDE_PATHS": list(EXCLUDED),
    "ASYNC_MODE": True,
    "CONFIG_OVERRIDE": {"profile": os.environ.get("DRIFTLOCK_DEMO_PROFILE", "balanced")},
    "ON_ANOMALY": "driftlock.demo.shop.alarms.record",  # what each worker is told, for the demo's score
}
