"""SQLite: the store of ``driftlock serve`` and of the embedded engine, shared by every process on a machine.

Every call on a stream runs under that stream's lock (:mod:`driftlock.service.locks`, which holds
across processes) and writes its outcome in one transaction (WAL journal, synchronous=NORMAL), so
several processes over one file answer as one would, and a killed process leaves the stream as its
last answered call left it. The schema carries its version (``PRAGMA user_version``) and is created
and upgraded by the store itself.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from driftlock.engine.settings import MAX_STATE_EVENTS
from driftlock.engine.stream import StreamState
from driftlock.service.incidents import IncidentState
from driftlock.service.locks import StreamLocks
from driftlock.service.store import (
    TIMELINE_SECONDS,
    AnomalyFilter,
    Commit,
    StoreConflictError,
    StreamRecord,
    StreamSession,
    stream_summary,
)
from driftlock.service.webhooks import SqlWebhooks

__all__ = ["SCHEMA_VERSION", "SqliteStore"]

SCHEMA_VERSION = 2
BUSY_TIMEOUT_MS = 30_000

_TABLES = """
CREATE TABLE IF NOT EXISTS streams (
    stream_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL DEFAULT 0,
    events_ingested INTEGER NOT NULL,
    since_detection INTEGER,
    anomaly_count INTEGER NOT NULL,
    detections INTEGER NOT NULL,
    last_event_at REAL,
    created_at REAL,
    last_detection_at REAL,
    history_next INTEGER NOT NULL DEFAULT 0,
    history_epoch INTEGER NOT NULL DEFAULT 0,
    frozen_start INTEGER,
    incident TEXT,
    meta TEXT
);
CREATE TABLE IF NOT EXISTS stream_events (
    stream_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (stream_id, seq)
);
CREATE TABLE IF NOT EXISTS frozen_events (
    stream_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (stream_id, seq)
);
CREATE TABLE IF NOT EXISTS anomalies (
    id TEXT PRIMARY KEY,
    stream_id TEXT NOT NULL,
    detected_at TEXT NOT NULL,
    record TEXT NOT NULL,
    detected_ts REAL,
    position INTEGER,
    incident_id TEXT,
    status TEXT NOT NULL DEFAULT 'open'
);
CREATE INDEX IF NOT EXISTS anomalies_by_stream ON anomalies (stream_id);
CREATE INDEX IF NOT EXISTS anomalies_by_incident ON anomalies (incident_id);
CREATE TABLE IF NOT EXISTS feedback (
    anomaly_id TEXT NOT NULL,
    feedback_type TEXT NOT NULL,
    reason TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS feedback_by_anomaly ON feedback (anomaly_id);
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY,
    stream_id TEXT NOT NULL,
    status TEXT NOT NULL,
    opened_ts REAL NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_by_stream ON incidents (stream_id, status);
CREATE TABLE IF NOT EXISTS detections (
    stream_id TEXT NOT NULL,
    at REAL NOT NULL,
    position INTEGER NOT NULL,
    ncd REAL NOT NULL,
    p_value REAL NOT NULL,
    anomaly INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS detections_by_stream ON detections (stream_id, at);
CREATE TABLE IF NOT EXISTS stream_minutes (
    stream_id TEXT NOT NULL,
    minute INTEGER NOT NULL,
    events INTEGER NOT NULL,
    PRIMARY KEY (stream_id, minute)
);
"""

_UPGRADE_FROM_1 = [  # the schema of driftlock 0.1 (no user_version): stream counters and anomalies only
    "ALTER TABLE streams ADD COLUMN version INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE streams ADD COLUMN created_at REAL",
    "ALTER TABLE streams ADD COLUMN last_detection_at REAL",
    "ALTER TABLE streams ADD COLUMN history_next INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE streams ADD COLUMN history_epoch INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE streams ADD COLUMN frozen_start INTEGER",
    "ALTER TABLE streams ADD COLUMN incident TEXT",
    "ALTER TABLE streams ADD COLUMN meta TEXT",
    "UPDATE streams SET history_next = events_ingested",
    "ALTER TABLE anomalies ADD COLUMN detected_ts REAL",
    "ALTER TABLE anomalies ADD COLUMN position INTEGER",
    "ALTER TABLE anomalies ADD COLUMN incident_id TEXT",
    "ALTER TABLE anomalies ADD COLUMN status TEXT NOT NULL DEFAULT 'open'",
]

_STREAM_COLUMNS = (
    "stream_id, version, events_ingested, since_detection, anomaly_count, detections, last_event_at, "
    "created_at, last_detection_at, history_next, history_epoch, frozen_start, incident, meta"
)


class SqliteStore:
    """Thread-safe and process-safe; one connection per process, guarded by a lock."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._lock = threading.Lock()
        self._locks = StreamLocks(self.path + ".locks")
        self._migrate()
        self.webhooks = SqlWebhooks(self._webhook_connection, "?")  # the console's webhooks (service/webhooks.py)

    @contextmanager
    def _webhook_connection(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._db

    def _migrate(self) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                version = self._db.execute("PRAGMA user_version").fetchone()[0]
                exists = self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'streams'").fetchone()
                if version == 0 and exists:
                    for statement in _UPGRADE_FROM_1:
                        self._db.execute(statement)
                    version = 1
                if version > SCHEMA_VERSION:
                    raise RuntimeError(
                        f"{self.path} was written by a newer driftlock (schema {version}, this one knows "
                        f"{SCHEMA_VERSION}): upgrade driftlock or use another --db"
                    )
                for statement in _TABLES.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self._locks.close()

    def ping(self) -> None:
        with self._lock:
            self._db.execute("SELECT 1").fetchone()

    # -- one stream, locked ------------------------------------------------------------------

    @contextmanager
    def session(self, stream_id: str, cached: StreamRecord | None = None) -> Iterator[StreamSession]:
        with self._locks.hold(stream_id):
            yield _SqliteSession(self, stream_id, cached)

    def _row(self, stream_id: str) -> tuple[Any, ...] | None:
        with self._lock:
            row: tuple[Any, ...] | None = self._db.execute(
                f"SELECT {_STREAM_COLUMNS} FROM streams WHERE stream_id = ?", (stream_id,)
            ).fetchone()
            return row

    def _load(self, row: tuple[Any, ...], cached: StreamRecord | None) -> StreamRecord:
        stream_id, version, ingested, since, anomalies, detections, last_event, created, last_det = row[:9]
        history_next, epoch, frozen_start, incident, meta = row[9:]
        if cached is not None and cached.version == version:
            return cached
        with self._lock:
            if cached is not None and cached.history_epoch == epoch:
                rows = self._db.execute(
                    "SELECT data FROM stream_events WHERE stream_id = ? AND seq >= ? ORDER BY seq",
                    (stream_id, cached.history_next),
                ).fetchall()
                events = cached.engine.events
                events.extend(bytes(r[0]) for r in rows)
                frozen = cached.engine.frozen
            else:
                rows = self._db.execute(
                    "SELECT data FROM stream_events WHERE stream_id = ? ORDER BY seq", (stream_id,)
                ).fetchall()
                events = deque((bytes(r[0]) for r in rows), maxlen=MAX_STATE_EVENTS)
                frozen_rows = self._db.execute(
                    "SELECT data FROM frozen_events WHERE stream_id = ? ORDER BY seq", (stream_id,)
                ).fetchall()
                frozen = [bytes(r[0]) for r in frozen_rows] if frozen_start is not None else None
        engine = StreamState(
            stream_id=stream_id,
            events=events,
            events_ingested=ingested,
            since_detection=since,
            anomaly_count=anomalies,
            detections=detections,
            last_event_at=last_event,
            frozen=frozen,
            frozen_start=frozen_start or 0,
        )
        return StreamRecord(
            engine=engine,
            incident=IncidentState.from_json(json.loads(incident) if incident else None),
            meta=json.loads(meta) if meta else {},
            version=version,
            created_at=created or time.time(),
            last_detection_at=last_det,
            history_next=history_next,
            history_epoch=epoch,
        )

    def _commit(self, change: Commit, stored_version: int | None) -> None:
        record, e = change.record, change.record.engine
        if change.rewrite_history:
            new_history = list(e.events)
            record.history_epoch += 1
        else:
            new_history = list(e.events)[-change.appended :] if change.appended else []
        if change.frozen_changed:
            record.history_epoch += 1
        first_seq = record.history_next
        record.history_next += len(new_history)
        values = (
            record.version + 1,
            e.events_ingested,
            e.since_detection,
            e.anomaly_count,
            e.detections,
            e.last_event_at,
            record.created_at,
            record.last_detection_at,
            record.history_next,
            record.history_epoch,
            e.frozen_start if e.frozen is not None else None,
            json.dumps(record.incident.to_json()),
            json.dumps(record.meta),
        )
        db = self._db
        with self._lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                if stored_version is None:
                    db.execute(
                        f"INSERT INTO streams ({_STREAM_COLUMNS}) VALUES (?{', ?' * 13})", (e.stream_id, *values)
                    )
                else:
                    cursor = db.execute(
                        "UPDATE streams SET version = ?, events_ingested = ?, since_detection = ?, anomaly_count = ?, "
                        "detections = ?, last_event_at = ?, created_at = ?, last_detection_at = ?, history_next = ?, "
                        "history_epoch = ?, frozen_start = ?, incident = ?, meta = ? "
                        "WHERE stream_id = ? AND version = ?",
                        (*values, e.stream_id, stored_version),
                    )
                    if cursor.rowcount != 1:
                        raise StoreConflictError(f"stream {e.stream_id} changed while locked")
                if change.rewrite_history:
                    db.execute("DELETE FROM stream_events WHERE stream_id = ?", (e.stream_id,))
                db.executemany(
                    "INSERT OR REPLACE INTO stream_events VALUES (?, ?, ?)",
                    [(e.stream_id, first_seq + i, data) for i, data in enumerate(new_history)],
                )
                db.execute(
                    "DELETE FROM stream_events WHERE stream_id = ? AND seq < ?",
                    (e.stream_id, record.history_next - MAX_STATE_EVENTS),
                )
                if change.frozen_changed:
                    db.execute("DELETE FROM frozen_events WHERE stream_id = ?", (e.stream_id,))
                    db.executemany(
                        "INSERT INTO frozen_events VALUES (?, ?, ?)",
                        [(e.stream_id, i, data) for i, data in enumerate(e.frozen or ())],
                    )
                db.executemany(
                    "INSERT INTO anomalies (id, stream_id, detected_at, record, detected_ts, position, incident_id, "
                    "status) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            a["id"],
                            a["stream_id"],
                            a["detected_at"],
                            json.dumps(a),
                            a["detected_ts"],
                            a.get("position"),
                            a.get("incident_id"),
                            a.get("status", "open"),
                        )
                        for a in change.anomalies
                    ],
                )
                db.executemany(
                    "UPDATE anomalies SET incident_id = ?, record = json_set(record, '$.incident_id', ?) WHERE id = ?",
                    [(incident, incident, anomaly) for anomaly, incident in change.attach],
                )
                db.executemany(
                    "INSERT OR REPLACE INTO incidents VALUES (?, ?, ?, ?, ?)",
                    [(i["id"], i["stream_id"], i["status"], i["opened_ts"], json.dumps(i)) for i in change.incidents],
                )
                if change.detections:
                    db.executemany(
                        "INSERT INTO detections VALUES (?, ?, ?, ?, ?, ?)",
                        [(e.stream_id, *d) for d in change.detections],
                    )
                    db.execute(
                        "DELETE FROM detections WHERE stream_id = ? AND at < ?",
                        (e.stream_id, time.time() - TIMELINE_SECONDS),
                    )
                if change.events_at is not None and change.appended:
                    db.execute(
                        "INSERT INTO stream_minutes VALUES (?, ?, ?) ON CONFLICT (stream_id, minute) "
                        "DO UPDATE SET events = events + excluded.events",
                        (e.stream_id, int(change.events_at // 60), change.appended),
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        record.version += 1

    # -- reads ----------------------------------------------------------------------------------

    def _summary(self, row: tuple[Any, ...]) -> dict[str, Any]:
        """The stream's counters and settings, read without its events."""
        stream_id, version, ingested, _, anomalies, detections, last_event, created, last_det = row[:9]
        incident, meta = row[12], row[13]
        summary = stream_summary(
            StreamRecord(
                engine=StreamState(stream_id, events_ingested=ingested, detections=detections, anomaly_count=anomalies,
                                   last_event_at=last_event),
                incident=IncidentState.from_json(json.loads(incident) if incident else None),
                meta=json.loads(meta) if meta else {},
                version=version,
                created_at=created or 0.0,
                last_detection_at=last_det,
            )
        )  # fmt: skip
        with self._lock:
            summary["history_events"] = self._db.execute(
                "SELECT COUNT(*) FROM stream_events WHERE stream_id = ?", (stream_id,)
            ).fetchone()[0]
            summary["open_incidents"] = self._db.execute(
                "SELECT COUNT(*) FROM incidents WHERE stream_id = ? AND status = 'open'", (stream_id,)
            ).fetchone()[0]
        return summary

    def stream(self, stream_id: str) -> dict[str, Any] | None:
        row = self._row(stream_id)
        return self._summary(row) if row is not None else None

    def list_streams(self, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        with self._lock:
            total = self._db.execute("SELECT COUNT(*) FROM streams").fetchone()[0]
            rows = self._db.execute(
                f"SELECT {_STREAM_COLUMNS} FROM streams ORDER BY stream_id LIMIT ? OFFSET ?", (limit, offset)
            ).fetchall()
        return [self._summary(r) for r in rows], int(total)

    def recent_events(self, stream_id: str, limit: int) -> list[bytes]:
        with self._lock:
            rows = self._db.execute(
                "SELECT data FROM stream_events WHERE stream_id = ? ORDER BY seq DESC LIMIT ?", (stream_id, limit)
            ).fetchall()
        return [bytes(r[0]) for r in reversed(rows)]

    def list_anomalies(self, where: AnomalyFilter, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        clauses, args = [], []
        for column, value, op in (
            ("stream_id", where.stream_id, "="),
            ("status", where.status, "="),
            ("incident_id", where.incident_id, "="),
            ("detected_ts", where.since, ">="),
            ("detected_ts", where.until, "<="),
        ):
            if value is not None:
                clauses.append(f"{column} {op} ?")
                args.append(value)
        sql_where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        with self._lock:
            total = self._db.execute(f"SELECT COUNT(*) FROM anomalies {sql_where}", args).fetchone()[0]
            rows = self._db.execute(
                f"SELECT record, status FROM anomalies {sql_where} ORDER BY rowid DESC LIMIT ? OFFSET ?",
                [*args, limit, offset],
            ).fetchall()
        return [{**json.loads(r[0]), "status": r[1]} for r in rows], int(total)

    def get_anomaly(self, anomaly_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT record, status FROM anomalies WHERE id = ?", (anomaly_id,)).fetchone()
            if row is None:
                return None
            feedback = self._db.execute(
                "SELECT feedback_type, reason, created_at FROM feedback WHERE anomaly_id = ? ORDER BY rowid",
                (anomaly_id,),
            ).fetchall()
        record: dict[str, Any] = {**json.loads(row[0]), "status": row[1]}
        record["feedback"] = [{"feedback_type": f[0], "reason": f[1], "created_at": f[2]} for f in feedback]
        return record

    def add_feedback(self, anomaly_id: str, feedback_type: str, reason: str | None, status: str) -> bool:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                found = self._db.execute("UPDATE anomalies SET status = ? WHERE id = ?", (status, anomaly_id)).rowcount
                if found:
                    self._db.execute(
                        "INSERT INTO feedback (anomaly_id, feedback_type, reason) VALUES (?, ?, ?)",
                        (anomaly_id, feedback_type, reason),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return bool(found)

    def list_incidents(
        self, stream_id: str | None, status: str | None, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        clauses, args = [], []
        if stream_id is not None:
            clauses.append("stream_id = ?")
            args.append(stream_id)
        if status is not None:
            clauses.append("status = ?")
            args.append(status)
        sql_where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        with self._lock:
            total = self._db.execute(f"SELECT COUNT(*) FROM incidents {sql_where}", args).fetchone()[0]
            rows = self._db.execute(
                f"SELECT record FROM incidents {sql_where} ORDER BY opened_ts DESC LIMIT ? OFFSET ?",
                [*args, limit, offset],
            ).fetchall()
        return [json.loads(r[0]) for r in rows], int(total)

    def get_incident(self, incident_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT record FROM incidents WHERE id = ?", (incident_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def timeline(self, stream_id: str, since: float) -> tuple[list[tuple[int, int]], list[tuple[Any, ...]]]:
        with self._lock:
            minutes = self._db.execute(
                "SELECT minute, events FROM stream_minutes WHERE stream_id = ? AND minute >= ? ORDER BY minute",
                (stream_id, int(since // 60)),
            ).fetchall()
            detections = self._db.execute(
                "SELECT at, position, ncd, p_value, anomaly FROM detections WHERE stream_id = ? AND at >= ? "
                "ORDER BY at, position",
                (stream_id, since),
            ).fetchall()
        return [(int(m), int(n)) for m, n in minutes], [(a, p, n, pv, bool(x)) for a, p, n, pv, x in detections]


class _SqliteSession:
    def __init__(self, store: SqliteStore, stream_id: str, cached: StreamRecord | None) -> None:
        self._store = store
        row = store._row(stream_id)
        self._stored_version: int | None = None if row is None else int(row[1])
        self.record: StreamRecord | None = store._load(row, cached) if row is not None else None
        self._done = False

    def commit(self, change: Commit) -> None:
        if self._done:
            raise RuntimeError("a stream session commits once")
        self._done = True
        self._store._commit(change, self._stored_version)
