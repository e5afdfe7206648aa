"""Detection quality: the demo's scenarios over several seeds, scored, beside a naive span mapping.

    python benchmarks/quality.py [--seeds 10] [--profile balanced]

Each seed's plan (ordinary shop traffic with scanner, SQL injection, error burst, latency spike,
credential stuffing and new-endpoint episodes) runs through the demo shop in process: the Django
test client, the real OpenTelemetry Django instrumentation with the Driftlock hooks, spans captured
in memory. The same spans then become events two ways, side by side:

* ours: ``driftlock.events.span_to_event`` (route, status, duration bucket, scrubbed query, ...);
* naive: each span's full attribute set as the body, plus its name, status and exact duration.

Both go through the embedded engine (``DetectionService``, the profile's sizes); the anomalous
detections become alarms as the exporter raises them (``driftlock.alarms``, CONFIRMATIONS) and are
scored with ``driftlock.demo.scoring``: episode recall per kind, false alarms per 10,000 normal
events, and delay in events from an episode's start to its alarm. Then, per seed, ``--quiet`` events
of ordinary traffic alone, steady and with a drifting mix: the false alarms of long quiet runs, where
none can hide near an episode and every event after the first baseline is judged.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
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

from driftlock.alarms import ALARM_P_VALUE, DEFAULT_CONFIRMATIONS, raised  # noqa: E402
from driftlock.demo import scenarios  # noqa: E402
from driftlock.demo.runner import _set_fault  # noqa: E402
from driftlock.demo.scoring import Episode, Score, score  # noqa: E402
from driftlock.engine.settings import PROFILES  # noqa: E402
from driftlock.events import record_from_sdk_span, span_to_event  # noqa: E402
from driftlock.service import DetectionService  # noqa: E402

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


def detect(events: list[dict[str, Any]], override: dict[str, Any]) -> tuple[list[tuple[int, float]], float]:
    """(position, p-value) of every anomalous detection, and the engine's seconds."""
    service = DetectionService()
    alarms: list[tuple[int, float]] = []
    started = time.perf_counter()
    for offset in range(0, len(events), 100):
        body = {"stream_id": "q", "events": events[offset : offset + 100], "config_override": override}
        found = service.detect(body, request_id="q")["anomalies"]
        alarms += [(offset + a["index"], a["metrics"]["p_value"]) for a in found]
    return alarms, time.perf_counter() - started


def quiet_plans(seed: int, events: int) -> list[tuple[str, list[scenarios.Phase]]]:
    """Ordinary traffic alone: as usual, and with a mix that drifts (browsing gives way to searching,
    the product and search weights trading places request by request), which is not an incident."""
    if not events:
        return []
    steady = scenarios.plan(10_000 + seed, warmup=events, gap=0, kinds=())
    shoppers = scenarios.Traffic(random.Random(20_000 + seed))
    start = dict(shoppers.weights)
    drifting = []
    for i in range(events):
        t = i / events
        shoppers.weights["product"] = round((1 - t) * start["product"] + t * start["search"])
        shoppers.weights["search"] = round((1 - t) * start["search"] + t * start["product"])
        drifting.append(shoppers.request())
    return [("steady", steady), ("drifting", [scenarios.Phase(None, tuple(drifting))])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--profile", default="balanced", choices=sorted(PROFILES))
    parser.add_argument(
        "--confirmations",
        type=int,
        default=DEFAULT_CONFIRMATIONS,
        help="anomalous detections per alarm (CONFIRMATIONS)",
    )
    parser.add_argument("--alarm-p", type=float, default=ALARM_P_VALUE, help="p-value a confirming detection needs")
    parser.add_argument(
        "--quiet", type=int, default=3000, help="events of ordinary traffic alone per seed, for false alarms; 0: none"
    )
    parser.add_argument("--override", type=json.loads, default={}, help="detection settings, JSON")
    parser.add_argument("--mappings", default="ours,naive", help="comma-separated: ours, naive")
    args = parser.parse_args()
    window = PROFILES[args.profile].window_size
    logging.getLogger("django.request").setLevel(logging.CRITICAL)  # 404s and 500s are the point
    client, memory = capture()
    scores: dict[str, list[Score]] = {"ours": [], "naive": []}
    seconds = {"ours": 0.0, "naive": 0.0}
    quiet: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])  # (run, mapping) -> alarms, events
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        phases = scenarios.plan(seed)
        spans = run_plan(client, memory, phases)
        episodes = [Episode(k, s, e) for k, s, e in scenarios.episodes(phases)]
        expected = sum(1 for p in phases for r in p.requests if scenarios.is_event(r))
        assert len(spans) == expected, f"seed {seed}: {len(spans)} spans for {expected} events"
        normal = len(spans) - sum(e.end - e.start + 1 for e in episodes)
        for name, mapping in (("ours", ours), ("naive", naive)):
            if name not in args.mappings:
                continue
            alarms, took = detect([mapping(s) for s in spans], {"profile": args.profile, **args.override})
            seconds[name] += took
            raised_alarms = raised(alarms, confirmations=args.confirmations, window=window, p_value=args.alarm_p)
            scores[name].append(score(episodes, raised_alarms, window=window, normal_events=normal))
        for label, phases in quiet_plans(seed, args.quiet):
            quiet_spans = run_plan(client, memory, phases)
            for name, mapping in (("ours", ours), ("naive", naive)):
                if name in args.mappings:
                    found, _ = detect([mapping(s) for s in quiet_spans], {"profile": args.profile, **args.override})
                    alarms_quiet = raised(found, confirmations=args.confirmations, window=window, p_value=args.alarm_p)
                    quiet[label, name][0] += len(alarms_quiet)
                    quiet[label, name][1] += len(quiet_spans)
        line = "; ".join(
            f"{n} {v[-1].found}/{len(episodes)} found, {v[-1].false_alarms} false" for n, v in scores.items() if v
        )
        print(f"seed {seed}: {line}", file=sys.stderr, flush=True)
    report(scores, seconds, quiet, args)


