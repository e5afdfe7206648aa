"""SQLite persistence for ``driftlock serve``: stream state and anomalies survive a restart, even ``kill -9``.

Every detect call commits in one transaction (WAL journal, synchronous=NORMAL), so a killed server
resumes with the events, counters and anomalies of its last answered request.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import deque
from pathlib import Path
from typing import Any

from driftlock.engine.settings import MAX_STATE_EVENTS
from driftlock.engine.stream import StreamState

__all__ = ["SqliteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    stream_id TEXT PRIMARY KEY,
    events_ingested INTEGER NOT NULL,
    since_detection INTEGER,
    anomaly_count INTEGER NOT NULL,
    detections INTEGER NOT NULL,
    last_event_at REAL
);
CREATE TABLE IF NOT EXISTS stream_events (
    stream_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (stream_id, seq)
);
CREATE TABLE IF NOT EXISTS anomalies (
    id TEXT PRIMARY KEY,
    stream_id TEXT NOT NULL,
    detected_at TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS anomalies_by_stream ON anomalies (stream_id);
CREATE TABLE IF NOT EXISTS feedback (
    anomaly_id TEXT NOT NULL,
    feedback_type TEXT NOT NULL,
    reason TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
"""


class SqliteStore:
    """Thread-safe; one connection guarded by a lock (SQLite serializes writers anyway)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def load_stream(self, stream_id: str) -> StreamState | None:
        with self._lock:
            row = self._db.execute(
                "SELECT events_ingested, since_detection, anomaly_count, detections, last_event_at "
                "FROM streams WHERE stream_id = ?",
                (stream_id,),
            ).fetchone()
            if row is None:
                return None
            events = self._db.execute(
                "SELECT data FROM stream_events WHERE stream_id = ? ORDER BY seq", (stream_id,)
            ).fetchall()
        return StreamState(
            stream_id=stream_id,
            events=deque((bytes(e[0]) for e in events), maxlen=MAX_STATE_EVENTS),
            events_ingested=row[0],
            since_detection=row[1],
            anomaly_count=row[2],
            detections=row[3],
            last_event_at=row[4],
        )

    def save_stream(self, state: StreamState, appended: int) -> None:
        """Write the counters and the ``appended`` newest events; forget events past the history."""
        new = list(state.events)[-appended:] if appended else []
        first_seq = state.events_ingested - len(new)
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT INTO streams VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(stream_id) DO UPDATE SET "
                "events_ingested=excluded.events_ingested, since_detection=excluded.since_detection, "
                "anomaly_count=excluded.anomaly_count, detections=excluded.detections, "
                "last_event_at=excluded.last_event_at",
                (
                    state.stream_id,
                    state.events_ingested,
                    state.since_detection,
                    state.anomaly_count,
                    state.detections,
                    state.last_event_at,
                ),
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO stream_events VALUES (?, ?, ?)",
                [(state.stream_id, first_seq + i, e) for i, e in enumerate(new)],
            )
            self._db.execute(
                "DELETE FROM stream_events WHERE stream_id = ? AND seq < ?",
                (state.stream_id, state.events_ingested - MAX_STATE_EVENTS),
            )
            self._db.execute("COMMIT")

    def list_stream_ids(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT stream_id FROM streams ORDER BY stream_id")]

    def add_anomalies(self, records: list[dict[str, Any]]) -> None:
        with self._lock:
            self._db.executemany(
                "INSERT INTO anomalies VALUES (?, ?, ?, ?)",
                [(r["id"], r["stream_id"], r["detected_at"], json.dumps(r)) for r in records],
            )

    def list_anomalies(self, stream_id: str | None, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        where, args = ("WHERE stream_id = ?", [stream_id]) if stream_id else ("", [])
        with self._lock:
            total = self._db.execute(f"SELECT COUNT(*) FROM anomalies {where}", args).fetchone()[0]
            rows = self._db.execute(
                f"SELECT record FROM anomalies {where} ORDER BY rowid DESC LIMIT ? OFFSET ?", [*args, limit, offset]
            ).fetchall()
        return [json.loads(r[0]) for r in rows], int(total)

    def get_anomaly(self, anomaly_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT record FROM anomalies WHERE id = ?", (anomaly_id,)).fetchone()
            if row is None:
                return None
            feedback = self._db.execute(
                "SELECT feedback_type, reason, created_at FROM feedback WHERE anomaly_id = ?", (anomaly_id,)
            ).fetchall()
        record: dict[str, Any] = json.loads(row[0])
        if feedback:
            record["feedback"] = [{"feedback_type": f[0], "reason": f[1], "created_at": f[2]} for f in feedback]
        return record

    def add_feedback(self, anomaly_id: str, feedback_type: str, reason: str | None) -> bool:
        with self._lock:
            if self._db.execute("SELECT 1 FROM anomalies WHERE id = ?", (anomaly_id,)).fetchone() is None:
                return False
            self._db.execute(
                "INSERT INTO feedback (anomaly_id, feedback_type, reason) VALUES (?, ?, ?)",
                (anomaly_id, feedback_type, reason),
            )
            self._db.execute(
                "UPDATE anomalies SET record = json_set(record, '$.status', ?) WHERE id = ?",
                ("acknowledged" if feedback_type == "confirmed" else "resolved", anomaly_id),
            )
            return True
