"""``get_driftlock_client``: the app's one :class:`~driftlock.DriftlockClient`, as a FastAPI dependency.

Built at its first use with the settings of the app's :class:`DriftlockMiddleware` (else the ``DRIFTLOCK_*``
environment), kept in ``app.state.driftlock_client``, and closed when the app shuts down: by the middleware
at the end of the lifespan, else when the server's event loop ends (the client closes its pool then).
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import HTTPConnection

from driftlock.client import DriftlockClient
from driftlock.config import Config

__all__ = ["CONFIG_SCOPE_KEY", "STATE_ATTRIBUTE", "close_app_client", "get_driftlock_client"]

logger = logging.getLogger("driftlock.fastapi")

STATE_ATTRIBUTE = "driftlock_client"
CONFIG_SCOPE_KEY = "driftlock.config"
"""Where :class:`DriftlockMiddleware` leaves its settings in each request's scope."""


async def get_driftlock_client(request: HTTPConnection) -> DriftlockClient:
    """``client: DriftlockClient = Depends(get_driftlock_client)``: one client per app, shared by its requests."""
    state = request.app.state
    client: DriftlockClient | None = getattr(state, STATE_ATTRIBUTE, None)
    if client is None:  # no await since the look-up: requests on this loop cannot build two
        config = request.scope.get(CONFIG_SCOPE_KEY)
        client = DriftlockClient(config if isinstance(config, Config) else Config.resolve(use_django=False))
        setattr(state, STATE_ATTRIBUTE, client)
    return client


async def close_app_client(app: Any) -> None:
    """Close the client :func:`get_driftlock_client` made for ``app``, if any; never raises."""
    state = getattr(app, "state", None)
    client = getattr(state, STATE_ATTRIBUTE, None) if state is not None else None
    if not isinstance(client, DriftlockClient):
        return
    try:
        delattr(state, STATE_ATTRIBUTE)
        await client.aclose()
    except Exception:
        logger.warning("driftlock: closing the app's DriftlockClient failed", exc_info=True)
