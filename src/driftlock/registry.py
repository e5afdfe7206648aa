"""What this process has installed, in one place: the package's only module-level mutable state.

The shape is sentry-python's ``_installed_integrations`` under ``_installer_lock``: each integration
(``driftlock.configure``, Celery, Django) keeps its state in a slot here, made once and guarded by one
lock, instead of a global of its own; so do the application's anomaly handlers and the process's shared
caches (the embedded API of each store, the decoded anchors, the live exporters, the clients' metrics).
A slot made ``per_process`` is made again in a child after ``fork()`` (a store connection opened before
the fork is not the child's).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["REGISTRY", "Registry"]

_T = TypeVar("_T")


class Registry:
    """Slots by name, each made on first use. Thread-safe; reading a made slot takes no lock."""

    def __init__(self) -> None:
        self.lock = threading.RLock()  # held while a slot is made; integrations hold it while they install
        self._slots: dict[str, tuple[int | None, Any]] = {}

    def slot(self, name: str, make: Callable[[], _T], *, per_process: bool = False) -> _T:
        """The value in slot ``name``, made by ``make`` the first time (and, ``per_process``, in each process)."""
        found = self._slots.get(name)
        pid = os.getpid() if per_process else None
        if found is None or found[0] != pid:
            with self.lock:
                found = self._slots.get(name)
                if found is None or found[0] != pid:
                    found = self._slots[name] = (pid, make())
        value: _T = found[1]
        return value

    def installed(self) -> list[str]:
        """The names of the slots made so far (what this process has set up)."""
        return sorted(self._slots)


REGISTRY = Registry()
