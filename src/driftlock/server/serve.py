"""Serving: ``driftlock serve``'s processes, socket and HTTP protocol around the app (:mod:`.app`)."""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftlock.service.api import DetectionService
from driftlock.service.budgets import Budgets
from driftlock.service.console_sessions import check_secret
from driftlock.service.stores import check_db, open_store

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["HTTP_PROTOCOL", "ServeSettings", "build_app", "build_service", "describe_keys", "is_loopback", "run"]

logger = logging.getLogger("driftlock.server")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_service(db: str | Path | None, budgets: Budgets | None = None) -> DetectionService:
    return DetectionService(open_store(db), budgets=budgets)


def describe_keys(api_keys: Sequence[str], environ: dict[str, str] | None = None) -> list[str]:
    """What serve says at start about the keys it accepts: a count, masked prefixes and scopes, never a key."""
    from driftlock.server.access import parse_keys

    env = os.environ if environ is None else environ
    if api_keys:
        shown = ", ".join(sorted({k.describe() for k in parse_keys(api_keys)}))
        return [f"API keys: {len(api_keys)} accepted ({shown}); every /v1 route but the demo needs one"]
    lines = ["API keys: none; every request is accepted (pass --api-key to require one)"]
    if env.get("DRIFTLOCK_API_KEY"):
        lines.append(
            "warning: DRIFTLOCK_API_KEY is set, but that is the clients' key: driftlock serve accepts only the keys "
            "given with --api-key or DRIFTLOCK_SERVE_API_KEYS, so it accepts every request"
        )
    return lines


@dataclass(frozen=True)
class ServeSettings:
    """What one worker process needs to build its app (pickled to each of ``--workers N``)."""

    db: str
    api_keys: tuple[str, ...] = ()
    span_kinds: tuple[str, ...] = ("server", "consumer")
    notify: tuple[str, ...] = ()
    webhook_secret: str | None = None
    url: str | None = None  # where this server answers: links in notifications point at its console
    console_secret: str | None = None  # --console-secret (else the store's: service/console_sessions.py)
    budgets: Budgets = field(
        default_factory=Budgets
    )  # bytes per event, stream and cache; retention (service/budgets.py)


def build_app(settings: ServeSettings) -> Starlette:
    """The app over its own service, store connection and notifier (each worker process builds one: a worker
    notifies of the incidents its own calls opened, and the service opens each once)."""
    from driftlock.server.app import create_app
    from driftlock.server.notify import Notifier
    from driftlock.service.retention import Retention

    service = build_service(settings.db, settings.budgets)
    # every process runs one; the store lets one sweep at a time (with --retention forever it sweeps only the
    # streams whose profile sets their own retention_seconds)
    Retention(service.store, settings.budgets.retention).start()
    # the --notify webhooks and the console's (in the store, shared by every process)
    notifier = Notifier(settings.notify, settings.webhook_secret, store=service.store, console_url=settings.url)
    secret = check_secret(settings.console_secret) if settings.console_secret is not None else None
    return create_app(
        service, api_keys=settings.api_keys, span_kinds=settings.span_kinds, notifier=notifier, console_secret=secret
    )


