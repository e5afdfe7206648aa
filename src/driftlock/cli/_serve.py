"""``driftlock serve`` (the local API) and ``driftlock demo`` (all of it at once)."""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from typing import Any

__all__ = ["add_demo", "add_serve"]


def _serve(args: argparse.Namespace) -> int:
    from driftlock.server import describe_keys, run
    from driftlock.server.access import parse_keys

    try:  # an empty or short key stops serve here, before anything listens: the message names it, not its value
        keys = [k.spec for k in parse_keys(args.api_key or [], os.environ.get("DRIFTLOCK_SERVE_API_KEYS"))]
    except ValueError as exc:
        print(f"driftlock serve: {exc}", file=sys.stderr)
        return 2
    workers = f", {args.workers} workers" if args.workers > 1 else ""
    hooks = list(args.notify or [])
    hooks += os.environ.get("DRIFTLOCK_SERVE_WEBHOOKS", "").replace(",", " ").split()

    def ready(url: str) -> None:
        for line in describe_keys(keys):  # a count and masked prefixes: never a key
            print(line, file=sys.stderr if line.startswith("warning") else sys.stdout, flush=True)
        print(f"driftlock serve listening on {url} (database: {_shown_db(args.db)}{workers})", flush=True)

    try:
        run(
            args.host,
            args.port,
            db=args.db,
            api_keys=keys,
            span_kinds=[k.strip() for k in args.span_kinds.split(",") if k.strip()],
            log_level=args.log_level,
            on_ready=ready,
            workers=args.workers,
            forwarded_allow_ips=[a.strip() for a in (args.forwarded_allow_ips or "").split(",") if a.strip()],
            notify=hooks,
            webhook_secret=os.environ.get("DRIFTLOCK_SERVE_WEBHOOK_SECRET") or None,
            console_secret=args.console_secret
            if args.console_secret is not None
            else os.environ.get("DRIFTLOCK_SERVE_CONSOLE_SECRET") or None,
            rotate_console_secret=args.rotate_console_secret,
            budgets=_budgets(args),
        )
    except (ValueError, ImportError, RuntimeError, OSError, sqlite3.Error) as exc:
        print(f"driftlock serve: {exc}", file=sys.stderr)
        return 2
    return 0


def _budgets(args: argparse.Namespace) -> Any:
    from driftlock.service.budgets import Budgets

    return Budgets(
        event_bytes=args.max_event_bytes,
        stream_bytes=args.max_stream_bytes,
        cache_bytes=args.cache_bytes,
        retention=args.retention,
    )


def _argument(parse: Any) -> Any:
    """An argparse type from a parser raising ValueError, whose message argparse then shows."""

    def checked(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    checked.__name__ = parse.__name__
    return checked


def _shown_db(db: str) -> str:
    """The database as the start line shows it: a URL without its password."""
    if "://" in db and "@" in db.split("://", 1)[1]:
        scheme, rest = db.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"
    return db


def _demo(args: argparse.Namespace) -> int:
    try:
        from driftlock.demo.runner import main as demo
    except ImportError as exc:
        print(f'driftlock demo needs the demo extra: pip install "driftlock[demo]" ({exc})', file=sys.stderr)
        return 2
    if args.duration <= 0:
        print("driftlock demo: --duration must be a positive number of seconds", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("driftlock demo: --workers must be at least 1", file=sys.stderr)
        return 2
    return demo(args.seed, args.duration, args.json, args.workers, args.keep)


def add_serve(commands: Any) -> None:
    serve = commands.add_parser("serve", help="run the local Driftlock-compatible API and OTLP receiver")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    serve.add_argument("--port", type=int, default=8080, help="port; 0 picks a free one (default: %(default)s)")
    serve.add_argument(
        "--db",
        default="driftlock.sqlite3",
        help="SQLite file for streams and anomalies, :memory:, or a postgresql:// URL (default: %(default)s)",
    )
    serve.add_argument(
        "--api-key",
        action="append",
        metavar="KEY[:SCOPE]",
        help="accept this API key, 16+ characters (repeatable; also DRIFTLOCK_SERVE_API_KEYS): KEY is an admin key, "
        "KEY:ingest may only send events, KEY:streams=web,api only those streams; none: no auth, loopback only",
    )
    serve.add_argument(
        "--span-kinds",
        default="server,consumer",
        help="span kinds the OTLP receiver turns into events (default: %(default)s)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes answering on one socket, over one --db (not :memory:) (default: %(default)s)",
    )
    serve.add_argument(
        "--forwarded-allow-ips",
        default="",
        help="comma-separated proxy addresses whose X-Forwarded-For is believed (default: none)",
    )
    serve.add_argument(
        "--notify",
        action="append",
        metavar="URL",
        help="POST incidents opened and resolved to this webhook (repeatable; also DRIFTLOCK_SERVE_WEBHOOKS; "
        "signed with DRIFTLOCK_SERVE_WEBHOOK_SECRET; Slack incoming webhooks get Slack's format)",
    )
    serve.add_argument(
        "--console-secret",
        metavar="SECRET",
        help="sign console sessions with this secret, at least 32 characters, the same for every replica "
        "(better: DRIFTLOCK_SERVE_CONSOLE_SECRET; default: one kept in the database); changing it signs everyone out",
    )
    serve.add_argument(
        "--rotate-console-secret",
        action="store_true",
        help="replace the console secret kept in the database and delete every console session (everyone is "
        "signed out, on every replica within 30 s)",
    )
    from driftlock.service.budgets import Budgets, human_bytes, parse_duration, parse_size

    default = Budgets()
    serve.add_argument(
        "--max-event-bytes",
        type=_argument(parse_size),
        default=default.event_bytes,
        help=f"refuse (413) an event larger than this once serialized (default: {human_bytes(default.event_bytes)})",
    )
    serve.add_argument(
        "--max-stream-bytes",
        type=_argument(parse_size),
        default=default.stream_bytes,
        help="bytes of history a stream keeps; the oldest events go first "
        f"(default: {human_bytes(default.stream_bytes)})",
    )
    serve.add_argument(
        "--cache-bytes",
        type=_argument(parse_size),
        default=default.cache_bytes,
        help=f"bytes of stream records kept in memory, in all (default: {human_bytes(default.cache_bytes)})",
    )
    serve.add_argument(
        "--retention",
        type=_argument(parse_duration),
        default=default.retention,
        help="delete anomalies, incidents, detections, counts, feedback and idle streams older than this, "
        "such as 30d, 12h or 90s, or 'forever' (default: 30d)",
    )
    serve.add_argument("--log-level", default="warning", help="uvicorn log level (default: %(default)s)")
    serve.set_defaults(func=_serve)


def add_demo(commands: Any) -> None:
    demo = commands.add_parser("demo", help="watch a demo shop: local server, real requests, anomalies found")
    demo.add_argument("--seed", type=int, default=1, help="traffic seed (default: %(default)s)")
    demo.add_argument("--duration", type=float, default=60.0, help="seconds of traffic to send (default: %(default)s)")
    demo.add_argument("--json", action="store_true", help="print machine-readable results instead of tables")
    demo.add_argument(
        "--workers", type=int, default=2, help="gunicorn worker processes of the shop (default: %(default)s)"
    )
    demo.add_argument("--keep", action="store_true", help="keep driftlock serve and its console running afterwards")
    demo.set_defaults(func=_demo)
