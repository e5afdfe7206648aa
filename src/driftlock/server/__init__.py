"""``driftlock serve``: a local, Driftlock-compatible API (needs ``pip install 'driftlock[server]'``)."""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable, Sequence
from pathlib import Path

from driftlock.service.detection import DetectionService
from driftlock.service.embedded import open_store

__all__ = ["build_service", "is_loopback", "run"]

logger = logging.getLogger("driftlock.server")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_service(db: str | Path | None) -> DetectionService:
    return DetectionService(open_store(db if db is not None else ":memory:"))


def run(
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    db: str | Path | None = "driftlock.sqlite3",
    api_keys: Sequence[str] = (),
    span_kinds: Sequence[str] = ("server", "consumer"),
    log_level: str = "warning",
    on_ready: Callable[[str], None] | None = None,
    notify: Sequence[str] = (),
    webhook_secret: str | None = None,
) -> None:
    """Serve until interrupted. Refuses a non-loopback address without an API key."""
    if not is_loopback(host) and not api_keys:
        raise ValueError(
            f"Refusing to listen on {host} without an API key: anyone on the network could send and read "
            "events. Pass --api-key (or DRIFTLOCK_SERVE_API_KEYS), or bind to 127.0.0.1."
        )
    try:
        import uvicorn

        from driftlock.server.app import create_app
        from driftlock.server.notify import Notifier
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"driftlock serve needs the server extra: pip install 'driftlock[server]' ({exc})") from exc

    notifier = Notifier(notify, webhook_secret) if notify else None
    app = create_app(build_service(db), api_keys=api_keys, span_kinds=span_kinds, notifier=notifier)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    url = f"http://{'[' + host + ']' if family == socket.AF_INET6 else host}:{bound}"
    if notifier is not None:
        notifier.console_url = url  # links in notifications point at this server's console
    config = uvicorn.Config(app, log_level=log_level, access_log=False, timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    if on_ready is not None:
        original = server.startup

        async def startup(sockets: list[socket.socket] | None = None) -> None:
            await original(sockets=sockets)
            on_ready(url)

        server.startup = startup  # type: ignore[method-assign]
    server.run(sockets=[sock])
