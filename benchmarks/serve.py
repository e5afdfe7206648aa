"""`driftlock serve` end to end (HTTP, JSON, store, detection), beside the engine alone on one core.

    python benchmarks/serve.py [--seconds 8] [--clients 4] [--postgres URL | --no-postgres]

Two workloads of seeded shop traffic (an episode of 20 scanner or injection events every 1,500
events), at the exporter's batch sizes: many streams (100, batches of 50) and few (4, batches of
250). For each, SQLite and PostgreSQL side by side, with 1 replica and with 2 (two `driftlock serve`
processes over one database, each pinned to a core of its own; the clients send each request to the
next replica in turn, as a load balancer without affinity would, so a stream's consecutive batches
land on different replicas). Every stream is first fed the events it calibrates on (no detection);
then the clients (threads, keep-alive, one stream's batches in order) send for ``--seconds``.
Beside them, the engine alone: ``DetectionService`` over the memory store, in this process on one
core, fed the same bodies (the measure of ``benchmarks/engine.py``). Prints events/s sustained,
p50/p99 detect latency, the CPU each part used, and the ratio to the engine's rate per core times the
cores the replicas were given (goal: >= 0.80).

PostgreSQL: a private server started with ``tests/postgres.py`` (``fsync=off``, as SQLite's
``synchronous=NORMAL`` does not sync a commit either), or ``--postgres URL`` (its database is used as
it is: give an empty one).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._support import BIN, CLOCK_TICKS, Child, clean_env
from benchmarks.engine import workload

from driftlock.engine.settings import resolve_settings
from driftlock.service import DetectionService

POOL_EVENTS = 30_000
WORKLOADS = {"many": (100, 50), "few": (4, 250)}  # streams, batch size


@dataclass
class Workload:
    """Each stream reads the shared pool of encoded events from its own offset; batch k of a stream is fixed."""

    name: str
    streams: int
    batch: int
    pool: list[str]
    next_batch: dict[str, int] = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        return [f"{self.name}-{i:03d}" for i in range(self.streams)]

    def body(self, stream_id: str, k: int) -> bytes:
        start = (int(stream_id.rsplit("-", 1)[1]) * 7919 + k * self.batch) % (len(self.pool) - self.batch)
        events = ",".join(self.pool[start : start + self.batch])
        return f'{{"stream_id":"{stream_id}","events":[{events}]}}'.encode()

    def take(self, stream_id: str) -> bytes:
        k = self.next_batch.get(stream_id, 0)
        self.next_batch[stream_id] = k + 1
        return self.body(stream_id, k)


@dataclass
class Result:
    events: int
    seconds: float
    latencies: list[float]
    cpu: dict[str, float] = field(default_factory=dict)  # cores used, by part
    errors: int = 0

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    def p(self, q: float) -> float:
        values = sorted(self.latencies)
        return values[min(len(values) - 1, int(q * len(values)))] * 1000 if values else float("nan")


# -- the engine alone ---------------------------------------------------------------------------------


def engine(load: Workload, seconds: float, calibrate: int) -> Result:
    """The service over the memory store in this process, on one core: the same bodies, parsed."""
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    if cpus:
        os.sched_setaffinity(0, {min(cpus)})
    try:
        service = DetectionService()
        counters: dict[str, int] = {}

        def call(stream_id: str) -> int:
            k = counters.get(stream_id, 0)
            counters[stream_id] = k + 1
            body = json.loads(load.body(stream_id, k))
            service.detect(body, request_id="bench")
            return len(body["events"])

        for stream_id in load.ids:
            for _ in range(calibrate):
                call(stream_id)
        latencies: list[float] = []
        events = 0
        started = time.perf_counter()
        cpu0 = time.process_time()
        deadline = started + seconds
        while time.perf_counter() < deadline:
            for stream_id in load.ids:
                t0 = time.perf_counter()
                events += call(stream_id)
                latencies.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - started
        return Result(events, elapsed, latencies, {"engine": (time.process_time() - cpu0) / elapsed})
    finally:
        if cpus:
            os.sched_setaffinity(0, cpus)


# -- end to end ---------------------------------------------------------------------------------------


def serve(db: str, cpu: int | None) -> Child:
    cmd = [str(BIN / "python"), "-m", "driftlock", "serve", "--port", "0", "--db", db]
    return Child(cmd, clean_env(), cpus={cpu} if cpu is not None else None)


def drive(load: Workload, urls: list[str], clients: int, seconds: float | None) -> Result:
    """``clients`` threads, each owning a share of the streams (sent in order), each request to the next
    replica; for ``seconds``, or (None) one calibration round: every stream's first batches."""
    shares = [load.ids[c::clients] for c in range(clients)]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    counts = [0] * clients
    errors = [0] * clients
    calibrate = calibration_batches(load)
    start = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client(c: int) -> None:
        https = [httpx.Client(base_url=u, timeout=60, headers={"content-type": "application/json"}) for u in urls]
        try:
            n = c
            start.wait()
            rounds = range(calibrate) if seconds is None else itertools.count()
            for _ in rounds:
                if seconds is not None and time.perf_counter() >= deadline[0]:
                    break
                for stream_id in shares[c]:
                    body = load.take(stream_id)
                    t0 = time.perf_counter()
                    response = https[n % len(https)].post("/v1/detect", content=body)
                    latencies[c].append(time.perf_counter() - t0)
                    n += 1
                    if response.status_code != 200:
                        errors[c] += 1
                        continue
                    counts[c] += load.batch
        finally:
            for http in https:
                http.close()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    started = time.perf_counter()
    deadline[0] = started + (seconds or 0)
    start.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return Result(sum(counts), elapsed, [x for part in latencies for x in part], errors=sum(errors))


