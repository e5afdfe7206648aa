"""Embedded engine throughput and detection latency, beside the zstd floor, on one core.

    python benchmarks/engine.py [--events 20000] [--seed 1] [--episode-every 1500]

Feeds seeded shop traffic (normal requests with scanner and injection episodes) through
``DetectionService.detect`` in batches of 100, at balanced defaults (baseline 400, window 50,
hop 10) with 300 permutations. Every detection is timed; beside it, the time zstd alone takes to
compress the bytes that detection compares (baseline + window, once) is the floor for a
compression-based design. Prints events/s sustained, median and p99 detection latency, and the ratio
of detection time to the floor.
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
from typing import Any

import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import traffic

from driftlock.engine import stream as engine_stream
from driftlock.engine.cbad import Detection
from driftlock.engine.settings import DetectionSettings
from driftlock.service import DetectionService

BATCH = 100
OVERRIDE = {"profile": "balanced", "permutation_count": 300}


def workload(n: int, seed: int, every: int) -> list[dict[str, Any]]:
    """Normal traffic with an episode of 20 scanner or injection events every ``every`` events (0: none)."""
    rng = random.Random(seed)
    if not every:
        return [traffic.normal(rng) for _ in range(n)]
    out: list[dict[str, Any]] = []
    while len(out) < n:
        out.extend(traffic.normal(rng) for _ in range(every))
        kind = traffic.scanner if (len(out) // every) % 2 else traffic.injection
        out.extend(kind(rng) for _ in range(20))
    return out[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--episode-every", type=int, default=1500, help="events between episodes; 0: none")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

    timings: list[tuple[float, bool]] = []
    floors: list[float] = []
    zstd = zstandard.ZstdCompressor(level=3)
    analyse = engine_stream.analyse

    def timed(
        baseline: Sequence[bytes], window: Sequence[bytes], settings: DetectionSettings, *, start: int = 0
    ) -> Detection:
        started = time.perf_counter()
        detection = analyse(baseline, window, settings, start=start)
        timings.append((time.perf_counter() - started, detection.is_anomaly))
        joined = b"".join(e + b"\n" for e in [*baseline, *window])
        started = time.perf_counter()
        zstd.compress(joined)
        floors.append(time.perf_counter() - started)
        return detection

    engine_stream.analyse = timed  # type: ignore[assignment]
    events = workload(args.events, args.seed, args.episode_every)
    service = DetectionService()
    started = time.perf_counter()
    anomalies = 0
    for i in range(0, len(events), BATCH):
        body = {"stream_id": "bench", "events": events[i : i + BATCH], "config_override": OVERRIDE}
        anomalies += service.detect(body, request_id="bench")["anomaly_count"]
    elapsed = time.perf_counter() - started

    all_ms = sorted(t * 1000 for t, _ in timings)
    normal_ms = sorted(t * 1000 for t, a in timings if not a)
    anomalous_ms = sorted(t * 1000 for t, a in timings if a)
    floor_ms = statistics.median(floors) * 1000

    def p(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")

    print(f"engine, one core, balanced 400/50/10, 300 permutations, {len(events)} events, seed {args.seed}, "
          f"an episode every {args.episode_every or 'never'} events")  # fmt: skip
    print(f"{'':28}{'value':>12}")
    print(f"{'events/s sustained':28}{len(events) / elapsed:>12,.0f}")
    print(f"{'detections':28}{len(timings):>12}")
    print(f"{'share of time detecting':28}{sum(t for t, _ in timings) / elapsed:>12.0%}")
    print(f"{'anomalous detections':28}{len(anomalous_ms):>12}")
    print(f"{'detection median ms':28}{statistics.median(all_ms):>12.2f}")
    print(f"{'detection p99 ms':28}{p(all_ms, 0.99):>12.2f}")
    print(f"{'  normal windows median ms':28}{statistics.median(normal_ms):>12.2f}")
    if anomalous_ms:
        print(f"{'  anomalous windows median':28}{statistics.median(anomalous_ms):>12.2f}")
    print(f"{'zstd floor median ms':28}{floor_ms:>12.3f}")
    print(f"{'median detection / floor':28}{statistics.median(all_ms) / floor_ms:>12.1f}x")
    print(f"goals: >= 2,000 events/s ({len(events) / elapsed / 2000:.2f}x), median < 10 ms "
          f"({statistics.median(all_ms) / 10:.2f}x of the limit)")  # fmt: skip


if __name__ == "__main__":
    main()
