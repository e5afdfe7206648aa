"""What Driftlock costs the site it watches, beside plain Django and the standard OpenTelemetry pipeline.

    apt-get install wrk; python benchmarks/overhead.py [--seconds 8] [--rounds 5]

The demo shop under gunicorn (one sync worker, pinned to CPU 0) is loaded by wrk (8 connections,
pinned to CPU 1, with the receiving servers) in four configurations, alternating, one fresh server
per run:

  bare          Django alone
  otel          Django instrumentation + batch processor + OTLP/HTTP exporter to a sink that answers at once
  driftlock     DriftlockMiddleware to `driftlock serve`
  dl-sink       DriftlockMiddleware to the same sink as otel: the request and export paths alone, without
                `driftlock serve`'s detection competing with wrk for CPU 1
  embedded      DriftlockMiddleware with the embedded engine (detection inside the serving process)

Prints throughput, p50 and p99 latency, CPU of the serving process per request, and the ratios of
driftlock to otel. Goal: throughput >= 1.0x otel, p99 <= 1.05x.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import BIN, ROOT, Child, Load, clean_env, wrk

MODES = ("bare", "otel", "driftlock", "dl-sink", "embedded")
SERVER_CPU = {0}
LOAD_CPU = {1}
PATH = "/products/7/"


def serve(mode: str, sink: str, driftlock: str) -> Child:
    env = clean_env(
        PYTHONPATH=f"{ROOT / 'benchmarks'}:{ROOT / 'src'}",
        OVERHEAD_MODE=mode if mode in ("bare", "otel") else "driftlock",
        DJANGO_SETTINGS_MODULE="overhead_settings",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=sink + "/v1/traces",
        OTEL_SERVICE_NAME="overhead",
    )
    if mode == "driftlock":
        env["DRIFTLOCK_BASE_URL"] = driftlock
    elif mode == "dl-sink":
        env["DRIFTLOCK_BASE_URL"] = sink
    cmd = [str(BIN / "gunicorn"), "overhead_wsgi:application", "--bind", "127.0.0.1:0", "--workers", "1",
           "--log-level", "info", "--graceful-timeout", "5"]  # fmt: skip
    return Child(cmd, env, cpus=SERVER_CPU, cwd=ROOT / "benchmarks")


def measure(mode: str, seconds: float, sink: Child, driftlock: Child) -> tuple[Load, float, float]:
    """Load, CPU of the serving process per request (µs), and the share of CPU 1 the receivers used."""
    with serve(mode, sink.url, driftlock.url) as server:
        url = server.url + PATH
        for _ in range(200):  # warm up: imports, first spans, connections
            httpx.get(url, timeout=10)
        time.sleep(1.5)  # let the first batch go out, so every run starts in the steady state
        cpu = server.cpu_seconds()
        receivers = sink.cpu_seconds() + driftlock.cpu_seconds()
        load = wrk(url, seconds=seconds, cpus=LOAD_CPU)
        used = server.cpu_seconds() - cpu
        received = sink.cpu_seconds() + driftlock.cpu_seconds() - receivers
    return load, used / max(1, load.requests) * 1e6, received / load.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, list[tuple[Load, float, float]]] = {m: [] for m in MODES}
    sink_cmd = [sys.executable, "-m", "uvicorn", "_sink:app", "--port", "0", "--log-level", "info", "--no-access-log"]
    serve_cmd = [sys.executable, "-m", "driftlock", "serve", "--port", "0", "--db", ":memory:"]
    with (
        Child(sink_cmd, clean_env(), cpus=LOAD_CPU, cwd=ROOT / "benchmarks") as sink,
        Child(serve_cmd, clean_env(), cpus=LOAD_CPU) as driftlock,
    ):
        for round_ in range(args.rounds):
            for mode in MODES:
                load, cpu_us, receiver = measure(mode, args.seconds, sink, driftlock)
                results[mode].append((load, cpu_us, receiver))
                print(f"round {round_ + 1} {mode:10} {load.rps:8.0f} req/s  p50 {load.p50_ms:6.2f} ms  "
                      f"p99 {load.p99_ms:6.2f} ms  cpu {cpu_us:6.0f} us/req  receiver {receiver:4.0%} of CPU 1  "
                      f"errors {load.errors}", file=sys.stderr, flush=True)  # fmt: skip

    def med(mode: str, key: str) -> float:
        extra = {"cpu": 1, "receiver": 2}
        return statistics.median(r[extra[key]] if key in extra else getattr(r[0], key) for r in results[mode])

    print(f"\noverhead: gunicorn 1 sync worker on CPU 0, wrk 8 connections, {args.rounds} x {args.seconds:.0f} s each")
    print(f"{'':12}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'CPU us/req':>12}{'receiver CPU1':>15}")
    for mode in MODES:
        print(f"{mode:12}{med(mode, 'rps'):>10.0f}{med(mode, 'p50_ms'):>10.2f}{med(mode, 'p99_ms'):>10.2f}"
              f"{med(mode, 'cpu'):>12.0f}{med(mode, 'receiver'):>15.0%}")  # fmt: skip
    for mode in ("driftlock", "dl-sink", "embedded"):
        print(f"{mode} / otel: throughput {med(mode, 'rps') / med('otel', 'rps'):.2f}x (goal >= 1.0), "
              f"p99 {med(mode, 'p99_ms') / med('otel', 'p99_ms'):.2f}x (goal <= 1.05), "
              f"CPU {med(mode, 'cpu') / med('otel', 'cpu'):.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