def calibration_batches(load: Workload) -> int:
    need = resolve_settings(None).min_events
    return -(-need // load.batch)


def cpu_of(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def server_pids(postmaster: int) -> list[int]:
    """PostgreSQL's postmaster and its children (each backend runs in a session of its own)."""
    pids = [postmaster]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == postmaster:
            pids.append(int(stat.parent.name))
    return pids


def measured(load: Workload, replicas: list[Child], clients: int, seconds: float, postmaster: int | None) -> Result:
    def snapshot() -> tuple[float, float, float]:
        servers = sum(r.cpu_seconds() for r in replicas)
        database = cpu_of(server_pids(postmaster)) if postmaster else 0.0
        return servers, database, time.process_time()

    before = snapshot()
    result = drive(load, [r.url for r in replicas], clients, seconds)
    after = snapshot()
    parts = ("replicas", "postgres", "clients")
    result.cpu = {p: (b - a) / result.seconds for p, a, b in zip(parts, before, after, strict=True)}
    if not postmaster:
        del result.cpu["postgres"]
    return result


@contextmanager
def postgres(url: str | None, enabled: bool) -> Iterator[tuple[str | None, int | None, str]]:
    """(URL, process group of the server we started, what it is) — or (None, None, why not)."""
    if not enabled:
        yield None, None, "off (--no-postgres)"
        return
    if url:
        yield url, None, "given by --postgres"
        return
    from tests.postgres import PostgresServer, find_bindir, unavailable_reason

    reason = unavailable_reason()
    if reason:
        yield None, None, f"skipped: {reason}"
        return
    bindir = find_bindir()
    assert bindir is not None
    server = PostgresServer(bindir)
    try:
        server.start()
        assert server.process is not None
        url = server.new_database("bench")
        import psycopg

        with psycopg.connect(url) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        yield url, server.process.pid, f"{row[0] if row else '?'}, a private server, fsync=off"
    finally:
        server.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per configuration")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--postgres", default=None, help="an empty PostgreSQL database to use (URL)")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--workloads", default="many,few", help="many (100 streams, batches of 50), few (4, 250)")
    args = parser.parse_args()

    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    pool = [json.dumps(e, separators=(",", ":")) for e in workload(POOL_EVENTS, args.seed, 1500)]
    loads = [Workload(name, *WORKLOADS[name], pool) for name in args.workloads.split(",")]
    rows: list[tuple[str, str, int, Result]] = []
    with ExitStack() as stack:
        pg_url, postmaster, pg_what = stack.enter_context(postgres(args.postgres, not args.no_postgres))
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="driftlock-bench-")))
        stores = {"sqlite": str(tmp / "bench.sqlite3")} | ({"postgres": pg_url} if pg_url else {})
        print(f"driftlock serve end to end: {args.clients} clients, {args.seconds:g} s per configuration, "
              f"{len(cores)} cores, PostgreSQL {pg_what}", flush=True)  # fmt: skip
        for load in loads:
            label = f"{load.streams} streams, batches of {load.batch}"
            result = engine(load, args.seconds, calibration_batches(load))
            rows.append((label, "engine alone, 1 core", 1, result))
            print(f"  {label}: engine {result.rate:,.0f} events/s", flush=True)
            for store, db in stores.items():
                load.next_batch.clear()  # every store sees the same batches
                first = stack.enter_context(serve(db, cores[0]))
                drive(load, [first.url], args.clients, None)  # calibration: history only, no detection
                for n in (1, 2):
                    replicas = [first] if n == 1 else [first, stack.enter_context(serve(db, cores[1 % len(cores)]))]
                    result = measured(
                        load, replicas, args.clients, args.seconds, postmaster if store == "postgres" else None
                    )
                    rows.append((label, store, n, result))
                    print(f"  {label}: {store} x{n} {result.rate:,.0f} events/s, errors {result.errors}", flush=True)
                for replica in replicas:
                    replica.stop()
        table(rows)


def table(rows: list[tuple[str, str, int, Result]]) -> None:
    print()
    print("| workload | system | replicas | events/s | vs engine x cores | p50 ms | p99 ms | CPU used (cores) "
          "| events per replica CPU-second (vs engine) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    engines = {label: r for label, system, _, r in rows if system.startswith("engine")}
    ones: dict[tuple[str, str], float] = {}
    for label, system, n, r in rows:
        alone = engines[label]
        ratio = r.rate / (alone.rate * n)
        is_engine = system.startswith("engine")
        if not is_engine:
            ones.setdefault((label, system), r.rate)
        scaling = f" ({r.rate / ones[(label, system)]:.2f}x of 1)" if n > 1 and (label, system) in ones else ""
        cpu = ", ".join(f"{part} {used:.2f}" for part, used in r.cpu.items())
        errors = f" ({r.errors} errors)" if r.errors else ""
        used = r.cpu.get("engine" if is_engine else "replicas") or float("nan")
        per_cpu = r.rate / used
        efficiency = per_cpu / (alone.rate / (alone.cpu.get("engine") or float("nan")))
        print(f"| {label} | {system} | {'' if is_engine else n} | {r.rate:,.0f}{errors}{scaling} | {ratio:.2f} "
              f"| {r.p(0.5):.1f} | {r.p(0.99):.1f} | {cpu} | {per_cpu:,.0f} ({efficiency:.2f}) |")  # fmt: skip
    print()
    print("vs engine x cores: events/s over the engine's events/s on one core times the cores the replicas were "
          "given (one each); goal >= 0.80. The last column divides by the CPU the replicas used instead: what HTTP, "
          "JSON and the store cost beside detection, whatever else the machine runs.")  # fmt: skip


if __name__ == "__main__":
    main()
