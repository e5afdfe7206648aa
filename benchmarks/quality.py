"""Detection quality: the demo's scenarios over several seeds, scored, beside a naive span mapping.

    python benchmarks/quality.py [--seeds 10] [--profile balanced]

Each seed's plan (ordinary shop traffic with scanner, SQL injection, error burst, latency spike,
credential stuffing and new-endpoint episodes) runs through the demo shop in process: the Django
test client, the real OpenTelemetry Django instrumentation with the Driftlock hooks, spans captured
in memory. The same spans then become events two ways, side by side:

* ours: ``driftlock.events.span_to_event`` (route, status, duration bucket, scrubbed query, ...);
* naive: each span's full attribute set as the body, plus its name, status and exact duration.

Both go through the embedded engine (``DetectionService``, the profile's sizes) and are scored with
``driftlock.demo.scoring``: episode recall per kind, false alarms per 10,000 normal events, and
detection delay in events.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

FAULTS = Path(tempfile.mkdtemp(prefix="driftlock-quality-")) / "faults"
os.environ.update(
    DJANGO_SETTINGS_MODULE="driftlock.demo.shop.settings",
    DRIFTLOCK_ENABLED="false",  # the middleware steps aside: spans are captured here instead of exported
    DRIFTLOCK_DEMO_FAULTS=str(FAULTS),
)

import django  # noqa: E402
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

from driftlock.demo import scenarios  # noqa: E402
from driftlock.demo.runner import _set_fault  # noqa: E402
from driftlock.demo.scoring import Episode, Score, score  # noqa: E402
from driftlock.engine import DetectionService  # noqa: E402
from driftlock.engine.settings import PROFILES  # noqa: E402
from driftlock.events import record_from_sdk_span, span_to_event  # noqa: E402

Mapping = Callable[[ReadableSpan], dict[str, Any]]


def ours(span: ReadableSpan) -> dict[str, Any]:
    event = span_to_event(record_from_sdk_span(span))
    assert event is not None
    return event


def naive(span: ReadableSpan) -> dict[str, Any]:
    body = dict(span.attributes or {})
    body.update(
        name=span.name,
        status=span.status.status_code.name,
        duration_ms=((span.end_time or 0) - (span.start_time or 0)) / 1e6,
    )
    return {"type": "trace", "body": body}


def capture() -> tuple[Any, InMemorySpanExporter]:
    provider = TracerProvider(resource=Resource.create({"service.name": "demo-shop"}))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    trace.set_tracer_provider(provider)
    django.setup()
    from opentelemetry.instrumentation.django import DjangoInstrumentor

    from driftlock.django import conf

    DjangoInstrumentor().instrument(
        tracer_provider=provider,
        request_hook=conf.request_hook,
        response_hook=conf.response_hook,
        excluded_urls=conf.excluded_urls(scenarios.EXCLUDED),
    )
    from django.test import Client

    return Client(raise_request_exception=False), memory


def run_plan(client: Any, memory: InMemorySpanExporter, phases: list[scenarios.Phase]) -> list[ReadableSpan]:
    memory.clear()
    for phase in phases:
        _set_fault(FAULTS, phase.fault)
        for request in phase.requests:
            if request.method == "POST":
                client.post(request.path, data=request.data)
            else:
                client.get(request.path)
        _set_fault(FAULTS, None)
    return [s for s in memory.get_finished_spans() if s.kind == trace.SpanKind.SERVER]


def detect(events: list[dict[str, Any]], profile: str) -> tuple[list[int], float]:
    service = DetectionService()
    alarms: list[int] = []
    started = time.perf_counter()
    for offset in range(0, len(events), 100):
        body = {"stream_id": "q", "events": events[offset : offset + 100], "config_override": {"profile": profile}}
        alarms += [offset + a["index"] for a in service.detect(body, request_id="q")["anomalies"]]
    return alarms, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--profile", default="balanced", choices=sorted(PROFILES))
    parser.add_argument("--min-detections", type=int, default=1, help="persistence rule for an alarm (scoring)")
    args = parser.parse_args()
    window = PROFILES[args.profile].window_size
    logging.getLogger("django.request").setLevel(logging.CRITICAL)  # 404s and 500s are the point
    client, memory = capture()
    scores: dict[str, list[Score]] = {"ours": [], "naive": []}
    seconds = {"ours": 0.0, "naive": 0.0}
    for seed in range(1, args.seeds + 1):
        phases = scenarios.plan(seed)
        spans = run_plan(client, memory, phases)
        episodes = [Episode(k, s, e) for k, s, e in scenarios.episodes(phases)]
        expected = sum(1 for p in phases for r in p.requests if scenarios.is_event(r))
        assert len(spans) == expected, f"seed {seed}: {len(spans)} spans for {expected} events"
        normal = len(spans) - sum(e.end - e.start + 1 for e in episodes)
        for name, mapping in (("ours", ours), ("naive", naive)):
            alarms, took = detect([mapping(s) for s in spans], args.profile)
            seconds[name] += took
            scores[name].append(
                score(episodes, alarms, window=window, normal_events=normal, min_detections=args.min_detections)
            )
        print(f"seed {seed}: ours {scores['ours'][-1].found}/{len(episodes)} found, "
              f"{scores['ours'][-1].false_alarms} false; naive {scores['naive'][-1].found}/{len(episodes)}, "
              f"{scores['naive'][-1].false_alarms} false", file=sys.stderr, flush=True)  # fmt: skip
    report(scores, seconds, args)


def report(scores: dict[str, list[Score]], seconds: dict[str, float], args: argparse.Namespace) -> None:
    def recall(name: str, kind: str) -> str:
        found = sum(s.by_kind.get(kind, (0, 0))[0] for s in scores[name])
        injected = sum(s.by_kind.get(kind, (0, 0))[1] for s in scores[name])
        return f"{found}/{injected}"

    def fa(name: str) -> float:
        normal = sum(s.normal_events for s in scores[name])
        return 10_000 * sum(s.false_alarms for s in scores[name]) / normal

    def delay(name: str) -> str:
        delays = [d for s in scores[name] for d in s.delays]
        return f"{statistics.median(delays):.0f}" if delays else "-"

    print(f"\nquality, profile {args.profile}, {args.seeds} seeds (each ~2,100 events, 6 episodes)")
    print(f"{'':34}{'ours':>10}{'naive':>10}")
    for kind in scenarios.KINDS:
        print(f"{'recall ' + kind.replace('_', ' '):34}{recall('ours', kind):>10}{recall('naive', kind):>10}")
    total = {n: sum(s.found for s in scores[n]) for n in scores}
    injected = sum(len(s.episodes) for s in scores["ours"])
    print(f"{'episodes found':34}{total['ours']:>10}{total['naive']:>10}   of {injected}")
    print(f"{'false alarms per 10k normal':34}{fa('ours'):>10.1f}{fa('naive'):>10.1f}")
    print(f"{'median delay (events)':34}{delay('ours'):>10}{delay('naive'):>10}")
    print(f"{'engine seconds':34}{seconds['ours']:>10.1f}{seconds['naive']:>10.1f}")
    ratio = total["ours"] / total["naive"] if total["naive"] else float("inf")
    print(f"ours / naive episodes found: {ratio:.2f}x; goals: each kind >= 9/10, <= 1 false alarm per 10k, "
          f"median delay < {PROFILES[args.profile].window_size} events")  # fmt: skip


if __name__ == "__main__":
    main()
