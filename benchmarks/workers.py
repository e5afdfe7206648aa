"""What the application is told, by worker count: the demo shop under gunicorn with 1, 2, 4 and 8 workers.

    python benchmarks/workers.py [--seeds 2] [--duration 30] [--workers 1,2,4,8]

Each run is ``driftlock demo``'s: ``driftlock serve`` and the demo shop under gunicorn, the seeded
plan of ordinary traffic (visitors in sessions, interleaved, at a drifting pace) and six labelled
episodes, a new connection per request so the workers share the traffic, and the alarms scored as
the workers' own ON_ANOMALY handlers wrote them (not recomputed from the server's list). Then one
long episode per worker count: a scanner mixed into 1,000 requests, which must be told once. Same
seeds for every worker count.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from driftlock.demo import scenarios
from driftlock.demo.runner import DemoResult, run


def long_episode(seed: int) -> list[scenarios.Phase]:
    """Warm-up, then a scanner mixed into 1,000 requests at half share, then ordinary traffic."""
    return scenarios.plan(seed, kinds=("scanner",), episode=1000, gap=300)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of traffic per run")
    parser.add_argument("--workers", default="1,2,4,8")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    rows = []
    for workers in counts:
        results: list[DemoResult] = []
        for seed in range(1, args.seeds + 1):
            result = run(seed, args.duration, workers=workers)
            results.append(result)
            print(
                f"workers {workers} seed {seed}: {result.score.found}/{len(result.score.episodes)} told, "
                f"{result.score.false_alarms} false, {result.told_twice} told twice, "
                f"{len({a.pid for a in result.alarms})} processes told"
                + "".join(f", missed {r.episode.kind}" for r in result.score.episodes if not r.found),
                file=sys.stderr,
                flush=True,
            )
        long = run(1, args.duration, workers=workers, phases=long_episode(1))
        scanner = [a for a in long.alarms if a.kind == "scanner"]
        print(f"workers {workers} long episode: told {len(scanner)} time(s)", file=sys.stderr, flush=True)
        found = sum(r.score.found for r in results)
        injected = sum(len(r.score.episodes) for r in results)
        normal = sum(r.score.normal_events for r in results)
        false = sum(r.score.false_alarms for r in results)
        rows.append(
            (
                workers,
                f"{found}/{injected}",
                str(sum(r.told_twice for r in results)),
                f"{10_000 * false / normal:.1f}" if normal else "-",
                str(len(scanner)),
                str(max(len({a.pid for a in r.alarms}) for r in results)),
            )
        )
    print(f"\nthe demo shop under gunicorn, {args.seeds} seeds x 6 episodes, {args.duration:g} s of traffic per run")
    header = ("workers", "episodes told", "told twice", "false alarms/10k", "1,000-request episode", "processes told")
    print(" | ".join(f"{h:>18}" for h in header))
    for row in rows:
        print(" | ".join(f"{v!s:>18}" for v in row))


if __name__ == "__main__":
    main()
