"""A day of traffic compressed into minutes over 1,000 streams with retention on: RSS and database size over time.

    python benchmarks/soak.py [--minutes 6] [--retention 60s] [--stream-bytes 32KiB] [--streams 1000] [--clients 3]

One ``driftlock serve`` (SQLite, one process) with ``--retention``; ``--clients`` threads send detect batches
of 20 events to ``--streams`` stream slots for ``--minutes`` of wall time, which stand for 24 hours: the rate
follows a day (quiet at night, busiest in the afternoon), every simulated hour 5% of the slots move to a new
stream id (the old one goes idle, as services are deployed and renamed), and 1% of batches carry a scanner
burst (anomalies). Each stream detects with a small baseline (60 + 20 events) so that all of them
are detecting within the first minutes. Every ``--every`` seconds it prints the elapsed time, the simulated
hour, the calls and events so far, the server's RSS, the database's size (file, WAL and shared memory), and the
streams and anomalies it holds; at the end, the least and the most RSS and size over the day's second half. Retention is short so that its periods fit the run, and so is each stream's history (``--stream-bytes``,
serve's ``--max-stream-bytes``) so that every stream's history reaches its budget within the run: the database
then holds the streams' histories (at most held streams x the budget) and a retention period's rows, and stops
growing. With ``--retention 30d`` and the default budgets the same holds over days.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _support import BIN, Child, clean_env
from tests import traffic

OVERRIDE = {"baseline_size": 60, "window_size": 20, "hop_size": 10}
BATCH = 20


def db_mb(db: Path) -> float:
    return (
        sum(p.stat().st_size for p in db.parent.glob(db.name + "*") if p.suffix not in (".locks", ".retention")) / 2**20
    )


class Traffic:
    """The senders: stream slots whose ids move on, a day's rate curve, calls and events counted."""

    def __init__(self, url: str, streams: int, clients: int, day_seconds: float) -> None:
        self.url, self.streams, self.clients, self.day = url, streams, clients, day_seconds
        self.generation = [0] * streams
        self.calls = self.events = self.anomalies = self.failed = 0
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._moved_hours = 0

    def hour(self) -> float:
        return 24 * (time.monotonic() - self.started) / self.day

    def rate(self) -> float:
        """Share of the full rate now: 0.2 at 04:00, 1.0 at 16:00."""
        return 0.6 - 0.4 * math.cos(2 * math.pi * (self.hour() - 4) / 24)

    def stream_id(self, slot: int) -> str:
        return f"svc-{slot}-g{self.generation[slot]}"

    def _move_streams(self, rng: random.Random) -> None:
        with self._lock:
            while self._moved_hours < int(self.hour()):
                self._moved_hours += 1
                for slot in rng.sample(range(self.streams), self.streams // 20):
                    self.generation[slot] += 1

    def run(self, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=self.url, timeout=60) as client:
            for _ in range(10_000_000):  # bounded; stopped by the deadline
                if self._stop.is_set():
                    return
                self._move_streams(rng)
                if rng.random() > self.rate():  # the night is quieter: this client waits a moment instead
                    self._stop.wait(0.01)
                    continue
                slot = rng.randrange(self.streams)
                events = [traffic.normal(rng) for _ in range(BATCH)]
                if rng.random() < 0.01:
                    events[-10:] = [traffic.scanner(rng) for _ in range(10)]
                body = {"stream_id": self.stream_id(slot), "events": events, "config_override": OVERRIDE}
                try:
                    answer = client.post("/v1/detect", json=body)
                    ok = answer.status_code == 200
                except httpx.HTTPError:
                    ok = False
                with self._lock:
                    if ok:
                        self.calls += 1
                        self.events += BATCH
                        self.anomalies += len(answer.json()["anomalies"])
                    else:
                        self.failed += 1

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.run, args=(n,), daemon=True) for n in range(self.clients)]
        for thread in threads:
            thread.start()
        return threads

    def stop(self, threads: list[threading.Thread]) -> None:
        self._stop.set()
        for thread in threads:
            thread.join(120)


def held(url: str) -> tuple[int, int]:
    with httpx.Client(base_url=url, timeout=60) as client:
        streams = client.get("/v1/streams", params={"limit": 1}).json()["total"]
        anomalies = client.get("/v1/anomalies", params={"limit": 1}).json()["total"]
    return int(streams), int(anomalies)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=6.0, help="wall time standing for 24 hours (default: 6)")
    parser.add_argument("--stream-bytes", default="32KiB", help="driftlock serve --max-stream-bytes (default: 32KiB)")
    parser.add_argument("--retention", default="60s", help="driftlock serve --retention (default: 60s)")
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--every", type=float, default=15.0, help="seconds between samples (default: 15)")
    parser.add_argument("--db", help="SQLite file (default: a temporary one)")
    args = parser.parse_args()

    from driftlock.service.budgets import parse_duration

    parse_duration(args.retention)  # a bad value fails here, not in the server
    db = Path(args.db) if args.db else Path(tempfile.mkdtemp(prefix="driftlock-soak-")) / "soak.sqlite3"
    cmd = [str(BIN / "driftlock"), "serve", "--port", "0", "--db", str(db), "--retention", args.retention]
    cmd += ["--max-stream-bytes", args.stream_bytes, "--max-event-bytes", "4KiB"]
    server = Child(cmd, clean_env())
    day = args.minutes * 60
    print(f"driftlock serve --retention {args.retention} --max-stream-bytes {args.stream_bytes}; {args.streams} stream slots, {args.clients} clients, "
          f"24 h in {args.minutes:g} min; database {db}")  # fmt: skip
    print(f"{'s':>5} {'hour':>5} {'calls':>7} {'events':>9} {'anomalies':>9} {'RSS MB':>7} {'DB MB':>6} "
          f"{'streams held':>12} {'anomalies held':>14}")  # fmt: skip
    samples: list[tuple[float, float, float]] = []
    load = Traffic(server.url, args.streams, args.clients, day)
    threads = load.start()
    try:
        deadline = time.monotonic() + day
        for _ in range(100_000):
            now = time.monotonic()
            if now >= deadline:
                break
            time.sleep(min(args.every, deadline - now))
            elapsed = time.monotonic() - load.started
            rss, size = server.rss_mb(), db_mb(db)
            streams, anomalies = held(server.url)
            samples.append((elapsed, rss, size))
            print(f"{elapsed:5.0f} {load.hour():5.1f} {load.calls:7d} {load.events:9d} {load.anomalies:9d} "
                  f"{rss:7.1f} {size:6.1f} {streams:12d} {anomalies:14d}", flush=True)  # fmt: skip
    finally:
        load.stop(threads)
        server.stop()
    half = [s for s in samples if s[0] >= day / 2]  # the second half of the day, long after the first period
    summary: dict[str, Any] = {
        "calls": load.calls,
        "events": load.events,
        "anomalies_found": load.anomalies,
        "failed": load.failed,
        "calls_per_second": round(load.calls / day, 1),
    }
    if half:
        summary.update(
            rss_mb_second_half=(round(min(s[1] for s in half), 1), round(max(s[1] for s in half), 1)),
            db_mb_second_half=(round(min(s[2] for s in half), 1), round(max(s[2] for s in half), 1)),
        )
    print("summary:", summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
