"""The store contract, run against every store: MemoryStore, SqliteStore and PostgresStore (a real server).

A store is the truth for stream state and incidents: a session locks one stream and reads its record
(the caller's cached copy when its version is still the stored one, else only the history it lacks),
a commit writes the call's outcome at once and bumps the version, a write behind the lock's back is a
conflict, and the reads (streams, anomalies, incidents, feedback, timeline) see exactly what was committed.
"""

from __future__ import annotations

import itertools
import random
import sqlite3
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from driftlock.engine.settings import MAX_STATE_EVENTS
from driftlock.service.detection import DetectionService
from driftlock.service.embedded import open_store
from driftlock.service.sqlite import SqliteStore
from driftlock.service.store import AnomalyFilter, Commit, MemoryStore, Store, StoreConflictError, StreamRecord
from tests import traffic
from tests.postgres import PostgresServer, postgres_fixture

postgres_server = postgres_fixture(scope="module", name="postgres_server")

KINDS = ["memory", "sqlite", "postgres"]
_databases = itertools.count()


class Stores:
    """Opens stores over one database: each ``open()`` is what another process would hold."""

    def __init__(self, kind: str, make: Callable[[], Store], tamper: Callable[[str], None]) -> None:
        self.kind = kind
        self._make = make
        self.tamper = tamper  # bumps a stream's stored version behind every lock's back
        self.opened: list[Store] = []

    def open(self) -> Store:
        store = self._make()
        if store not in self.opened:
            self.opened.append(store)
        return store


@pytest.fixture(scope="module")
def postgres_database(postgres_server: PostgresServer) -> str:
    return postgres_server.new_database("store_contract")


def fresh_schema(database: str) -> str:
    """A URL of ``database`` whose search_path is a new, empty schema (cheaper than a database a test)."""
    import psycopg

    name = f"t{next(_databases)}"
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    return f"{database}?options=-csearch_path%3D{name}"


def _stores(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Stores:
    if kind == "memory":
        memory = MemoryStore()

        def tamper_memory(stream_id: str) -> None:
            memory._streams[stream_id].version += 1

        return Stores(kind, lambda: memory, tamper_memory)
    if kind == "sqlite":
        path = tmp_path / "store.sqlite3"

        def tamper_sqlite(stream_id: str) -> None:
            with sqlite3.connect(path, timeout=30) as db:
                db.execute("UPDATE streams SET version = version + 1 WHERE stream_id = ?", (stream_id,))

        return Stores(kind, lambda: SqliteStore(path), tamper_sqlite)
    import psycopg

    url = fresh_schema(request.getfixturevalue("postgres_database"))

    def tamper_postgres(stream_id: str) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE streams SET version = version + 1 WHERE stream_id = %s", (stream_id,))

    return Stores(kind, lambda: open_store(url), tamper_postgres)


@pytest.fixture(params=KINDS)
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    """Each store in turn."""
    made = _stores(request.param, request, tmp_path)
    yield made
    for store in made.opened:
        store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    """The stores several processes share, each with a cache of its own to validate."""
    made = _stores(request.param, request, tmp_path)
    yield made
    for store in made.opened:
        store.close()


def ev(n: int) -> bytes:
    return b'{"n":%d}' % n


def append(store: Store, stream_id: str, events: list[bytes], cached: StreamRecord | None = None) -> StreamRecord:
    """One call that adds ``events`` to the stream's history, as the service's detect does."""
    with store.session(stream_id, cached) as session:
        record = session.record or StreamRecord.new(stream_id)
        record.engine.events.extend(events)
        record.engine.events_ingested += len(events)
        record.engine.last_event_at = time.time()
        session.commit(Commit(record, appended=min(len(events), len(record.engine.events)), events_at=time.time()))
    return record


def stored(store: Store, stream_id: str) -> StreamRecord | None:
    with store.session(stream_id) as session:
        return session.record


def history(store: Store, stream_id: str) -> list[bytes]:
    record = stored(store, stream_id)
    assert record is not None
    return list(record.engine.events)


def anomaly(stream_id: str, ts: float, position: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "index": 0,
        "position": position,
        "metrics": {"ncd": 0.5, "p_value": 0.0, "confidence_level": 1.0, "window_compression_ratio": 2.0,
                    "entropy_change": 0.1},
        "event": {"type": "trace", "body": {"route": "/x", "n": position}},
        "why": "because",
        "explanation": {},
        "stream_id": stream_id,
        "status": "open",
        "detected_at": f"t{ts}",
        "detected_ts": ts,
        "incident_id": None,
        "incident": None,
        **extra,
    }  # fmt: skip


def incident(stream_id: str, opened: float, status: str = "open", **extra: Any) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "stream_id": stream_id, "status": status, "opened_ts": opened,
            "resolved_ts": None, "anomaly_count": 1, "explanation": {"summary": "x"}, "feedback": [], **extra}  # fmt: skip


