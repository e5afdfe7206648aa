from shop.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "driftlock.django"]  # noqa: F405
MIDDLEWARE = [*MIDDLEWARE, "driftlock.django.DriftlockMiddleware"]  # noqa: F405
DRIFTLOCK = {"API_KEY": "k", "STREM_ID": "typo"}
