from __future__ import annotations

from django.apps import AppConfig


class DriftlockConfig(AppConfig):
    """Instruments at start-up, before any handler is built, and registers the system checks."""

    name = "driftlock.django"
    label = "driftlock"
    verbose_name = "Driftlock"

    def ready(self) -> None:
        from django.core import checks

        from driftlock.django import checks as driftlock_checks
        from driftlock.django import conf

        checks.register(driftlock_checks.check_settings, "driftlock")
        checks.register(driftlock_checks.check_middleware, "driftlock")
        checks.register(driftlock_checks.check_asgi_support, "driftlock")
        if conf.instrumentation_disabled():
            return
        try:
            config = conf.get_config()
        except Exception:  # reported by the system check driftlock.E001
            return
        if config.enabled:
            conf.instrument(config, keep_middleware=True)