# -- sessions and versions ---------------------------------------------------------------------------


def test_a_new_stream_has_no_record_until_its_first_commit(stores: Stores) -> None:
    store = stores.open()
    with store.session("s") as session:
        assert session.record is None
    assert store.stream("s") is None  # a session that commits nothing writes nothing
    record = append(store, "s", [ev(1), ev(2)])
    assert record.version == 1
    again = stored(stores.open(), "s")
    assert again is not None and again.version == 1
    assert list(again.engine.events) == [ev(1), ev(2)] and again.engine.events_ingested == 2
    summary = store.stream("s")
    assert summary is not None
    assert (summary["stream_id"], summary["events_ingested"], summary["history_events"]) == ("s", 2, 2)


def test_every_commit_bumps_the_version_and_keeps_counters_settings_and_incident_state(stores: Stores) -> None:
    store = stores.open()
    record = append(store, "s", [ev(1)])
    with store.session("s", record) as session:
        assert session.record is not None
        r = session.record
        r.meta["profile"] = "strict"
        r.meta["muted_until"] = 123.5
        r.engine.since_detection, r.engine.detections, r.engine.anomaly_count = 3, 7, 2
        r.incident.pending = [(10, "a1"), (12, "a2")]
        r.last_detection_at = 99.25
        session.commit(Commit(r))
    assert r.version == 2
    loaded = stored(stores.open(), "s")
    assert loaded is not None and loaded.version == 2
    assert loaded.meta == {"profile": "strict", "muted_until": 123.5}
    assert (loaded.engine.since_detection, loaded.engine.detections, loaded.engine.anomaly_count) == (3, 7, 2)
    assert loaded.incident.pending == [(10, "a1"), (12, "a2")] and loaded.incident.open is None
    assert loaded.last_detection_at == 99.25 and loaded.created_at == pytest.approx(record.created_at)


def test_a_write_behind_the_locks_back_is_a_conflict_and_nothing_of_the_call_is_written(stores: Stores) -> None:
    store = stores.open()
    append(store, "s", [ev(1)])
    with store.session("s") as session:
        assert session.record is not None
        record = session.record
        stores.tamper("s")
        record.engine.events.append(ev(2))
        record.engine.events_ingested += 1
        with pytest.raises(StoreConflictError):
            session.commit(Commit(record, appended=1, anomalies=[anomaly("s", 1.0, 1)], events_at=time.time()))
    assert history(stores.open(), "s") == [ev(1)]
    assert store.list_anomalies(AnomalyFilter(), 10, 0) == ([], 0)


def test_a_session_commits_once(shared: Stores) -> None:
    store = shared.open()
    with store.session("s") as session:
        record = StreamRecord.new("s")
        session.commit(Commit(record))
        with pytest.raises(RuntimeError):
            session.commit(Commit(record))


