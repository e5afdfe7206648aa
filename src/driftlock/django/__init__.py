"""Django integration: ``MIDDLEWARE += ["driftlock.django.DriftlockMiddleware"]`` and a ``DRIFTLOCK`` dict.

Optionally add ``"driftlock.django"`` to INSTALLED_APPS: it instruments at start-up (so every
middleware is inside the request span), registers the system checks and the ``driftlock``
management command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from driftlock.django.middleware import DriftlockMiddleware

__all__ = ["DriftlockMiddleware"]


def __getattr__(name: str) -> Any:
    # Imported lazily so that listing "driftlock.django" in INSTALLED_APPS imports nothing heavy.
    if name == "DriftlockMiddleware":
        from driftlock.django.middleware import DriftlockMiddleware

        return DriftlockMiddleware
    raise AttributeError(f"module 'driftlock.django' has no attribute {name!r}")
