"""Real processes and real sockets for tests: a `driftlock serve` subprocess and a fault-injecting server."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from driftlock.demo.process import ListeningProcess

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
INSTRUMENT = [
    str(BIN / "opentelemetry-instrument"),
    *("--traces_exporter", "driftlock", "--metrics_exporter", "none", "--logs_exporter", "none"),
]
"""`opentelemetry-instrument` with the Driftlock exporter only: put it before a command."""


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, message: str = "") -> Any:
    """Poll ``condition`` until it returns something truthy, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message or condition}")
        time.sleep(interval)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIFTLOCK_", "OTEL_"))}
    env.update(extra)
    return env


class ServerProcess:
    """`python -m driftlock serve` on a free loopback port, in its own process; restartable."""

    def __init__(self, db: str | Path = ":memory:", *args: str, env: Mapping[str, str] | None = None) -> None:
        self.db = str(db)
        self.args = args
        self.env = env
        self.process: ListeningProcess | None = None
        self.url = ""

    @property
    def output(self) -> list[str]:
        return self.process.output if self.process else []

    def start(self, timeout: float = 30.0) -> ServerProcess:
        cmd = [sys.executable, "-m", "driftlock", "serve", "--port", "0", "--db", self.db, *self.args]
        self.process = ListeningProcess(cmd, dict(self.env or clean_env()), "driftlock serve")
        self.url = self.process.wait_for_url(timeout)
        return self

    def kill9(self) -> None:
        assert self.process is not None
        self.process.proc.send_signal(signal.SIGKILL)
        self.process.proc.wait(10)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=10)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=30, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.post(self.url + path, timeout=60, **kwargs)


@contextmanager
def running_server(
    db: str | Path = ":memory:", *args: str, env: Mapping[str, str] | None = None
) -> Iterator[ServerProcess]:
    server = ServerProcess(db, *args, env=env).start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=lambda: {"success": True, "anomalies": [], "total_events": 0})
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Seen:
    method: str
    path: str
    headers: Mapping[str, str]
    body: Any
    at: float


class FaultServer:
    """A real HTTP server on 127.0.0.1 that answers from a script: for faults the real server cannot produce.

    ``replies`` is consumed in order; when it is empty, ``default`` (a Reply or a function of the request
    body returning one) answers.
    """

    def __init__(self, *replies: Reply, default: Reply | Callable[[Any], Reply] | None = None) -> None:
        self.replies: list[Reply] = list(replies)
        self.default = default or Reply()
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw
                with outer._lock:
                    outer.seen.append(Seen(self.command, self.path, dict(self.headers), body, time.monotonic()))
                    reply = outer.replies.pop(0) if outer.replies else outer.default
                if callable(reply):
                    reply = reply(body)
                if reply.delay:
                    time.sleep(reply.delay)
                data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                try:
                    self.send_response(reply.status)
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def free_port_url() -> str:
    """A loopback URL where nothing listens (connections are refused)."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"