def test_the_lock_makes_concurrent_calls_on_one_stream_from_several_handles_run_one_at_a_time(stores: Stores) -> None:
    # SQLite's lock holds across processes; two handles in one process do not exclude each other (POSIX
    # record locks belong to the process), and a process holds one store per file: its threads share it.
    handles = [stores.open()] * 3 if stores.kind == "sqlite" else [stores.open() for _ in range(3)]
    errors: list[BaseException] = []

    def work(store: Store, worker: int) -> None:
        try:
            for i in range(15):
                append(store, "hot", [ev(worker * 1000 + i)])
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(handles[w % 3], w)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and not any(t.is_alive() for t in threads)
    record = stored(handles[0], "hot")
    assert record is not None
    assert record.engine.events_ingested == 90 and record.version == 90  # no call lost another's write
    assert sorted(record.engine.events) == sorted(ev(w * 1000 + i) for w in range(6) for i in range(15))
    for w in range(6):  # each worker's events in its order
        mine = [e for e in record.engine.events if int(e[5:-1]) // 1000 == w]
        assert mine == [ev(w * 1000 + i) for i in range(15)]


# -- the cache -----------------------------------------------------------------------------------------


def test_a_cached_record_whose_version_is_stored_is_used_as_it_is(shared: Stores) -> None:
    store = shared.open()
    record = append(store, "s", [ev(1), ev(2)])
    with store.session("s", record) as session:
        assert session.record is record


def test_a_stale_cache_is_extended_by_the_history_it_lacks(shared: Stores) -> None:
    mine, other = shared.open(), shared.open()
    cached = append(mine, "s", [ev(i) for i in range(5)])
    events = cached.engine.events
    theirs = append(other, "s", [ev(i) for i in range(5, 8)])
    append(other, "s", [ev(8)], theirs)
    with mine.session("s", cached) as session:
        record = session.record
        assert record is not None and record.version == 3
        assert record.engine.events is events  # extended in place, not read again
        assert list(record.engine.events) == [ev(i) for i in range(9)]
        assert record.history_next == 9 and record.engine.events_ingested == 9


def test_a_cache_far_behind_keeps_the_newest_history(shared: Stores) -> None:
    mine, other = shared.open(), shared.open()
    cached = append(mine, "s", [ev(i) for i in range(10)])
    theirs: StreamRecord | None = None
    for start in range(10, 10 + MAX_STATE_EVENTS + 500, 500):
        theirs = append(other, "s", [ev(i) for i in range(start, start + 500)], theirs)
    total = 10 + ((MAX_STATE_EVENTS + 500 + 499) // 500) * 500
    with mine.session("s", cached) as session:
        assert session.record is not None
        assert list(session.record.engine.events) == [ev(i) for i in range(total - MAX_STATE_EVENTS, total)]
    assert history(shared.open(), "s") == [ev(i) for i in range(total - MAX_STATE_EVENTS, total)]
    assert mine.recent_events("s", 3) == [ev(total - 3), ev(total - 2), ev(total - 1)]
    summary = mine.stream("s")
    assert summary is not None and summary["history_events"] == MAX_STATE_EVENTS


def test_a_rewritten_history_is_read_again_whole(stores: Stores) -> None:
    mine, other = stores.open(), stores.open()
    cached = append(mine, "s", [ev(i) for i in range(6)])
    theirs = stored(other, "s")
    assert theirs is not None
    with other.session("s", theirs) as session:
        assert session.record is not None
        r = session.record
        r.engine.events = deque([ev(100), ev(101)], maxlen=MAX_STATE_EVENTS)  # a thaw that forgets
        session.commit(Commit(r, rewrite_history=True, frozen_changed=True))
    append(other, "s", [ev(102)], r)
    with mine.session("s", cached) as session:
        assert session.record is not None
        assert list(session.record.engine.events) == [ev(100), ev(101), ev(102)]
    assert history(stores.open(), "s") == [ev(100), ev(101), ev(102)]
    assert mine.recent_events("s", 10) == [ev(100), ev(101), ev(102)]


def test_a_frozen_baseline_is_kept_beside_the_history_until_thawed(stores: Stores) -> None:
    mine, other = stores.open(), stores.open()
    cached = append(mine, "s", [ev(i) for i in range(8)])
    with other.session("s") as session:
        assert session.record is not None
        r = session.record
        r.engine.frozen, r.engine.frozen_start = [ev(2), ev(3), ev(4)], 2
        session.commit(Commit(r, frozen_changed=True))
    append(other, "s", [ev(8), ev(9)], r)
    for handle, cache in ((mine, cached), (stores.open(), None)):
        with handle.session("s", cache) as session:
            assert session.record is not None
            e = session.record.engine
            assert e.frozen == [ev(2), ev(3), ev(4)] and e.frozen_start == 2
            assert list(e.events) == [ev(i) for i in range(10)]
            cached = session.record
    with other.session("s") as session:
        assert session.record is not None
        r = session.record
        r.engine.frozen = None  # a thaw that learns: the history stays
        session.commit(Commit(r, frozen_changed=True))
    with mine.session("s", cached) as session:
        assert session.record is not None
        assert session.record.engine.frozen is None and list(session.record.engine.events) == [ev(i) for i in range(10)]


# -- anomalies, incidents, feedback -----------------------------------------------------------------------


def test_anomalies_are_listed_newest_first_with_filters_and_pages(stores: Stores) -> None:
    store = stores.open()
    rows = {sid: [anomaly(sid, 1000.0 + 10 * i + k, i) for i in range(6)] for k, sid in enumerate(("a", "b"))}
    for i in range(6):  # interleaved calls, a commit each
        for sid in ("a", "b"):
            with store.session(sid) as session:
                session.commit(Commit(session.record or StreamRecord.new(sid), anomalies=[rows[sid][i]]))
    everything, total = store.list_anomalies(AnomalyFilter(), 100, 0)
    assert total == 12
    assert [a["id"] for a in everything] == [rows[s][i]["id"] for i in reversed(range(6)) for s in ("b", "a")]
    first = everything[-1]
    assert first["event"] == rows["a"][0]["event"] and list(first["event"]) == ["type", "body"]  # as sent
    assert first["metrics"] == rows["a"][0]["metrics"] and first["position"] == 0 and first["status"] == "open"
    page, total = store.list_anomalies(AnomalyFilter(stream_id="a"), 2, 2)
    assert total == 6 and [a["id"] for a in page] == [rows["a"][3]["id"], rows["a"][2]["id"]]
    since, total = store.list_anomalies(AnomalyFilter(since=1020.0, until=1040.5), 100, 0)
    assert total == 5 and {a["detected_ts"] for a in since} == {1020.0, 1021.0, 1030.0, 1031.0, 1040.0}
    assert store.list_anomalies(AnomalyFilter(stream_id="nope"), 10, 0) == ([], 0)
    assert store.list_anomalies(AnomalyFilter(), 10, 50)[0] == []
    got = store.get_anomaly(rows["b"][4]["id"])
    assert got is not None and got["stream_id"] == "b" and got["feedback"] == [] and got["why"] == "because"
    assert store.get_anomaly("missing") is None


def test_feedback_changes_the_status_and_is_kept_in_order(stores: Stores) -> None:
    store = stores.open()
    rows = [anomaly("s", 1000.0 + i, i) for i in range(3)]
    with store.session("s") as session:
        session.commit(Commit(StreamRecord.new("s"), anomalies=rows))
    assert store.add_feedback("missing", "confirmed", None, "acknowledged") is False
    assert store.add_feedback(rows[1]["id"], "confirmed", "real", "acknowledged") is True
    assert store.add_feedback(rows[1]["id"], "false_positive", None, "resolved") is True
    got = store.get_anomaly(rows[1]["id"])
    assert got is not None and got["status"] == "resolved"
    assert [(f["feedback_type"], f["reason"]) for f in got["feedback"]] == [
        ("confirmed", "real"),
        ("false_positive", None),
    ]
    assert all(f["created_at"].endswith("Z") and f["created_at"][:2] == "20" for f in got["feedback"])
    resolved, total = store.list_anomalies(AnomalyFilter(status="resolved"), 10, 0)
    assert total == 1 and resolved[0]["id"] == rows[1]["id"] and resolved[0]["status"] == "resolved"
    assert store.list_anomalies(AnomalyFilter(status="open"), 10, 0)[1] == 2


def test_incidents_are_written_updated_joined_and_listed(stores: Stores) -> None:
    store = stores.open()
    members = [anomaly("s", 1000.0 + i, i) for i in range(3)]
    opened = incident("s", 1002.0, opened_by=members[2]["id"])
    with store.session("s") as session:  # a confirmation in an earlier call
        record = StreamRecord.new("s")
        session.commit(Commit(record, anomalies=members[:1]))
    with store.session("s", record) as session:  # the call that opens it: a confirmation before the opener
        assert session.record is not None
        record = session.record
        record.incident.open = opened
        members[2]["incident_id"] = opened["id"]
        attach = [(m["id"], opened["id"]) for m in members[:2]]
        session.commit(Commit(record, anomalies=members[1:], incidents=[opened], attach=attach))
    joined, total = store.list_anomalies(AnomalyFilter(incident_id=opened["id"]), 10, 0)
    assert total == 3 and {a["id"] for a in joined} == {m["id"] for m in members}
    assert all(a["incident_id"] == opened["id"] for a in joined)
    got_anomaly = store.get_anomaly(members[0]["id"])
    assert got_anomaly is not None and got_anomaly["incident_id"] == opened["id"]
    summary = store.stream("s")
    assert summary is not None and summary["open_incident"] == opened["id"] and summary["open_incidents"] == 1
    got = store.get_incident(opened["id"])
    assert got == opened
    with store.session("s") as session:  # resolved by a later call
        assert session.record is not None and session.record.incident.open == opened
        record = session.record
        row = dict(record.incident.open or {}, status="resolved", resolved_ts=1100.0, resolution="quiet")
        record.incident.open = None
        later = [incident("s", 1200.0), incident("t", 1300.0, status="muted", muted=True)]
        session.commit(Commit(record, incidents=[row, *later]))
    assert store.get_incident(opened["id"]) == row and store.get_incident("missing") is None
    listed, total = store.list_incidents(None, None, 10, 0)
    assert total == 3 and [i["id"] for i in listed] == [later[1]["id"], later[0]["id"], opened["id"]]
    assert store.list_incidents("s", None, 1, 1) == ([row], 2)
    assert store.list_incidents("s", "open", 10, 0) == ([later[0]], 1)
    assert store.list_incidents(None, "muted", 10, 0) == ([later[1]], 1)
    summary = store.stream("s")
    assert summary is not None and summary["open_incident"] is None and summary["open_incidents"] == 1


# -- streams and timeline --------------------------------------------------------------------------------


def test_streams_are_listed_by_id_with_pages(stores: Stores) -> None:
    store = stores.open()
    for sid in ("c", "a", "d", "b"):
        append(store, sid, [ev(1)])
    page, total = store.list_streams(2, 1)
    assert total == 4 and [s["stream_id"] for s in page] == ["b", "c"]
    assert store.recent_events("nope", 5) == [] and store.stream("nope") is None
    store.ping()


def test_the_timeline_keeps_detections_and_events_per_minute(stores: Stores) -> None:
    store = stores.open()
    now = time.time()
    minute = int(now // 60)
    with store.session("s") as session:
        record = StreamRecord.new("s")
        record.engine.events.extend([ev(1), ev(2), ev(3)])
        commit = Commit(record, appended=3, events_at=now, detections=[(now, 2, 0.25, 0.5, False)])
        session.commit(commit)
    with store.session("s", record) as session:
        assert session.record is not None
        session.record.engine.events.extend([ev(4), ev(5)])
        commit = Commit(session.record, appended=2, events_at=now, detections=[(now + 1, 4, 0.75, 0.0, True)])
        session.commit(commit)
    with store.session("s", record) as session:
        assert session.record is not None
        session.record.engine.events.append(ev(6))
        session.commit(Commit(session.record, appended=1, events_at=now + 120))
    minutes, found = store.timeline("s", now - 60)
    assert minutes == [(minute, 5), (minute + 2, 1)]
    assert found == [(now, 2, 0.25, 0.5, False), (now + 1, 4, 0.75, 0.0, True)]
    assert store.timeline("s", now + 0.5)[1] == [(now + 1, 4, 0.75, 0.0, True)]
    assert store.timeline("s", (minute + 1) * 60)[0] == [(minute + 2, 1)]
    assert store.timeline("other", 0) == ([], [])


# -- the service over each store ---------------------------------------------------------------------------


def shop(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    while len(out) < n:
        out += [traffic.normal(rng) for _ in range(560)]
        out += [traffic.scanner(rng) for _ in range(40)]
    return out[:n]


def test_the_service_detects_the_same_over_every_store(stores: Stores) -> None:
    """The same events give the same anomalies, incidents and timeline over this store as in memory."""
    events = shop(2600, 7)

    def run(service: DetectionService) -> tuple[list[Any], list[Any], list[Any]]:
        found = []
        for i in range(0, len(events), 100):
            answer = service.detect({"stream_id": "shop", "events": events[i : i + 100]}, request_id="t")
            found += [(i + a["index"], a["metrics"], a["incident"] is not None) for a in answer["anomalies"]]
        incidents, _ = service.store.list_incidents(None, None, 100, 0)
        opened = sorted(
            (r["opened_position"], r["last_position"], r["resolution"], r["anomaly_count"]) for r in incidents
        )
        _, detections = service.store.timeline("shop", 0)
        return found, opened, [d[1:] for d in detections]

    reference = run(DetectionService(MemoryStore()))
    assert len(reference[1]) >= 3  # the episodes opened incidents
    assert run(DetectionService(stores.open())) == reference


def test_the_service_reads_each_record_again_without_a_cache(stores: Stores) -> None:
    """Every call loading the stream from the store (as a replica that never saw it would) detects as one with a cache."""
    events = shop(1400, 3)
    expected = DetectionService(MemoryStore())
    store = stores.open()
    service = DetectionService(store)
    for i in range(0, len(events), 50):
        body = {"stream_id": "cold", "events": events[i : i + 50]}
        a = expected.detect(body, request_id="t")
        service.cache.drop("cold")
        b = service.detect(body, request_id="t")
        assert [(x["index"], x["metrics"]) for x in b["anomalies"]] == [
            (x["index"], x["metrics"]) for x in a["anomalies"]
        ]
        assert [(x["change"], x["opened_position"]) for x in b["incidents"]] == [
            (x["change"], x["opened_position"]) for x in a["incidents"]
        ]


# -- PostgreSQL: the schema, its migrations, connecting ---------------------------------------------------


def test_replicas_starting_together_create_the_schema_once(postgres_database: str) -> None:
    from driftlock.service.postgres import SCHEMA_VERSION, PostgresStore

    url = fresh_schema(postgres_database)
    opened: list[PostgresStore] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4, timeout=30)

    def start() -> None:
        try:
            barrier.wait()
            opened.append(PostgresStore(url, max_size=2))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert not errors and len(opened) == 4
        assert {store.schema_version() for store in opened} == {SCHEMA_VERSION}
        append(opened[0], "s", [ev(1)])
        assert history(opened[3], "s") == [ev(1)]
    finally:
        for store in opened:
            store.close()
    import psycopg

    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*), max(version) FROM driftlock_schema").fetchone() == (1, SCHEMA_VERSION)
    again = PostgresStore(url)  # an upgrade with nothing to do keeps what is stored
    try:
        assert history(again, "s") == [ev(1)]
    finally:
        again.close()


def test_a_database_written_by_a_newer_driftlock_is_refused(postgres_database: str) -> None:
    import psycopg

    from driftlock.service.postgres import SCHEMA_VERSION, PostgresStore

    url = fresh_schema(postgres_database)
    PostgresStore(url).close()
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE driftlock_schema SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(RuntimeError, match="newer driftlock"):
        PostgresStore(url)


def test_open_store_picks_postgres_for_its_urls_and_names_an_unreachable_server_without_the_password(
    postgres_database: str,
) -> None:
    from driftlock.service.postgres import PostgresStore

    url = fresh_schema(postgres_database)
    for spelling in (url, url.replace("postgresql://", "postgres://", 1)):
        store = open_store(spelling)
        try:
            assert isinstance(store, PostgresStore)
            store.ping()
        finally:
            store.close()
    import socket

    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(
        RuntimeError, match=f"cannot connect to PostgreSQL at postgresql://u@127.0.0.1:{port}/x"
    ) as info:
        open_store(f"postgresql://u:hunter2@127.0.0.1:{port}/x?connect_timeout=2")
    assert "hunter2" not in str(info.value)


@pytest.fixture(params=["memory", "postgres"])
def creating(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    made = _stores(request.param, request, tmp_path)
    yield made
    for store in made.opened:
        store.close()


def test_a_stream_created_behind_the_locks_back_is_a_conflict(creating: Stores) -> None:
    # (SqliteStore raises sqlite3.IntegrityError here rather than StoreConflictError.)
    store, other = creating.open(), creating.open()
    with store.session("new") as session:
        assert session.record is None
        if creating.kind == "memory":
            assert isinstance(store, MemoryStore)
            store._streams["new"] = StreamRecord.new("new")
            store._streams["new"].version = 1
        else:
            import psycopg

            from driftlock.service.postgres import PostgresStore

            assert isinstance(other, PostgresStore)
            with psycopg.connect(other.url, autocommit=True) as conn:
                conn.execute(
                    "INSERT INTO streams (stream_id, version, events_ingested, anomaly_count, detections) "
                    "VALUES ('new', 1, 0, 0, 0)"
                )
        record = StreamRecord.new("new")
        record.engine.events.append(ev(1))
        with pytest.raises(StoreConflictError):
            session.commit(Commit(record, appended=1, anomalies=[anomaly("new", 1.0, 0)]))
    assert store.list_anomalies(AnomalyFilter(), 10, 0) == ([], 0)


def test_a_database_server_restart_costs_no_call() -> None:
    from tests.postgres import running_postgres

    with running_postgres() as server:
        store = open_store(server.new_database("restart"))
        try:
            record = append(store, "s", [ev(1)])
            server.stop()
            server.start()  # the same port; every pooled connection is now dead
            append(store, "s", [ev(2)], record)
            assert history(store, "s") == [ev(1), ev(2)]
            assert store.list_streams(10, 0)[1] == 1
            store.ping()
        finally:
            store.close()
