"""CPU per span: DriftlockSpanExporter beside the OTLP/HTTP span exporter, on the same recorded spans.

    python benchmarks/exporter.py [--spans 100000] [--rounds 3]

Records Django-like server spans once (old and new HTTP semantic conventions, query strings, a few
errors), then exports them in batches of 512 (the batch processor's default) to a server that answers
at once (another process, on the other CPU), alternating the exporters round by round. CPU is this
process's (conversion, encoding, the HTTP client). Goal: Driftlock <= 0.5x OTLP/HTTP per span.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import ROOT, Child, clean_env
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from driftlock import DriftlockSpanExporter

BATCH = 512
ROUTES = ["", "products/", "products/<int:pk>/", "search/", "cart/", "cart/add/", "login/", "checkout/"]


def record(n: int, seed: int = 1) -> list[ReadableSpan]:
    provider = TracerProvider(resource=Resource.create({"service.name": "shop", "deployment.environment": "prod"}))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("opentelemetry.instrumentation.django")
    rng = random.Random(seed)
    for i in range(n):
        route = rng.choice(ROUTES)
        path = "/" + route.replace("<int:pk>", str(rng.randrange(1, 500)))
        query = "?q=" + rng.choice(["shoes", "lamp", "red+shirt"]) if route == "search/" else ""
        status = rng.choice([200] * 30 + [302, 404, 500])
        attributes = {
            "http.method": "GET", "http.server_name": "127.0.0.1", "http.scheme": "http", "net.host.port": 8000,
            "http.url": f"http://127.0.0.1:8000{path}{query}", "net.peer.ip": f"10.0.{i % 256}.{rng.randrange(256)}",
            "http.user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0", "http.flavor": "1.1",
            "http.route": route, "http.status_code": status, "url.path": path,
        }  # fmt: skip
        with tracer.start_as_current_span(f"GET {route}", kind=SpanKind.SERVER, attributes=attributes) as span:
            if status == 500:
                span.record_exception(RuntimeError("boom"))
                span.set_status(Status(StatusCode.ERROR))
    return list(memory.get_finished_spans())


def cpu_per_span(exporter: SpanExporter, spans: Sequence[ReadableSpan]) -> float:
    started = time.process_time()
    for i in range(0, len(spans), BATCH):
        exporter.export(spans[i : i + BATCH])
    return (time.process_time() - started) / len(spans) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    spans = record(args.spans)
    sink_cmd = [sys.executable, "-m", "uvicorn", "_sink:app", "--port", "0", "--log-level", "info", "--no-access-log"]
    with Child(sink_cmd, clean_env(), cpus={1}, cwd=ROOT / "benchmarks") as sink:
        exporters: dict[str, SpanExporter] = {
            "otlp-http": OTLPSpanExporter(endpoint=sink.url + "/v1/traces"),
            "driftlock": DriftlockSpanExporter(base_url=sink.url, stream_id="bench"),
        }
        for exporter in exporters.values():  # connections and imports before measuring
            exporter.export(spans[:BATCH])
        results: dict[str, list[float]] = {name: [] for name in exporters}
        for round_ in range(args.rounds):
            for name, exporter in exporters.items():
                results[name].append(cpu_per_span(exporter, spans))
                print(f"round {round_ + 1} {name:10} {results[name][-1]:6.1f} us/span", file=sys.stderr, flush=True)
        dropped = exporters["driftlock"].dropped_events  # type: ignore[attr-defined]
        for exporter in exporters.values():
            exporter.shutdown()
    otlp, ours = statistics.median(results["otlp-http"]), statistics.median(results["driftlock"])
    print(f"\nexporter CPU per span, {args.spans} spans in batches of {BATCH}, median of {args.rounds} rounds")
    print(f"{'otlp-http':12}{otlp:8.1f} us/span")
    print(f"{'driftlock':12}{ours:8.1f} us/span   (dropped {dropped})")
    print(f"driftlock / otlp-http: {ours / otlp:.2f}x (goal <= 0.5)")


if __name__ == "__main__":
    main()