def report(
    scores: dict[str, list[Score]],
    seconds: dict[str, float],
    quiet: dict[tuple[str, str], list[int]],
    args: argparse.Namespace,
) -> None:
    names = [n for n in scores if scores[n]]

    def recall(name: str, kind: str) -> str:
        found = sum(s.by_kind.get(kind, (0, 0))[0] for s in scores[name])
        injected = sum(s.by_kind.get(kind, (0, 0))[1] for s in scores[name])
        return f"{found}/{injected}"

    def fa(name: str) -> str:
        normal = sum(s.normal_events for s in scores[name])
        return f"{10_000 * sum(s.false_alarms for s in scores[name]) / normal:.1f}"

    def delay(name: str) -> str:
        delays = [d for s in scores[name] for d in s.delays]
        return f"{statistics.median(delays):.0f}" if delays else "-"

    def row(label: str, cell: Callable[[str], str]) -> None:
        print(f"{label:34}" + "".join(f"{cell(n):>10}" for n in names))

    settings = {"profile": args.profile, **args.override}
    print(f"\nquality, {settings}, CONFIRMATIONS {args.confirmations} at p <= {args.alarm_p}, {args.seeds} seeds "
          f"(each ~2,100 events, 6 episodes)")  # fmt: skip
    row("", lambda n: n)
    for kind in scenarios.KINDS:
        row("recall " + kind.replace("_", " "), lambda n, k=kind: recall(n, k))  # type: ignore[misc]
    total = {n: sum(s.found for s in scores[n]) for n in names}
    injected = sum(len(s.episodes) for s in scores[names[0]])
    row(f"episodes found (of {injected})", lambda n: str(total[n]))
    row("false alarms per 10k normal", fa)
    for label in ("steady", "drifting") if args.quiet else ():
        row(
            f"  quiet runs, {label} mix ({args.quiet}/seed)",
            lambda n, k=label: f"{10_000 * quiet[k, n][0] / max(1, quiet[k, n][1]):.1f}",  # type: ignore[misc]
        )
    row("median delay (events)", delay)
    row("engine seconds", lambda n: f"{seconds[n]:.1f}")
    if "naive" in total and "ours" in total:
        ratio = total["ours"] / total["naive"] if total["naive"] else float("inf")
        print(f"ours / naive episodes found: {ratio:.2f}x")
    print(
        f"goals: each kind >= 9/10, <= 1 false alarm per 10k, median delay < {PROFILES[args.profile].window_size} events"
    )


if __name__ == "__main__":
    main()
