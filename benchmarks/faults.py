"""The site under load while the Driftlock API misbehaves: latency, memory, errors and drops.

    apt-get install wrk; python benchmarks/faults.py [--seconds 20] [--rounds 2]

The demo shop with DriftlockMiddleware (ASYNC_MODE, the defaults: TIMEOUT 10 s, 3 retries, the batch
processor's 2,048-span queue) under gunicorn (one sync worker, CPU 0), loaded by wrk (8 connections,
CPU 1) while the API it exports to is:

  healthy      answers at once
  refused      nothing listens on the port
  slow         answers after 5 s
  ratelimited  answers 429 with Retry-After: 2

Prints request p50/p99, errors, the serving process's memory (start, peak), events the API
accepted, and the drops the exporter reported at shutdown. Goals: p99 <= 1.05x healthy under every
fault, memory bounded by the queue, no failed request, drops counted.
"""

from __future__ import annotations

import argparse
import re
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import BIN, ROOT, Child, Load, clean_env, wrk

MODES = ("healthy", "refused", "slow", "ratelimited")
PATH = "/products/7/"
_SUMMARY = re.compile(r"Driftlock exporter shut down: (\d+) events exported, (\d+) dropped")


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def run(mode: str, seconds: float) -> dict[str, float]:
    sink = None
    if mode != "refused":
        sink_mode = {"healthy": "healthy", "slow": "slow", "ratelimited": "ratelimit"}[mode]
        sink_cmd = [sys.executable, "-m", "uvicorn", "_sink:app", "--port", "0", "--log-level", "info",
                    "--no-access-log"]  # fmt: skip
        sink = Child(sink_cmd, clean_env(SINK_MODE=sink_mode), cpus={1}, cwd=ROOT / "benchmarks")
    api = sink.url if sink else closed_port_url()
    env = clean_env(
        PYTHONPATH=f"{ROOT / 'benchmarks'}:{ROOT / 'src'}",
        OVERHEAD_MODE="driftlock",
        DJANGO_SETTINGS_MODULE="overhead_settings",
        DRIFTLOCK_BASE_URL=api,
    )
    cmd = [str(BIN / "gunicorn"), "overhead_wsgi:application", "--bind", "127.0.0.1:0", "--workers", "1",
           "--log-level", "info", "--graceful-timeout", "30"]  # fmt: skip
    try:
        with Child(cmd, env, cpus={0}, cwd=ROOT / "benchmarks") as server:
            for _ in range(200):
                httpx.get(server.url + PATH, timeout=10)
            time.sleep(1.5)
            start_rss = server.rss_mb()
            peak = [start_rss]
            stop = threading.Event()

            def sample() -> None:
                while not stop.wait(0.25):
                    peak.append(server.rss_mb())

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            load: Load = wrk(server.url + PATH, seconds=seconds, cpus={1})
            stop.set()
            sampler.join()
            server.stop()  # SIGTERM: graceful; the exporter says what it exported and dropped
            found = _SUMMARY.findall("".join(server.output))
        exported, dropped = (int(found[-1][0]), int(found[-1][1])) if found else (-1, -1)
        accepted = httpx.get(sink.url + "/count").json()["accepted"] if sink else 0
    finally:
        if sink:
            sink.stop()
    return {
        "p50": load.p50_ms, "p99": load.p99_ms, "rps": load.rps, "errors": load.errors, "requests": load.requests,
        "rss_start": start_rss, "rss_peak": max(peak), "accepted": accepted, "exported": exported,
        "dropped": dropped,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
    for round_ in range(args.rounds):
        for mode in MODES:
            r = run(mode, args.seconds)
            results[mode].append(r)
            print(f"round {round_ + 1} {mode:12} p99 {r['p99']:6.2f} ms  {r['rps']:6.0f} req/s  errors {r['errors']:.0f}  "
                  f"rss {r['rss_start']:.0f}->{r['rss_peak']:.0f} MB  accepted {r['accepted']:.0f}  "
                  f"dropped {r['dropped']:.0f}", file=sys.stderr, flush=True)  # fmt: skip

    def med(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in results[mode])

    print(f"\nfaults: gunicorn 1 sync worker, wrk 8 connections, {args.seconds:.0f} s per run, median of {args.rounds}")
    print(f"{'API':12}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'p99 x':>7}{'errors':>8}{'RSS MB':>14}"
          f"{'accepted':>10}{'dropped':>9}")  # fmt: skip
    healthy = med("healthy", "p99")
    for mode in MODES:
        rss = f"{med(mode, 'rss_start'):.0f} -> {med(mode, 'rss_peak'):.0f}"
        print(f"{mode:12}{med(mode, 'rps'):>8.0f}{med(mode, 'p50'):>8.2f}{med(mode, 'p99'):>8.2f}"
              f"{med(mode, 'p99') / healthy:>7.2f}{med(mode, 'errors'):>8.0f}{rss:>14}{med(mode, 'accepted'):>10.0f}"
              f"{med(mode, 'dropped'):>9.0f}")  # fmt: skip
    print("goals: p99 x <= 1.05 under every fault, no errors, RSS growth bounded, drops counted")


if __name__ == "__main__":
    main()
