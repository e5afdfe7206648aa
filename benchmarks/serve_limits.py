"""`driftlock serve` latency on a kept-alive connection beside the same app under plain ``uvicorn.run``, and its
memory across many streams.

    python benchmarks/serve_limits.py [--requests 2000] [--rounds 3] [--streams 20000]

Three servers of one app (SQLite store, one process each): ``driftlock serve``; the app under
``uvicorn.run(app, host, port)`` (uvicorn binds the socket itself); and the app on a socket made as
``driftlock serve`` made it before #14 (``socket(AF_INET, SOCK_STREAM)``, protocol 0, so asyncio never
sets TCP_NODELAY). Each round times ``GET /healthz`` and a one-event ``POST /v1/detect`` on one
kept-alive connection per server (raw socket, HTTP/1.1), servers alternating; prints median and p99
over all rounds. Then sends one event to each of ``--streams`` new streams through ``driftlock serve``
and prints its RSS before, along the way, and after.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import Child, clean_env

PLAIN_UVICORN = """
import socket, sys, uvicorn
from driftlock.server import build_service
from driftlock.server.app import create_app
probe = socket.socket(); probe.bind(("127.0.0.1", 0)); port = probe.getsockname()[1]; probe.close()
# at info level uvicorn says "Uvicorn running on http://127.0.0.1:PORT" once it listens
uvicorn.run(create_app(build_service(sys.argv[1])), host="127.0.0.1", port=port, log_level="info", access_log=False)
"""

PROTOCOL_ZERO = """
import socket, sys, uvicorn
from driftlock.server import build_service
from driftlock.server.app import create_app
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # as driftlock serve did before #14
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", 0))
app = create_app(build_service(sys.argv[1]))
server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
start = server.startup
async def startup(sockets=None):
    await start(sockets=sockets)
    print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
server.startup = startup
server.run(sockets=[sock])
"""


class Connection:
    """One kept-alive HTTP/1.1 connection on a raw socket: the least client there is."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def request(self, method: str, path: str, body: bytes = b"") -> bytes:
        head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        self.sock.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            data += chunk
        header, _, rest = data.partition(b"\r\n\r\n")
        length = next(int(h.split(b":")[1]) for h in header.split(b"\r\n") if h.lower().startswith(b"content-length"))
        while len(rest) < length:
            rest += self.sock.recv(65536)
        if not header.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"{method} {path}: {header.splitlines()[0].decode()}: {rest[:200]!r}")
        return rest

    def close(self) -> None:
        self.sock.close()


def timed(conn: Connection, method: str, path: str, body: bytes, n: int) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        conn.request(method, path, body)
        times.append(time.perf_counter() - started)
    return times


def p99(values: list[float]) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * 0.99))]


def latency(args: argparse.Namespace, tmp: Path) -> None:
    python = sys.executable
    servers = {
        "driftlock serve": Child(
            [python, "-m", "driftlock", "serve", "--port", "0", "--db", str(tmp / "serve.sqlite3")], clean_env()
        ),
        "uvicorn.run (same app)": Child([python, "-c", PLAIN_UVICORN, str(tmp / "plain.sqlite3")], clean_env()),
        "protocol-0 socket (serve before #14)": Child(
            [python, "-c", PROTOCOL_ZERO, str(tmp / "zero.sqlite3")], clean_env()
        ),
    }
    results: dict[str, dict[str, list[float]]] = {name: {"healthz": [], "detect": []} for name in servers}
    event = json.dumps(
        {"stream_id": "bench", "events": [{"type": "trace", "body": {"route": "items/", "status": 200}}]}
    )
    try:
        for _ in range(args.rounds):
            for name, child in servers.items():
                # a connection per server and round: uvicorn closes one idle for 5 s (--timeout-keep-alive)
                conn = Connection(child.url)
                timed(conn, "GET", "/healthz", b"", 5)  # warm up
                timed(conn, "POST", "/v1/detect", event.encode(), 5)
                slow = name.startswith("protocol-0")
                n = max(20, args.requests // 20) if slow else args.requests  # 44 ms each: fewer suffice
                results[name]["healthz"] += timed(conn, "GET", "/healthz", b"", n)
                results[name]["detect"] += timed(conn, "POST", "/v1/detect", event.encode(), n // 2)
                conn.close()
    finally:
        for child in servers.values():
            child.stop()
    print(f"kept-alive connection, {args.rounds} rounds, servers alternating (ms)")
    print(f"{'server':<40}{'healthz median':>16}{'p99':>9}{'detect median':>16}{'p99':>9}")
    for name, r in results.items():
        h, d = r["healthz"], r["detect"]
        print(
            f"{name:<40}{statistics.median(h) * 1e3:>16.3f}{p99(h) * 1e3:>9.3f}"
            f"{statistics.median(d) * 1e3:>16.3f}{p99(d) * 1e3:>9.3f}"
        )
    serve, plain = results["driftlock serve"], results["uvicorn.run (same app)"]
    print(
        f"driftlock serve / uvicorn.run medians: healthz {statistics.median(serve['healthz']) / statistics.median(plain['healthz']):.2f}x, "
        f"detect {statistics.median(serve['detect']) / statistics.median(plain['detect']):.2f}x"
    )


def memory(args: argparse.Namespace, tmp: Path) -> None:
    child = Child(
        [sys.executable, "-m", "driftlock", "serve", "--port", "0", "--db", str(tmp / "streams.sqlite3")], clean_env()
    )
    try:
        conn = Connection(child.url)
        for i in range(200):  # warm up on streams of their own
            conn.request("POST", "/v1/detect", json.dumps({"stream_id": f"warm-{i}", "events": [{"a": i}]}).encode())
        before = child.rss_mb()
        marks = {args.streams // 4, args.streams // 2, args.streams}
        print(f"\nRSS of driftlock serve (SQLite) while {args.streams:,} new streams get one event each")
        print(f"{'streams':>10}{'RSS MB':>10}")
        print(f"{0:>10}{before:>10.1f}")
        started = time.perf_counter()
        for i in range(1, args.streams + 1):
            body = {"stream_id": f"stream-{i}", "events": [{"type": "trace", "body": {"route": f"r{i % 50}/"}}]}
            conn.request("POST", "/v1/detect", json.dumps(body).encode())
            if i in marks:
                print(f"{i:>10,}{child.rss_mb():>10.1f}")
        elapsed = time.perf_counter() - started
        after = child.rss_mb()
        conn.request("GET", "/v1/streams?limit=1")
        print(f"RSS {before:.1f} -> {after:.1f} MB ({after - before:+.1f}); {args.streams / elapsed:,.0f} streams/s")
        conn.close()
    finally:
        child.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="healthz requests per round (detect: half)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--streams", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        latency(args, Path(tmp))
        memory(args, Path(tmp))


if __name__ == "__main__":
    main()
