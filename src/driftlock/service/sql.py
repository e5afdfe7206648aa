"""What the SQL stores share: the schema's stream columns, building a record from a row, and every read.

The shape is Django's ``SessionBase`` and its backends: :class:`SqlStore` holds the logic, and each
dialect supplies only what differs, namely how a connection is had (:meth:`SqlStore._reading`,
:meth:`SqlStore._writing`), how a stream is locked and written (``session``), and the name of the
column that orders rows as they were inserted. Queries here are written with ``?`` placeholders;
a dialect's executor translates them when its driver wants another style.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from driftlock.engine.settings import MAX_STATE_EVENTS
from driftlock.engine.stream import StreamState
from driftlock.incident_rule import IncidentState
from driftlock.service.meta import meta_of
from driftlock.service.shapes import iso
from driftlock.service.store import AnomalyFilter, Commit, StreamRecord, stream_summary

__all__ = [
    "STREAM_COLUMNS",
    "Cursor",
    "Execute",
    "SqlStore",
    "advance_history",
    "build_record",
    "history_start",
    "stream_values",
]

STREAM_COLUMNS = (
    "stream_id, version, events_ingested, since_detection, anomaly_count, detections, last_event_at, "
    "created_at, last_detection_at, history_next, history_epoch, frozen_start, incident, meta"
)
"""The ``streams`` table's columns, in the order :func:`build_record` and :func:`stream_values` use."""


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


Execute = Callable[..., Cursor]
"""``execute(sql, args=())``: one statement with ``?`` placeholders, on the connection a dialect lends."""


def _json(value: Any) -> Any:
    """A JSON column as Python: SQLite gives its text, PostgreSQL the decoded value."""
    if value is None:
        return None
    return json.loads(value) if isinstance(value, str | bytes) else value


def build_record(
    row: Sequence[Any], events: Iterable[bytes] | None, frozen: list[bytes] | None, *, cached: StreamRecord | None
) -> StreamRecord:
    """The record of a ``streams`` row (columns :data:`STREAM_COLUMNS`). ``events`` are the history rows read
    after ``cached.history_next`` when ``cached`` is of the same history epoch (they extend its history), else
    the whole history; ``frozen`` the frozen baseline, read only in the second case."""
    stream_id, version, ingested, since, anomalies, detections, last_event, created, last_det = row[:9]
    history_next, epoch, frozen_start, incident, meta = row[9:14]
    if cached is not None and cached.history_epoch == epoch:
        history = cached.engine.events
        history.extend(events or ())
        frozen = cached.engine.frozen
    else:
        history = deque(events or (), maxlen=MAX_STATE_EVENTS)
        frozen = frozen if frozen_start is not None else None
    engine = StreamState(
        stream_id=stream_id,
        events=history,
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
        incident=IncidentState.from_json(_json(incident)),
        meta=meta_of(_json(meta)),
        version=version,
        created_at=created or time.time(),
        last_detection_at=last_det,
        history_next=history_next,
        history_epoch=epoch,
    )


def advance_history(change: Commit) -> tuple[list[bytes], int]:
    """The history events a commit writes and the sequence number of the first, moving the record's
    ``history_next`` and ``history_epoch`` past them."""
    record, engine = change.record, change.record.engine
    if change.rewrite_history:
        new_history = list(engine.events)
        record.history_epoch += 1
    else:
        new_history = list(engine.events)[-change.appended :] if change.appended else []
    if change.frozen_changed or change.trimmed:  # other processes' cached copies are read again whole
        record.history_epoch += 1
    first_seq = record.history_next
    record.history_next += len(new_history)
    return new_history, first_seq


def history_start(record: StreamRecord) -> int:
    """The sequence number of the oldest history event a record keeps: older rows are deleted."""
    return record.history_next - len(record.engine.events)


