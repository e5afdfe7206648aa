"""The request path alone: CPU per request of benchmarks/overhead_fastapi_app.py called in process.

    python benchmarks/fastapi_request_path.py [--requests 3000] [--rounds 5]

No server and no network: each request is the ASGI call itself (scope, receive, send), so what is
measured is what a middleware adds to the serving thread, away from the noise of a loaded machine. Spans
go to a batch processor whose exporter drops them (otel) or to the Driftlock exporter aimed at a closed
port, which pauses after the first failure (driftlock); the serving thread's CPU is what the ratio compares. Modes alternate, each in a fresh interpreter.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODES = ("bare", "otel", "driftlock")
PATH = "/products/7"


def child(requests: int) -> None:
    if os.environ["OVERHEAD_MODE"] == "otel":
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

        class Drop(SpanExporter):
            def export(self, spans: object) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(Drop()))
        trace.set_tracer_provider(provider)
        os.environ["OVERHEAD_MODE"] = "otel-installed"
    os.environ["OVERHEAD_MODE"] = os.environ["OVERHEAD_MODE"].replace("otel-installed", "otel-asgi")
    from overhead_fastapi_app import app

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": PATH, "raw_path": PATH.encode(), "root_path": "", "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench")],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
    }  # fmt: skip

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: object) -> None:
        pass

    async def run(n: int) -> None:
        for _ in range(n):
            await app(dict(scope), receive, send)

    asyncio.run(run(300))  # warm up
    started, thread = time.process_time(), time.thread_time()
    asyncio.run(run(requests))
    print((time.thread_time() - thread) / requests * 1e6, (time.process_time() - started) / requests * 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.requests)
        return
    results: dict[str, list[float]] = {m: [] for m in MODES}
    process: dict[str, list[float]] = {m: [] for m in MODES}
    for _ in range(args.rounds):
        for mode in MODES:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIFTLOCK_", "OTEL_"))}
            env.update(
                OVERHEAD_MODE=mode, DRIFTLOCK_BASE_URL="http://127.0.0.1:9", PYTHONPATH=f"{HERE}:{HERE.parent / 'src'}"
            )
            out = subprocess.run(
                [sys.executable, __file__, "--child", "--requests", str(args.requests)],
                env=env, capture_output=True, text=True, timeout=600, check=True,
            )  # fmt: skip
            serving, whole = out.stdout.split()[-2:]
            results[mode].append(float(serving))
            process[mode].append(float(whole))
    print(f"CPU per request (µs), median of {args.rounds} x {args.requests} requests: serving thread, whole process")
    for mode in MODES:
        print(f"  {mode:10} {statistics.median(results[mode]):7.0f} {statistics.median(process[mode]):7.0f}"
              f"   serving thread runs {[round(r) for r in results[mode]]}")  # fmt: skip
    bare = statistics.median(results["bare"])
    otel, driftlock = statistics.median(results["otel"]) - bare, statistics.median(results["driftlock"]) - bare
    print(
        f"added to the serving thread: otel {otel:.0f} µs, driftlock {driftlock:.0f} µs: driftlock / otel {driftlock / otel:.2f}x"
    )


if __name__ == "__main__":
    main()
