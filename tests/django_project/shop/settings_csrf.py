from shop.settings import *  # noqa: F403

# The page's middleware list with Django's own answering middleware before DriftlockMiddleware.
MIDDLEWARE = ["django.middleware.common.CommonMiddleware", "django.middleware.csrf.CsrfViewMiddleware", *MIDDLEWARE]  # noqa: F405
