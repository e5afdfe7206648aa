"""Budgets in bytes, retention, and the demo's caps (issue 24, findings 4 and 5), through a real `driftlock serve`.

Finding 4: 270 events of about 1 MB to one calibrating stream took a server from 108 MB to 644 MB of RSS and its
database to 285 MB; an anomaly stored its whole event; nothing was ever deleted. Finding 5: the demo, which needs no
key, skipped the permutation cap (one 21 KB request cost 6.2 s of CPU).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from driftlock.service.budgets import Budgets, excerpt, parse_duration, parse_size
from driftlock.service.detection import Service
from driftlock.service.sqlite import SqliteStore
from driftlock.service.store import AnomalyFilter, MemoryStore, Store
from driftlock.service.stores import open_store
from tests import traffic
from tests.support import ServerProcess, running_server, wait_for


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["request_id"] and error["message"]
    return error


def rss_kib(server: ServerProcess) -> int:
    assert server.process is not None
    status = Path(f"/proc/{server.process.proc.pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])


def db_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*") if p.suffix != ".locks")


def anomalous_batch(seed: int, blob: int = 0) -> list[dict[str, Any]]:
    """460 normal requests, then a scanner burst (with a ``blob`` of that many characters) that fires."""
    rng = random.Random(seed)
    burst = [traffic.scanner(rng) for _ in range(20)]
    if blob:
        burst = [{**e, "blob": "".join(rng.choice("abcdef0123456789") for _ in range(blob))} for e in burst]
    return [traffic.normal(rng) for _ in range(460)] + burst


# -- finding 4: bytes, not only events -----------------------------------------------------------------------


def test_an_event_past_the_byte_budget_is_a_413_naming_the_limit(server: ServerProcess) -> None:
    events = [{"a": 1}, {"blob": "y" * 100_000}]
    error = error_of(server.post("/v1/detect", json={"stream_id": "budget-413", "events": events}), 413)
    assert error["code"] == "payload_too_large"
    assert "event 1 is" in error["message"] and "65536 bytes (64 KiB) per event" in error["message"]
    assert "--max-event-bytes" in error["message"]
    assert server.get("/v1/streams/budget-413").status_code == 404  # nothing of the batch is stored


def test_large_events_to_one_calibrating_stream_stay_within_the_stream_and_cache_budgets(tmp_path: Path) -> None:
    """Finding 4's traffic, at the size the event budget still accepts (60 KB instead of 1 MB): 270 events, 16 MB,
    to one stream that is still calibrating. The stream keeps 2 MiB of them; memory and disk stay near that."""
    db = tmp_path / "budgets.sqlite3"
    rng = random.Random(4)
    with running_server(db, "--max-stream-bytes", "2MiB", "--cache-bytes", "4MiB") as srv:
        srv.post("/v1/detect", json={"stream_id": "warm", "events": [{"a": 1}]})
        before = rss_kib(srv)
        for _ in range(27):
            batch = [{"route": "/upload", "body": "".join(rng.choices("abcdefghij", k=60_000))} for _ in range(10)]
            assert srv.post("/v1/detect", json={"stream_id": "big", "events": batch}).status_code == 200
        info = srv.get("/v1/streams/big").json()
        grown = (rss_kib(srv) - before) / 1024
        size = db_bytes(db) / 2**20
    print(f"270 events of 60 KB: RSS grew {grown:.1f} MiB, database {size:.1f} MiB")
    assert info["events_ingested"] == 270 and not info["detection_ready"]
    assert size < 12, f"database {size:.1f} MiB for a stream that keeps 2 MiB (unbounded: 16 MiB and more)"
    assert grown < 40, f"RSS grew {grown:.0f} MiB (unbounded: the whole 16 MiB history, several times over)"
    kept = SqliteStore(db)
    try:
        history = kept.recent_events("big", 2000)
    finally:
        kept.close()
    assert 25 <= len(history) <= 35 and sum(map(len, history)) <= 2 * 2**20  # 2 MiB of 60 KB events


def test_an_anomaly_keeps_a_bounded_excerpt_of_its_event(server: ServerProcess) -> None:
    answer = server.post("/v1/detect", json={"stream_id": "budget-excerpt", "events": anomalous_batch(5, 30_000)})
    assert answer.status_code == 200, answer.text
    anomalies = answer.json()["anomalies"]
    assert anomalies, "the burst fires"
    stored = server.get(f"/v1/anomalies/{anomalies[0]['id']}").json()
    size = len(json.dumps(stored["event"]))
    assert size <= 2048, f"the anomaly keeps {size} bytes of its event"  # unbounded: the whole 30 KB event
    assert stored["event"]["body"]["route"] and "(30000 characters)" in stored["event"]["blob"]  # says what it cut


def test_excerpt_keeps_small_events_whole_and_cuts_large_ones() -> None:
    small = {"route": "/a", "status": 200}
    assert excerpt(small, 2048) is small
    wide = {f"k{i}": "v" * 50 for i in range(500)}
    cut = excerpt(wide, 2048)
    assert len(json.dumps(cut)) <= 2048 * 2 and cut["…"] == "480 more keys"
    assert excerpt("x" * 100_000, 2048) == "x" * 200 + "… (100000 characters)"
    flat = excerpt([[["y" * 300] * 20] * 20] * 20, 2048)  # even shortened it is too large: the start of its JSON
    assert set(flat) == {"excerpt", "bytes"} and len(flat["excerpt"]) <= 1025


def test_sizes_and_durations_read_as_the_flags_say() -> None:
    assert parse_size("64KiB") == 65536 and parse_size("8m") == 8 << 20 and parse_size("100") == 100
    assert parse_duration("30d") == 30 * 86400 and parse_duration("90s") == 90 and parse_duration("forever") is None
    for bad in ("64 parsecs", "-1"):
        with pytest.raises(ValueError, match="is not a size"):
            parse_size(bad)
    with pytest.raises(ValueError, match="must hold at least one event"):
        Budgets(event_bytes=1 << 20, stream_bytes=1 << 16)


# -- retention -----------------------------------------------------------------------------------------------


def test_retention_deletes_old_anomalies_incidents_counts_and_idle_streams(tmp_path: Path) -> None:
    db = tmp_path / "retention.sqlite3"
    with running_server(db, "--retention", "4s", "--workers", "2") as srv:
        for seed in (1, 2):
            answer = srv.post("/v1/detect", json={"stream_id": "old", "events": anomalous_batch(seed)}).json()
            assert answer["anomalies"]
        anomaly = answer["anomalies"][0]["id"]
        assert srv.post(f"/v1/anomalies/{anomaly}/feedback", json={"feedback_type": "confirmed"}).status_code == 200
        assert srv.get("/v1/anomalies", params={"stream_id": "old"}).json()["total"] > 0
        incidents = srv.get("/v1/incidents", params={"stream_id": "old"}).json()["incidents"]
        for incident in incidents:
            srv.post(f"/v1/incidents/{incident['id']}/resolve")
        rng = random.Random(3)

        def gone() -> bool:
            srv.post("/v1/detect", json={"stream_id": "live", "events": [traffic.normal(rng) for _ in range(5)]})
            return (
                srv.get("/v1/streams/old").status_code == 404
                and srv.get("/v1/anomalies", params={"stream_id": "old"}).json()["total"] == 0
                and srv.get("/v1/incidents", params={"stream_id": "old"}).json()["total"] == 0
                and srv.get(f"/v1/anomalies/{anomaly}").status_code == 404
            )

        wait_for(gone, timeout=60, interval=0.5, message="the old stream and its rows to expire")
        assert srv.get("/v1/streams/live").status_code == 200  # sent to within the retention: kept
        timeline = srv.get("/v1/streams/live/timeline", params={"since_seconds": 3600}).json()
        assert all(time.time() - _epoch(m["minute"]) < 180 for m in timeline["minutes"])
    with sqlite(db) as execute:
        assert execute("SELECT count(*) FROM feedback").fetchone()[0] == 0
        assert execute("SELECT count(*) FROM stream_events WHERE stream_id = 'old'").fetchone()[0] == 0


def test_a_streams_profile_sets_its_own_retention(tmp_path: Path) -> None:
    """``PATCH /v1/streams/{id}/profile`` with ``retention_seconds``: a bad value is a 400 naming the field; a
    stream with an hour keeps its rows past the server's 4 s while another's go; back to null, its rows go."""
    db = tmp_path / "own.sqlite3"
    with running_server(db, "--retention", "4s") as srv:

        def patch(stream: str, body: Any) -> httpx.Response:
            return httpx.patch(f"{srv.url}/v1/streams/{stream}/profile", json=body, timeout=30)

        for bad in (59, 10 * 365 * 86400 + 1, 600.5, "1h", True):
            error = error_of(patch("kept", {"retention_seconds": bad}), 400)
            assert "retention_seconds must be an integer from 60 to 315360000" in error["message"], error
        answer = patch("kept", {"retention_seconds": 3600})
        assert answer.status_code == 200 and answer.json()["retention_seconds"] == 3600
        for seed, stream in ((1, "kept"), (2, "plain")):
            assert srv.post("/v1/detect", json={"stream_id": stream, "events": anomalous_batch(seed)}).json()[
                "anomalies"
            ]
        assert srv.get("/v1/streams/plain/profile").json()["retention_seconds"] is None

        def anomalies(stream: str) -> int:
            total: int = srv.get("/v1/anomalies", params={"stream_id": stream}).json()["total"]
            return total

        wait_for(
            lambda: srv.get("/v1/streams/plain").status_code == 404 and anomalies("plain") == 0,
            timeout=60,
            interval=0.5,
            message="the stream under the server's retention to expire",
        )
        # a stream made after "kept" also expires: sweeps went past kept's age, and kept is all there
        srv.post("/v1/detect", json={"stream_id": "later", "events": [{"route": "/later"}]})
        wait_for(
            lambda: srv.get("/v1/streams/later").status_code == 404,
            timeout=60,
            interval=0.5,
            message="a stream newer than the one with an hour to expire",
        )
        assert srv.get("/v1/streams/kept").status_code == 200 and anomalies("kept") > 0
        assert srv.get("/v1/streams/kept/profile").json()["retention_seconds"] == 3600
        answer = patch("kept", {"retention_seconds": None})  # back to the server's: its rows go
        assert answer.status_code == 200 and answer.json()["retention_seconds"] is None
        wait_for(
            lambda: srv.get("/v1/streams/kept").status_code == 404 and anomalies("kept") == 0,
            timeout=60,
            interval=0.5,
            message="the stream back under the server's retention to expire",
        )


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class sqlite:
    def __init__(self, path: Path) -> None:
        import sqlite3

        self.db = sqlite3.connect(path)

    def __enter__(self) -> Any:
        return self.db.execute

    def __exit__(self, *exc: object) -> None:
        self.db.close()


def test_one_process_sweeps_at_a_time(tmp_path: Path) -> None:
    """Another process in the middle of a sweep: this one skips its own, then sweeps once that one is done."""
    db = tmp_path / "one.sqlite3"
    store = SqliteStore(db)
    holder = (
        "import sys\nfrom driftlock.service.sqlite import SqliteStore\n"
        f"with SqliteStore({str(db)!r})._sweeping() as writing:\n"
        "    print('sweeping' if writing else 'skipped', flush=True)\n    sys.stdin.readline()\n"
    )
    other = subprocess.Popen([sys.executable, "-c", holder], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout is not None and other.stdin is not None
        assert other.stdout.readline().strip() == "sweeping"
        assert store.expire(time.time()) is None  # the other process is sweeping: this one skips
        other.stdin.write("done\n")
        other.stdin.flush()
        assert other.wait(30) == 0
        assert store.expire(time.time()) is not None
    finally:
        if other.poll() is None:
            other.kill()
            other.wait(10)
        store.close()


# -- finding 5: the demo ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo() -> Any:
    """A server of its own: the demo allows 10 calls a minute per address."""
    with running_server() as srv:
        yield srv


def test_the_demo_refuses_what_cost_seconds_of_cpu(demo: ServerProcess) -> None:
    server = demo
    events = traffic.events(120, seed=5)  # about 21 KB, as in the finding
    started = time.monotonic()
    response = server.post(
        "/v1/demo/detect", json={"events": events, "config_override": {"permutation_count": 10000, "hop_size": 1}}
    )
    error = error_of(response, 400)
    assert time.monotonic() - started < 2  # refused before any work (it took 6.2 s of CPU)
    assert "permutation_count on the demo must be at most 300" in error["message"]
    error = error_of(server.post("/v1/demo/detect", json={"events": events, "config_override": {"hop_size": 1}}), 400)
    assert "hop_size on the demo must be at least 5" in error["message"]


def test_the_demo_caps_what_it_accepts_in_bytes(demo: ServerProcess) -> None:
    server = demo
    error = error_of(server.post("/v1/demo/detect", json={"events": [{"blob": "z" * 5000}]}), 413)
    assert "event 0 is" in error["message"] and "4096 bytes (4 KiB) per event on the demo" in error["message"]
    many = [{"blob": "z" * 3000, "n": i} for i in range(30)]
    error = error_of(server.post("/v1/demo/detect", json={"events": many}), 413)
    assert "65536 bytes (64 KiB) per request on the demo" in error["message"]
    assert server.post("/v1/demo/detect", json={"events": traffic.events(60, seed=6)}).status_code == 200


# -- expiry in each store -----------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    if request.param == "sqlite":
        made: Store = SqliteStore(tmp_path / "expire.sqlite3")
        yield made
        made.close()
        return
    from tests.postgres import running_postgres

    with running_postgres() as postgres:
        made = open_store(postgres.new_database("expire"))
        yield made
        made.close()


def test_expire_deletes_what_is_older_and_keeps_what_is_not(store: Store) -> None:
    service = Service(store)
    for seed in (1, 2):
        service.detect("old", anomalous_batch(seed))
    for incident in service.list_incidents("old")["incidents"]:
        service.resolve_incident(incident["id"])
    anomalies = service.list_anomalies(AnomalyFilter(stream_id="old"))["anomalies"]
    assert anomalies
    service.feedback(anomalies[0]["id"], "confirmed")
    service.detect("open", anomalous_batch(3) + [traffic.scanner(random.Random(n)) for n in range(60)])
    held_open = service.list_incidents("open", "open")["total"]
    cut = time.time() + 1  # everything so far is older
    second = Service(store)  # another process, which has the stream in its cache
    second.mute_stream("old", 0)  # (a write that is not an event: the stream stays idle)
    counts = store.expire(cut, batch=7)  # small batches: several transactions a kind
    assert counts is not None and counts["anomalies"] >= len(anomalies) and counts["feedback"] == 1
    assert counts["streams"] == (1 if held_open else 2)
    assert service.stream_info("old") is None and service.list_anomalies(AnomalyFilter(stream_id="old"))["total"] == 0
    assert service.list_incidents("old")["total"] == 0
    assert (service.stream_info("open") is not None) == bool(held_open)  # a stream with an open incident stays
    if held_open:
        members = service.list_anomalies(AnomalyFilter(stream_id="open"))["total"]
        assert members > 0  # the open incident's anomalies stay with it
    service.detect("old", [{"route": "/again"}])  # made again: a new stream, not the deleted one's record
    second.detect("old", [{"route": "/again"}])
    info = second.stream_info("old")
    assert info is not None and info["events_ingested"] == 2
    assert store.expire(cut - 60) == dict.fromkeys(counts, 0)  # nothing left that is older


def test_expire_applies_each_streams_own_retention(store: Store) -> None:
    """A stream's profile ``retention_seconds`` overrides ``--retention`` for its rows and its idleness, both
    ways: shorter is swept sooner, longer is kept past the server's cutoff; ``forever`` sweeps only overrides."""
    service = Service(store)
    for seed, stream in enumerate(("short", "plain", "long"), start=1):
        service.detect(stream, anomalous_batch(seed))
        for incident in service.list_incidents(stream)["incidents"]:
            service.resolve_incident(incident["id"])
        assert service.list_anomalies(AnomalyFilter(stream_id=stream))["total"] > 0
    service.update_profile("short", {"retention_seconds": 60})
    service.update_profile("long", {"retention_seconds": 10 * 365 * 86400})
    assert service.get_profile("long")["retention_seconds"] == 10 * 365 * 86400
    had = service.list_incidents("short")["total"]  # resolved (whether the rule opened one is the rule's)
    now = time.time()

    def kept(stream: str) -> bool:
        return (
            service.stream_info(stream) is not None
            and service.list_anomalies(AnomalyFilter(stream_id=stream))["total"] > 0
        )

    # two minutes on, under a global retention of an hour: only the stream with a minute's retention goes
    counts = store.expire(now - 3600, batch=7, now=now + 120)
    assert counts is not None and counts["anomalies"] > 0 and counts["detections"] > 0 and counts["streams"] == 1
    assert counts["minutes"] > 0 and counts["incidents"] >= had
    assert (
        service.stream_info("short") is None and service.list_anomalies(AnomalyFilter(stream_id="short"))["total"] == 0
    )
    assert service.list_incidents("short")["total"] == 0
    assert kept("plain") and kept("long")
    # everything past the global cutoff: the plain stream goes, the one with ten years stays
    counts = store.expire(now + 1, batch=7, now=now + 1)
    assert counts is not None and counts["streams"] == 1
    assert service.stream_info("plain") is None and kept("long")
    # --retention forever: only streams with their own retention are swept
    service.detect("plain", [{"route": "/again"}])
    counts = store.expire(None, batch=7, now=now + 10 * 365 * 86400 + 120)
    assert counts is not None and counts["streams"] == 1
    assert service.stream_info("long") is None and service.list_anomalies(AnomalyFilter(stream_id="long"))["total"] == 0
    assert service.stream_info("plain") is not None
