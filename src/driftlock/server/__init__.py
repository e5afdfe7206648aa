"""``driftlock serve``: a local, Driftlock-compatible API (needs ``pip install 'driftlock[server]'``).

:mod:`.app` is the ASGI application (HTTP only: routes from the service's operation table, the OTLP
receiver, metrics, the console), :mod:`.serve` runs it (processes, socket, uvicorn), and the stores are
opened by :mod:`driftlock.service.stores`.
"""

from __future__ import annotations

from driftlock.server.serve import ServeSettings, build_app, build_service, describe_keys, is_loopback, run
from driftlock.service.stores import check_db

__all__ = ["ServeSettings", "build_app", "build_service", "check_db", "describe_keys", "is_loopback", "run"]
