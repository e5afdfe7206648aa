"""FastAPI and Starlette: one middleware line traces every request to Driftlock, and a client dependency.

``app.add_middleware(DriftlockMiddleware, api_key=..., stream_id=..., exclude_paths=[...])`` takes the
settings of the Django ``DRIFTLOCK`` dict as keywords (the ``DRIFTLOCK_*`` environment fills the rest);
``Depends(get_driftlock_client)`` gives path operations the app's one :class:`~driftlock.DriftlockClient`.
Needs only Starlette (FastAPI brings it) and OpenTelemetry's ASGI instrumentation (``driftlock`` brings it).
"""

from driftlock.fastapi.dependencies import get_driftlock_client
from driftlock.fastapi.middleware import DriftlockMiddleware

__all__ = ["DriftlockMiddleware", "get_driftlock_client"]