def stream_values(record: StreamRecord) -> tuple[Any, ...]:
    """The ``streams`` row after a commit, without its ``stream_id`` (the rest of :data:`STREAM_COLUMNS`)."""
    e = record.engine
    return (
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


_SUMMARY = (
    f"SELECT {STREAM_COLUMNS}, "
    "(SELECT count(*) FROM stream_events e WHERE e.stream_id = s.stream_id), "
    "(SELECT count(*) FROM incidents i WHERE i.stream_id = s.stream_id AND i.status = 'open') "
    "FROM streams s"
)


def _where(pairs: Iterable[tuple[str, Any, str]]) -> tuple[str, list[Any]]:
    clauses, args = [], []
    for column, value, op in pairs:
        if value is not None:
            clauses.append(f"{column} {op} ?")
            args.append(value)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", args


def _anomaly(row: Sequence[Any]) -> dict[str, Any]:
    record: dict[str, Any] = dict(_json(row[0]))
    record["status"] = row[1]
    record["incident_id"] = row[2]  # joined to an incident after it was written
    return record


class SqlStore:
    """The reads of a SQL store. A dialect sets :attr:`INSERTION_ORDER` and lends connections."""

    INSERTION_ORDER = "rowid"
    """The column that orders the ``anomalies`` and ``feedback`` rows as they were inserted."""

    def _reading(self) -> AbstractContextManager[Execute]:
        raise NotImplementedError

    def _writing(self) -> AbstractContextManager[Execute]:
        """A connection in a transaction, committed when the block ends without an exception."""
        raise NotImplementedError

    def ping(self) -> None:
        with self._reading() as execute:
            execute("SELECT 1").fetchone()

    def _summary(self, row: Sequence[Any]) -> dict[str, Any]:
        """The stream's counters and settings, read without its events."""
        stream_id, version, ingested, _, anomalies, detections, last_event, created, last_det = row[:9]
        incident, meta, history, open_incidents = row[12:16]
        summary = stream_summary(
            StreamRecord(
                engine=StreamState(stream_id, events_ingested=ingested, detections=detections, anomaly_count=anomalies,
                                   last_event_at=last_event),
                incident=IncidentState.from_json(_json(incident)),
                meta=meta_of(_json(meta)),
                version=version,
                created_at=created or 0.0,
                last_detection_at=last_det,
            )
        )  # fmt: skip
        summary["history_events"] = int(history)
        summary["open_incidents"] = int(open_incidents)
        return summary

    def stream(self, stream_id: str) -> dict[str, Any] | None:
        with self._reading() as execute:
            row = execute(_SUMMARY + " WHERE s.stream_id = ?", (stream_id,)).fetchone()
        return self._summary(row) if row is not None else None

    def list_streams(self, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        with self._reading() as execute:
            total = execute("SELECT count(*) FROM streams").fetchone()[0]
            rows = execute(_SUMMARY + " ORDER BY s.stream_id LIMIT ? OFFSET ?", (limit, offset)).fetchall()
        return [self._summary(r) for r in rows], int(total)

    def recent_events(self, stream_id: str, limit: int) -> list[bytes]:
        with self._reading() as execute:
            rows = execute(
                "SELECT data FROM stream_events WHERE stream_id = ? ORDER BY seq DESC LIMIT ?", (stream_id, limit)
            ).fetchall()
        return [bytes(r[0]) for r in reversed(rows)]

    def list_anomalies(self, where: AnomalyFilter, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        sql_where, args = _where(
            (
                ("stream_id", where.stream_id, "="),
                ("status", where.status, "="),
                ("incident_id", where.incident_id, "="),
                ("detected_ts", where.since, ">="),
                ("detected_ts", where.until, "<="),
            )
        )
        with self._reading() as execute:
            total = execute(f"SELECT count(*) FROM anomalies {sql_where}", args).fetchone()[0]
            rows = execute(
                f"SELECT record, status, incident_id FROM anomalies {sql_where} "
                f"ORDER BY {self.INSERTION_ORDER} DESC LIMIT ? OFFSET ?",
                [*args, limit, offset],
            ).fetchall()
        return [_anomaly(r) for r in rows], int(total)

    def get_anomaly(self, anomaly_id: str) -> dict[str, Any] | None:
        with self._reading() as execute:
            row = execute("SELECT record, status, incident_id FROM anomalies WHERE id = ?", (anomaly_id,)).fetchone()
            if row is None:
                return None
            feedback = execute(
                "SELECT feedback_type, reason, created_at FROM feedback WHERE anomaly_id = ? "
                f"ORDER BY {self.INSERTION_ORDER}",
                (anomaly_id,),
            ).fetchall()
        record = _anomaly(row)
        record["feedback"] = [{"feedback_type": f[0], "reason": f[1], "created_at": f[2]} for f in feedback]
        return record

    def add_feedback(self, anomaly_id: str, feedback_type: str, reason: str | None, status: str) -> bool:
        with self._writing() as execute:
            found = execute("UPDATE anomalies SET status = ? WHERE id = ?", (status, anomaly_id)).rowcount
            if found:
                execute(
                    "INSERT INTO feedback (anomaly_id, feedback_type, reason, created_at) VALUES (?, ?, ?, ?)",
                    (anomaly_id, feedback_type, reason, iso(time.time())),
                )
        return bool(found)

    def list_incidents(
        self, stream_id: str | None, status: str | None, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        sql_where, args = _where((("stream_id", stream_id, "="), ("status", status, "=")))
        with self._reading() as execute:
            total = execute(f"SELECT count(*) FROM incidents {sql_where}", args).fetchone()[0]
            rows = execute(
                f"SELECT record FROM incidents {sql_where} ORDER BY opened_ts DESC, id LIMIT ? OFFSET ?",
                [*args, limit, offset],
            ).fetchall()
        return [dict(_json(r[0])) for r in rows], int(total)

    def get_incident(self, incident_id: str) -> dict[str, Any] | None:
        with self._reading() as execute:
            row = execute("SELECT record FROM incidents WHERE id = ?", (incident_id,)).fetchone()
        return dict(_json(row[0])) if row else None

    def timeline(self, stream_id: str, since: float) -> tuple[list[tuple[int, int]], list[tuple[Any, ...]]]:
        with self._reading() as execute:
            minutes = execute(
                "SELECT minute, events FROM stream_minutes WHERE stream_id = ? AND minute >= ? ORDER BY minute",
                (stream_id, int(since // 60)),
            ).fetchall()
            detections = execute(
                "SELECT at, position, ncd, p_value, anomaly FROM detections WHERE stream_id = ? AND at >= ? "
                "ORDER BY at, position",
                (stream_id, since),
            ).fetchall()
        return [(int(m), int(n)) for m, n in minutes], [(a, p, n, pv, bool(x)) for a, p, n, pv, x in detections]

    # -- retention ----------------------------------------------------------------------------------

    ROW_ID = "rowid"
    """A column (or pseudo-column) naming one row of a table without a key of its own (``detections``)."""
    RESOLVED_TS = "json_extract(record, '$.resolved_ts')"
    """An incident row's resolution time, from its JSON record."""
    NO_OPEN_INCIDENT = "json_extract(incident, '$.open') IS NULL"
    """A ``streams`` row without an open incident."""

    def _sweeping(self) -> AbstractContextManager[Callable[[], AbstractContextManager[Execute]] | None]:
        """Held while this process sweeps: a factory of write transactions, or None when another process sweeps."""
        raise NotImplementedError

    def _deleting_stream(self, stream_id: str) -> AbstractContextManager[Execute]:
        """A write transaction under the stream's lock, so no call on it is between its read and its commit."""
        raise NotImplementedError

    RETENTION_SECONDS = "json_extract(meta, '$.retention_seconds')"
    """A ``streams`` row's own retention (``meta.retention_seconds``), NULL when it follows ``--retention``."""

    def _expiry(self, before: float, scope: str, scope_args: tuple[Any, ...]) -> list[tuple[str, str, tuple[Any, ...]]]:
        """(what, statement, arguments) of each batch over the streams ``scope`` selects (``AND ...``, with
        ``scope_args``): ``?`` last is the batch size."""
        return [
            (
                "anomalies",
                "DELETE FROM anomalies WHERE id IN (SELECT id FROM anomalies WHERE detected_ts < ? AND "
                "(incident_id IS NULL OR incident_id NOT IN (SELECT id FROM incidents WHERE status = 'open')) "
                f"{scope} LIMIT ?)",
                (before, *scope_args),
            ),
            (
                "incidents",
                "DELETE FROM incidents WHERE id IN (SELECT id FROM incidents WHERE status = 'resolved' AND "
                f"opened_ts < ? AND coalesce({self.RESOLVED_TS}, opened_ts) < ? {scope} LIMIT ?)",
                (before, before, *scope_args),
            ),
            (
                "detections",
                f"DELETE FROM detections WHERE {self.ROW_ID} IN (SELECT {self.ROW_ID} FROM detections WHERE at < ? "
                f"{scope} LIMIT ?)",
                (before, *scope_args),
            ),
            (
                "minutes",
                "DELETE FROM stream_minutes WHERE (stream_id, minute) IN (SELECT stream_id, minute FROM stream_minutes "
                f"WHERE minute < ? {scope} LIMIT ?)",
                (int(before // 60), *scope_args),
            ),
        ]

    def expire(
        self, before: float | None, *, batch: int = 500, now: float | None = None, max_batches: int = 200
    ) -> dict[str, int] | None:
        """See :meth:`driftlock.service.store.Store.expire`. At most ``max_batches`` transactions a kind (and
        as many pages of streams with their own retention); the next sweep goes on where this one stopped."""
        at = time.time() if now is None else now
        with self._sweeping() as writing:
            if writing is None:
                return None
            counts = dict.fromkeys(("anomalies", "feedback", "incidents", "detections", "minutes", "streams"), 0)

            def run(statement: str, args: tuple[Any, ...]) -> int:
                deleted = 0
                for _ in range(max_batches):
                    with writing() as execute:
                        n = max(0, execute(statement, (*args, batch)).rowcount)
                    deleted += n
                    if n < batch:
                        break
                return deleted

            own = f"SELECT stream_id FROM streams WHERE {self.RETENTION_SECONDS} IS NOT NULL"
            if before is not None:  # the streams without their own retention: the server's
                for what, statement, args in self._expiry(before, f"AND stream_id NOT IN ({own})", ()):
                    counts[what] += run(statement, args)
            # the streams with their own, each with its cutoff (pages of ``batch`` streams)
            after = ""
            overrides: list[tuple[str, float]] = []
            for _ in range(max_batches):
                with writing() as execute:
                    rows = execute(
                        f"SELECT stream_id, {self.RETENTION_SECONDS} FROM streams WHERE {self.RETENTION_SECONDS} IS "
                        "NOT NULL AND stream_id > ? ORDER BY stream_id LIMIT ?",
                        (after, batch),
                    ).fetchall()
                for stream_id, seconds in rows:
                    cut = at - float(seconds)
                    overrides.append((stream_id, cut))
                    for what, statement, args in self._expiry(cut, "AND stream_id = ?", (stream_id,)):
                        counts[what] += run(statement, args)
                if len(rows) < batch:
                    break
                after = rows[-1][0]
            order = self.INSERTION_ORDER
            counts["feedback"] = run(
                f"DELETE FROM feedback WHERE {order} IN (SELECT f.{order} FROM feedback f "
                "LEFT JOIN anomalies a ON a.id = f.anomaly_id WHERE a.id IS NULL LIMIT ?)",
                (),
            )
            if before is not None:
                for _ in range(max_batches):
                    with writing() as execute:
                        rows = execute(
                            "SELECT stream_id FROM streams WHERE coalesce(last_event_at, created_at, 0) < ? AND "
                            f"{self.NO_OPEN_INCIDENT} AND {self.RETENTION_SECONDS} IS NULL LIMIT ?",
                            (before, batch),
                        ).fetchall()
                    deleted = sum(self._delete_stream(row[0], before, own=False) for row in rows)
                    counts["streams"] += deleted
                    if len(rows) < batch or not deleted:  # (a stream written since its read stays: no loop on it)
                        break
            for stream_id, cut in overrides:
                counts["streams"] += self._delete_stream(stream_id, cut, own=True)
        return counts

    def _delete_stream(self, stream_id: str, before: float, *, own: bool) -> int:
        """Delete an idle stream, if it still is (and still has, or has not, its own retention: ``own``)."""
        with self._deleting_stream(stream_id) as execute:
            gone = execute(
                "DELETE FROM streams WHERE stream_id = ? AND coalesce(last_event_at, created_at, 0) < ? AND "
                f"{self.NO_OPEN_INCIDENT} AND {self.RETENTION_SECONDS} IS {'NOT NULL' if own else 'NULL'}",
                (stream_id, before),
            ).rowcount
            if gone:
                for table in ("stream_events", "frozen_events", "detections", "stream_minutes"):
                    execute(f"DELETE FROM {table} WHERE stream_id = ?", (stream_id,))  # our own names
        return 1 if gone else 0
