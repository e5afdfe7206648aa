"""The embedded transport: an httpx transport answered in process by the service.

The clients use it when no API key and no base URL are configured. By default every process on the
machine shares one SQLite store (``EMBEDDED_DB``, default :func:`default_path`), so ``gunicorn -w 8``
detects what ``-w 1`` detects and is told of each incident once; ``:memory:`` keeps a stream in this
process only.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from urllib.parse import parse_qsl

import httpx

from driftlock.registry import REGISTRY
from driftlock.service.api import Api, Call, DetectionService
from driftlock.service.errors import ApiError
from driftlock.service.stores import open_store
from driftlock.service.validation import parse_json

__all__ = ["EmbeddedTransport", "default_path", "embedded_api", "open_store"]


def default_path() -> Path:
    """``driftlock/embedded.sqlite3`` in the user's cache directory (``$XDG_CACHE_HOME`` or ``~/.cache``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "driftlock" / "embedded.sqlite3"


def embedded_api(path: str | Path | None = None) -> Api:
    """The process's API over the store at ``path`` (one per path, made on first use)."""
    key = str(path or default_path())
    # per process: a store opened before fork() is not the child's
    return REGISTRY.slot(f"embedded:{key}", lambda: Api(DetectionService(open_store(key))), per_process=True)


class EmbeddedTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Thread-safe. Async requests run the service on a worker thread."""

    def __init__(self, db: str | Path | None = None, *, api: Api | None = None) -> None:
        self._db = db
        self._api = api

    @property
    def api(self) -> Api:
        return self._api or embedded_api(self._db)

    def _answer(self, request: httpx.Request, content: bytes) -> httpx.Response:
        request_id = str(time.time_ns())
        try:
            op, params = self.api.match(request.method, request.url.path)
            body = parse_json(content) if op.json_body and content else None
            query = dict(parse_qsl(request.url.query.decode(), keep_blank_values=True))
            answer = self.api.call(op, Call(params, query, body, request_id))
            status, data = answer.status, answer.body
        except ApiError as exc:
            status, data = exc.status, exc.body(request_id)
        except ValueError as exc:
            status, data = 400, ApiError(400, f"invalid json: {exc}").body(request_id)
        return httpx.Response(status, json=data, request=request)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._answer(request, request.read())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        content = await request.aread()
        return await asyncio.to_thread(self._answer, request, content)
