"""The test shop: the integration page's settings, verbatim, inside an ordinary Django project.

BASE_URL is not in the page's DRIFTLOCK dict; tests point it at a local `driftlock serve` with
DRIFTLOCK_BASE_URL (the environment ranks below the dict, so the dict's keys still win).
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "test-only-not-secret"
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
ROOT_URLCONF = "shop.urls"
WSGI_APPLICATION = "shop.wsgi.application"
ASGI_APPLICATION = "shop.asgi.application"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SHOP_DB", str(BASE_DIR / "shop.sqlite3")),
    }
}
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "shop",
]

# settings.py

MIDDLEWARE = [
    # ... other middleware
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    'driftlock.django.DriftlockMiddleware',
]

DRIFTLOCK = {
    'API_KEY': 'your-api-key',
    'STREAM_ID': 'django-app',
    'EXCLUDE_PATHS': ['/admin/', '/health/'],
    'ASYNC_MODE': True,  # Use async processing to avoid blocking response
}