HTTP_PROTOCOL = "driftlock.server.protocol:EnvelopeHTTPProtocol"
"""uvicorn's HTTP protocol (h11 or httptools, as uvicorn picks), answering a request it cannot parse with the
API's error envelope instead of plain text (an import string: ``--workers`` passes it to each process; the
module imports uvicorn, so that importing ``driftlock.server`` does not)."""


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket. Created as IPPROTO_TCP: asyncio sets TCP_NODELAY only on such sockets, and without
    it a response written in two parts waits for the client's delayed ACK (~40 ms a request on Linux)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def run(
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    db: str | Path | None = "driftlock.sqlite3",
    api_keys: Sequence[str] = (),
    span_kinds: Sequence[str] = ("server", "consumer"),
    log_level: str = "warning",
    on_ready: Callable[[str], None] | None = None,
    workers: int = 1,
    forwarded_allow_ips: Sequence[str] = (),
    notify: Sequence[str] = (),
    webhook_secret: str | None = None,
    console_secret: str | None = None,
    rotate_console_secret: bool = False,
    budgets: Budgets | None = None,
) -> None:
    """Serve until interrupted. Refuses a non-loopback address without an API key, a ``--db`` it cannot
    serve, and ``:memory:`` with more than one worker.

    ``workers`` > 1 runs that many processes on one socket bound here, each with its own service over
    the same store. Proxy headers (``X-Forwarded-For``) are believed only from ``forwarded_allow_ips``.
    ``notify``: webhook URLs told of incidents opened and resolved (signed with ``webhook_secret``).
    ``console_secret`` signs console sessions (at least 32 characters; default: one kept in the store);
    ``rotate_console_secret`` replaces the stored one and deletes every session first (everyone signed out).
    ``budgets``: bytes per event, per stream and for the cache, and the retention (default: :class:`Budgets`).
    """
    from driftlock.server.access import parse_keys

    parse_keys(api_keys)  # ValueError for an empty, short or badly scoped key, naming it by position
    if not is_loopback(host) and not api_keys:
        raise ValueError(
            f"Refusing to listen on {host} without an API key: anyone on the network could send and read "
            "events. Pass --api-key (or DRIFTLOCK_SERVE_API_KEYS), or bind to 127.0.0.1."
        )
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    db_text = str(db) if db is not None else ":memory:"
    if workers > 1 and db_text == ":memory:":
        raise ValueError(
            f"--workers {workers} needs a shared store: :memory: would give each worker its own streams. "
            "Pass --db with a SQLite file (or a postgresql:// URL)."
        )
    check_db(db_text)
    if console_secret is not None:
        check_secret(console_secret)  # refused here, before anything starts
    try:
        import uvicorn
        from uvicorn.supervisors.multiprocess import Multiprocess
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"driftlock serve needs the server extra: pip install 'driftlock[server]' ({exc})") from exc

    if notify:
        from driftlock.server.notify import Notifier

        Notifier(notify, webhook_secret)  # a bad URL is refused here, before anything starts
    sock = _listen(host, port)
    bound = sock.getsockname()[1]
    url = f"http://{'[' + host + ']' if sock.family == socket.AF_INET6 else host}:{bound}"
    settings = ServeSettings(
        db_text,
        tuple(api_keys),
        tuple(span_kinds),
        tuple(notify),
        webhook_secret,
        url,
        console_secret,
        budgets or Budgets(),
    )
    if rotate_console_secret:
        store = open_store(db_text)
        try:
            store.console_sessions.rotate()
        finally:
            store.close()
    app: Any = functools.partial(build_app, settings) if workers > 1 else build_app(settings)
    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=5,
        http=HTTP_PROTOCOL,
        workers=workers,
        factory=workers > 1,
        proxy_headers=bool(forwarded_allow_ips),
        forwarded_allow_ips=list(forwarded_allow_ips) or None,
    )
    if workers > 1:
        build_service(db_text).store.close()  # the store is created (or upgraded) once, here, and can be opened
        supervisor = Multiprocess(config, sockets=[sock])
        failed: list[str] = []
        start = supervisor.init_processes

        def init_processes() -> None:
            start()
            if all(_ready(p, supervisor) for p in supervisor.processes):
                if on_ready is not None:
                    on_ready(url)
            else:
                failed.append("a worker did not start: its log is above")
                supervisor.should_exit.set()

        supervisor.init_processes = init_processes  # type: ignore[method-assign]
        supervisor.run()
        if failed:
            raise RuntimeError(failed[0])
        return
    server = uvicorn.Server(config)
    if on_ready is not None:
        original = server.startup

        async def startup(sockets: list[socket.socket] | None = None) -> None:
            await original(sockets=sockets)
            on_ready(url)

        server.startup = startup  # type: ignore[method-assign]
    server.run(sockets=[sock])


def _ready(process: Any, supervisor: Any) -> bool:
    wait = getattr(process, "wait_until_ready", None)  # uvicorn >= 0.40; older ones cannot say
    return True if wait is None else bool(wait(60.0, supervisor.should_exit))
