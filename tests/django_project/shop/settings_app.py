from shop.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "driftlock.django"]  # noqa: F405
