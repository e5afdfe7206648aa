"""SQLite: the store of ``driftlock serve`` and of the embedded engine, shared by every process on a machine.

Every call on a stream runs under that stream's lock (:mod:`driftlock.service.locks`, which holds
across processes) and writes its outcome in one transaction (WAL journal, synchronous=NORMAL), so
several processes over one file answer as one would, and a killed process leaves the stream as its
last answered call left it. The schema carries its version (``PRAGMA user_version``) and is created
and upgraded by the store itself.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from driftlock.service.console_sessions import SqlConsoleSessions
from driftlock.service.locks import StreamLocks
from driftlock.service.sql import (
    STREAM_COLUMNS,
    Execute,
    SqlStore,
    advance_history,
    build_record,
    history_start,
    stream_values,
)
from driftlock.service.store import TIMELINE_SECONDS, Commit, StoreConflictError, StreamRecord, StreamSession
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
CREATE INDEX IF NOT EXISTS anomalies_by_time ON anomalies (detected_ts);
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


class SqliteStore(SqlStore):
    """Thread-safe and process-safe; one connection per process, guarded by a lock. The reads are
    :class:`~driftlock.service.sql.SqlStore`'s."""

    INSERTION_ORDER = "rowid"

    def __init__(self, path: str | Path, *, busy_timeout: float = BUSY_TIMEOUT_MS / 1000) -> None:
        """``busy_timeout``: seconds a statement waits for another process's write lock before it fails
        (``database is locked``, answered 503 with Retry-After by the server)."""
        self.path = str(path)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=busy_timeout)
        self._db.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._lock = threading.Lock()
        self._locks = StreamLocks(self.path + ".locks")
        self._migrate()
        self.webhooks = SqlWebhooks(self._webhook_connection, "?")  # the console's webhooks (service/webhooks.py)
        self.console_sessions = SqlConsoleSessions(self._webhook_connection, "?")  # service/console_sessions.py

    @contextmanager
    def _webhook_connection(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._db

    def _migrate(self) -> None:
        with self._writing() as execute:
            version = execute("PRAGMA user_version").fetchone()[0]
            exists = execute("SELECT 1 FROM sqlite_master WHERE name = 'streams'").fetchone()
            if version == 0 and exists:
                for statement in _UPGRADE_FROM_1:
                    execute(statement)
                version = 1
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path} was written by a newer driftlock (schema {version}, this one knows "
                    f"{SCHEMA_VERSION}): upgrade driftlock or use another --db"
                )
            for statement in _TABLES.split(";"):
                if statement.strip():
                    execute(statement)
            execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self._locks.close()

    @contextmanager
    def _reading(self) -> Iterator[Execute]:
        with self._lock:
            yield self._db.execute

    @contextmanager
    def _writing(self) -> Iterator[Execute]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db.execute
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # -- retention ---------------------------------------------------------------------------

    @contextmanager
    def _sweeping(self) -> Iterator[Callable[[], AbstractContextManager[Execute]] | None]:
        """One process of those on this file sweeps at a time: the one holding ``<db>.retention``'s lock."""
        fd = os.open(self.path + ".retention", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                yield None
                return
            yield self._writing
        finally:
            os.close(fd)  # releases the lock

    @contextmanager
    def _deleting_stream(self, stream_id: str) -> Iterator[Execute]:
        with self._locks.hold(stream_id), self._writing() as execute:
            yield execute

    # -- one stream, locked ------------------------------------------------------------------

    @contextmanager
    def session(self, stream_id: str, cached: StreamRecord | None = None) -> Iterator[StreamSession]:
        with self._locks.hold(stream_id):
            yield _SqliteSession(self, stream_id, cached)

    def _row(self, stream_id: str) -> tuple[Any, ...] | None:
        with self._reading() as execute:
            row: tuple[Any, ...] | None = execute(
                f"SELECT {STREAM_COLUMNS} FROM streams WHERE stream_id = ?", (stream_id,)
            ).fetchone()
            return row

    def _load(self, row: tuple[Any, ...], cached: StreamRecord | None) -> StreamRecord:
        stream_id, version, epoch = row[0], row[1], row[10]
        if cached is not None and cached.created_at != row[7]:  # deleted (retention) and made again since
            cached = None
        if cached is not None and cached.version == version:
            return cached
        with self._reading() as execute:
            if cached is not None and cached.history_epoch == epoch:  # the history only grew: read what is new
                rows = execute(
                    "SELECT data FROM stream_events WHERE stream_id = ? AND seq >= ? ORDER BY seq",
                    (stream_id, cached.history_next),
                ).fetchall()
                frozen = None
            else:
                rows = execute(
                    "SELECT data FROM stream_events WHERE stream_id = ? ORDER BY seq", (stream_id,)
                ).fetchall()
                frozen_rows = execute(
                    "SELECT data FROM frozen_events WHERE stream_id = ? ORDER BY seq", (stream_id,)
                ).fetchall()
                frozen = [bytes(r[0]) for r in frozen_rows]
        return build_record(row, (bytes(r[0]) for r in rows), frozen, cached=cached)

    def _commit(self, change: Commit, stored_version: int | None) -> None:
        record, e = change.record, change.record.engine
        new_history, first_seq = advance_history(change)
        values = stream_values(record)
        with self._writing() as execute:
            if stored_version is None:
                execute(f"INSERT INTO streams ({STREAM_COLUMNS}) VALUES (?{', ?' * 13})", (e.stream_id, *values))
            else:
                cursor = execute(
                    "UPDATE streams SET version = ?, events_ingested = ?, since_detection = ?, anomaly_count = ?, "
                    "detections = ?, last_event_at = ?, created_at = ?, last_detection_at = ?, history_next = ?, "
                    "history_epoch = ?, frozen_start = ?, incident = ?, meta = ? "
                    "WHERE stream_id = ? AND version = ?",
                    (*values, e.stream_id, stored_version),
                )
                if cursor.rowcount != 1:
                    raise StoreConflictError(f"stream {e.stream_id} changed while locked")
            db = self._db
            if change.rewrite_history:
                execute("DELETE FROM stream_events WHERE stream_id = ?", (e.stream_id,))
            db.executemany(
                "INSERT OR REPLACE INTO stream_events VALUES (?, ?, ?)",
                [(e.stream_id, first_seq + i, data) for i, data in enumerate(new_history)],
            )
            execute(
                "DELETE FROM stream_events WHERE stream_id = ? AND seq < ?",
                (e.stream_id, history_start(record)),
            )
            if change.frozen_changed:
                execute("DELETE FROM frozen_events WHERE stream_id = ?", (e.stream_id,))
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
                execute(
                    "DELETE FROM detections WHERE stream_id = ? AND at < ?",
                    (e.stream_id, time.time() - TIMELINE_SECONDS),
                )
            if change.events_at is not None and change.appended:
                execute(
                    "INSERT INTO stream_minutes VALUES (?, ?, ?) ON CONFLICT (stream_id, minute) "
                    "DO UPDATE SET events = events + excluded.events",
                    (e.stream_id, int(change.events_at // 60), change.appended),
                )
        record.version += 1


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
