"""Embedded engine throughput and detection latency, beside the zstd floor, on one core.

    python benchmarks/engine.py [--events 20000] [--seed 1] [--episode-every 1500] [--beside SRC ...]

Feeds seeded shop traffic (normal requests with scanner and injection episodes) through
``DetectionService.detect`` in batches of 100, at balanced defaults (baseline 400, window 50,
hop 10) with 300 permutations. Every detection is timed; beside it, the time zstd alone takes to
compress the bytes that detection compares (baseline + window, once) is the floor for a
compression-based design. Prints events/s sustained, median and p99 detection latency, and the ratio
of detection time to the floor. ``--beside SRC`` runs the same workload, in the same run, under another
source tree's ``driftlock`` (a previous release: ``git archive v0.x | tar -x -C /tmp/prev``, then
``--beside /tmp/prev/src``), one after the other on the same core, and prints the columns side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
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


def measure(args: argparse.Namespace) -> dict[str, float]:
    """Run the workload through this process's ``driftlock``; its figures."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

    timings: list[tuple[float, bool]] = []
    floors: list[float] = []
    zstd = zstandard.ZstdCompressor(level=3)
    analyse = engine_stream.analyse

    def timed(baseline: Sequence[bytes], window: Sequence[bytes], settings: DetectionSettings, **kw: Any) -> Detection:
        started = time.perf_counter()
        detection = analyse(baseline, window, settings, **kw)
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
    for i in range(0, len(events), BATCH):
        body = {"stream_id": "bench", "events": events[i : i + BATCH], "config_override": OVERRIDE}
        service.detect(body, request_id="bench")
    elapsed = time.perf_counter() - started

    all_ms = sorted(t * 1000 for t, _ in timings)
    normal_ms = sorted(t * 1000 for t, a in timings if not a)
    anomalous_ms = sorted(t * 1000 for t, a in timings if a)
    floor_ms = statistics.median(floors) * 1000
    nan = float("nan")
    return {
        "events/s sustained": len(events) / elapsed,
        "detections": len(timings),
        "share of time detecting": sum(t for t, _ in timings) / elapsed,
        "anomalous detections": len(anomalous_ms),
        "detection median ms": statistics.median(all_ms),
        "detection p99 ms": all_ms[min(len(all_ms) - 1, int(0.99 * len(all_ms)))],
        "  normal windows median ms": statistics.median(normal_ms) if normal_ms else nan,
        "  anomalous windows median": statistics.median(anomalous_ms) if anomalous_ms else nan,
        "zstd floor median ms": floor_ms,
        "median detection / floor": statistics.median(all_ms) / floor_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--episode-every", type=int, default=1500, help="events between episodes; 0: none")
    parser.add_argument("--beside", action="append", default=[], help="another source tree's src/ to run beside")
    parser.add_argument("--json", action="store_true", help="print this run's figures as JSON only")
    args = parser.parse_args()
    if args.json:
        print(json.dumps(measure(args)))
        return
    columns = {"this": measure(args)}
    for src in args.beside:
        cmd = [sys.executable, __file__, "--json", "--events", str(args.events), "--seed", str(args.seed),
               "--episode-every", str(args.episode_every)]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(Path(src).resolve())}
        columns[src] = json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout)
    print(f"engine, one core, balanced 400/50/10, 300 permutations, {args.events} events, seed {args.seed}, "
          f"an episode every {args.episode_every or 'never'} events")  # fmt: skip
    names = list(columns)
    print(f"{'':28}" + "".join(f"{n[-24:]:>26}" for n in names) + ("" if len(names) < 2 else f"{'this / beside':>16}"))
    for key in columns["this"]:
        row = f"{key:28}" + "".join(f"{columns[n][key]:>26,.2f}" for n in names)
        if len(names) > 1 and columns[names[1]][key]:
            row += f"{columns['this'][key] / columns[names[1]][key]:>16.2f}"
        print(row)
    this = columns["this"]
    print(f"goals: >= 2,000 events/s ({this['events/s sustained'] / 2000:.2f}x), median < 10 ms "
          f"({this['detection median ms'] / 10:.2f}x of the limit)")  # fmt: skip


if __name__ == "__main__":
    main()
