"""What driftlock.fastapi costs a FastAPI app, beside FastAPI alone and the standard OpenTelemetry pipeline.

    apt-get install wrk; python benchmarks/overhead_fastapi.py [--seconds 6] [--rounds 3]

benchmarks/overhead_fastapi_app.py (31 routes) under uvicorn, one worker pinned to CPU 0, loaded by wrk
(8 connections, pinned to CPU 1, with the receiving servers) on its last route, in four configurations,
alternating, one fresh server per run:

  bare       FastAPI alone
  otel       OpenTelemetry's ASGI middleware + batch processor + OTLP/HTTP exporter to a sink that answers at once
  dl-sink    DriftlockMiddleware to the same sink: the request and export paths alone
  driftlock  DriftlockMiddleware to `driftlock serve`

Prints throughput, p50 and p99 latency, CPU of the serving process per request, and the ratios to otel.
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

MODES = ("bare", "otel", "dl-sink", "driftlock")
SERVER_CPU = {0}
LOAD_CPU = {1}
PATH = "/products/7"


def serve(mode: str, sink: str, driftlock: str) -> Child:
    env = clean_env(
        PYTHONPATH=f"{ROOT / 'benchmarks'}:{ROOT / 'src'}",
        OVERHEAD_MODE=mode if mode in ("bare", "otel") else "driftlock",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=sink + "/v1/traces",
        OTEL_SERVICE_NAME="overhead",
        DRIFTLOCK_BASE_URL=driftlock if mode == "driftlock" else sink,
    )
    cmd = [str(BIN / "uvicorn"), "overhead_fastapi_app:app", "--host", "127.0.0.1", "--port", "0",
           "--workers", "1", "--no-access-log"]  # fmt: skip
    return Child(cmd, env, cpus=SERVER_CPU, cwd=ROOT / "benchmarks")


def measure(mode: str, seconds: float, sink: Child, driftlock: Child) -> tuple[Load, float]:
    """Load, and CPU of the serving process per request (µs)."""
    with serve(mode, sink.url, driftlock.url) as server:
        url = server.url + PATH
        deadline = time.monotonic() + 60
        while True:  # the socket is announced before the worker is up
            try:
                httpx.get(url, timeout=10)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        for _ in range(200):  # warm up: imports, first spans, connections
            httpx.get(url, timeout=10)
        time.sleep(1.5)  # let the first batch go out, so every run starts in the steady state
        cpu = server.cpu_seconds()
        load = wrk(url, seconds=seconds, cpus=LOAD_CPU)
        used = server.cpu_seconds() - cpu
    return load, used / max(1, load.requests) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[tuple[Load, float]]] = {m: [] for m in MODES}
    sink_cmd = [sys.executable, "-m", "uvicorn", "_sink:app", "--port", "0", "--log-level", "info", "--no-access-log"]
    serve_cmd = [sys.executable, "-m", "driftlock", "serve", "--port", "0", "--db", ":memory:"]
    with (
        Child(sink_cmd, clean_env(), cpus=LOAD_CPU, cwd=ROOT / "benchmarks") as sink,
        Child(serve_cmd, clean_env(), cpus=LOAD_CPU) as driftlock,
    ):
        for round_ in range(args.rounds):
            for mode in MODES:
                load, cpu_us = measure(mode, args.seconds, sink, driftlock)
                results[mode].append((load, cpu_us))
                print(f"round {round_ + 1} {mode:10} {load.rps:8.0f} req/s  p50 {load.p50_ms:6.2f} ms  "
                      f"p99 {load.p99_ms:6.2f} ms  cpu {cpu_us:6.0f} us/req  errors {load.errors}",
                      file=sys.stderr, flush=True)  # fmt: skip

    def med(mode: str, key: str) -> float:
        return statistics.median(r[1] if key == "cpu" else getattr(r[0], key) for r in results[mode])

    print(
        f"\nFastAPI overhead: uvicorn 1 worker on CPU 0, wrk 8 connections, {args.rounds} x {args.seconds:.0f} s each"
    )
    print(f"{'':12}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'CPU us/req':>12}")
    for mode in MODES:
        print(f"{mode:12}{med(mode, 'rps'):>10.0f}{med(mode, 'p50_ms'):>10.2f}{med(mode, 'p99_ms'):>10.2f}"
              f"{med(mode, 'cpu'):>12.0f}")  # fmt: skip
    for mode in ("dl-sink", "driftlock"):
        print(f"{mode} / otel: throughput {med(mode, 'rps') / med('otel', 'rps'):.2f}x, "
              f"p99 {med(mode, 'p99_ms') / med('otel', 'p99_ms'):.2f}x, CPU {med(mode, 'cpu') / med('otel', 'cpu'):.2f}x")  # fmt: skip
    print(f"bare / otel: throughput {med('bare', 'rps') / med('otel', 'rps'):.2f}x")


if __name__ == "__main__":
    main()
