"""What the demo does to the shop during a fault episode: every request fails, or every request is slow.

The demo writes ``error`` or ``slow`` into the file named by DRIFTLOCK_DEMO_FAULTS; each worker
process reads it again when its modification time changes, so a fault starts and ends everywhere.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from driftlock.registry import REGISTRY

SLOW_SECONDS = 0.15


class _Seen:
    """The fault file's modification time and content when this process last read it."""

    def __init__(self) -> None:
        self.latest: tuple[float, str] = (0.0, "")


def current_fault() -> str:
    path = os.environ.get("DRIFTLOCK_DEMO_FAULTS")
    if not path:
        return ""
    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        return ""
    seen = REGISTRY.slot("demo.fault", _Seen)
    if mtime != seen.latest[0]:
        with open(path) as handle:
            seen.latest = (mtime, handle.read().strip())
    return seen.latest[1]


class FaultMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        fault = current_fault()
        if fault == "error":
            raise ConnectionError("database connection lost")
        if fault == "slow":
            time.sleep(SLOW_SECONDS)
        return self.get_response(request)
