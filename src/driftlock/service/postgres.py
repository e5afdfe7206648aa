"""PostgreSQL: the store of several ``driftlock serve`` replicas on several hosts (``--db postgresql://...``).

Every call on a stream is one transaction on one pooled connection that first takes the stream's
transaction-scoped advisory lock (``pg_advisory_xact_lock`` of a 64-bit hash of the stream id), so
whichever replica a load balancer hands a batch to, the stream's calls run one at a time, in order,
each seeing what the previous one wrote: any number of replicas answer as one would. The record is
read under the lock (the caller's cached copy when its version is still the stored one, else only
the history rows after its ``history_next`` when the history was not rewritten), and the call's
outcome is written and committed in that same transaction, checked against the version read. A
replica killed mid-call leaves an open transaction the server rolls back, and its lock goes with it.

The schema carries its version (table ``driftlock_schema``); the store creates and upgrades it,
under an advisory lock, so replicas starting together do not race.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import Any

import psycopg
from psycopg import conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from driftlock.service.console_sessions import SqlConsoleSessions
from driftlock.service.sql import STREAM_COLUMNS, Execute, SqlStore, advance_history, build_record, history_start
from driftlock.service.store import TIMELINE_SECONDS, Commit, StoreConflictError, StreamRecord, StreamSession
from driftlock.service.webhooks import SqlWebhooks

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "PostgresStore", "lock_key"]

MIGRATIONS: list[list[str]] = [
    [  # 1: streams with their history and frozen baseline, anomalies, feedback, incidents, timeline
        """CREATE TABLE streams (
            stream_id text PRIMARY KEY,
            version bigint NOT NULL DEFAULT 0,
            events_ingested bigint NOT NULL,
            since_detection bigint,
            anomaly_count bigint NOT NULL,
            detections bigint NOT NULL,
            last_event_at double precision,
            created_at double precision,
            last_detection_at double precision,
            history_next bigint NOT NULL DEFAULT 0,
            history_epoch bigint NOT NULL DEFAULT 0,
            frozen_start bigint,
            incident json,
            meta json
        )""",
        """CREATE TABLE stream_events (
            stream_id text NOT NULL,
            seq bigint NOT NULL,
            data bytea NOT NULL,
            PRIMARY KEY (stream_id, seq)
        )""",
        """CREATE TABLE frozen_events (
            stream_id text NOT NULL,
            seq bigint NOT NULL,
            data bytea NOT NULL,
            PRIMARY KEY (stream_id, seq)
        )""",
        """CREATE TABLE anomalies (
            seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
            id text PRIMARY KEY,
            stream_id text NOT NULL,
            detected_at text NOT NULL,
            detected_ts double precision,
            position bigint,
            incident_id text,
            status text NOT NULL DEFAULT 'open',
            record json NOT NULL
        )""",
        "CREATE INDEX anomalies_by_stream ON anomalies (stream_id, seq)",
        "CREATE INDEX anomalies_by_incident ON anomalies (incident_id)",
        "CREATE INDEX anomalies_by_time ON anomalies (detected_ts)",
        """CREATE TABLE feedback (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            anomaly_id text NOT NULL,
            feedback_type text NOT NULL,
            reason text,
            created_at text NOT NULL
        )""",
        "CREATE INDEX feedback_by_anomaly ON feedback (anomaly_id, seq)",
        """CREATE TABLE incidents (
            id text PRIMARY KEY,
            stream_id text NOT NULL,
            status text NOT NULL,
            opened_ts double precision NOT NULL,
            record json NOT NULL
        )""",
        "CREATE INDEX incidents_by_stream ON incidents (stream_id, status)",
        "CREATE INDEX incidents_by_opened ON incidents (opened_ts)",
        """CREATE TABLE detections (
            stream_id text NOT NULL,
            at double precision NOT NULL,
            position bigint NOT NULL,
            ncd double precision NOT NULL,
            p_value double precision NOT NULL,
            anomaly boolean NOT NULL
        )""",
        "CREATE INDEX detections_by_stream ON detections (stream_id, at)",
        """CREATE TABLE stream_minutes (
            stream_id text NOT NULL,
            minute bigint NOT NULL,
            events bigint NOT NULL,
            PRIMARY KEY (stream_id, minute)
        )""",
    ],
]
"""The schema's history: ``MIGRATIONS[n]`` takes a database from version ``n`` to ``n + 1``. Append, never edit."""

SCHEMA_VERSION = len(MIGRATIONS)

MIGRATION_LOCK = -0x64726966746C6F63  # "driftloc": the advisory lock held while the schema is created or upgraded
RETENTION_LOCK = -0x64726966745F7274  # "drift_rt": held by the one replica sweeping old rows (service/retention.py)
POOL_WAIT = 5.0
"""Seconds a call waits for a pooled connection: past it (the server is down, or every connection is busy)
the call fails with PoolTimeout, which the server answers 503 with Retry-After."""
THREAD_SLOTS = 4096

IDLE_IN_TRANSACTION_TIMEOUT = "60s"
"""A replica that stops mid-call (hung, not dead) loses its transaction and the stream's lock after this."""


def _configure(conn: psycopg.Connection[Any]) -> None:
    conn.autocommit = True
    conn.execute(f"SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION_TIMEOUT}'")
    conn.autocommit = False


def lock_key(stream_id: str) -> int:
    """The stream's advisory lock: a signed 64-bit hash of its id (two streams sharing one only wait)."""
    digest = hashlib.blake2b(stream_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def describe(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        params = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unparsable URL)"
    user = f"{params['user']}@" if params.get("user") else ""
    port = f":{params['port']}" if params.get("port") else ""
    return f"postgresql://{user}{params.get('host', '')}{port}/{params.get('dbname', '')}"


class PostgresStore(SqlStore):
    """Thread-safe, process-safe and host-safe; a pool of connections per process. The reads are
    :class:`~driftlock.service.sql.SqlStore`'s.

    ``max_size`` bounds this process's connections (each replica holds up to that many)."""

    INSERTION_ORDER = "seq"
    ROW_ID = "ctid"
    RESOLVED_TS = "(record->>'resolved_ts')::float8"
    NO_OPEN_INCIDENT = "incident->>'open' IS NULL"
    RETENTION_SECONDS = "(meta->>'retention_seconds')"

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 8, timeout: float = 30.0) -> None:
        self.url = url
        self.name = describe(url)
        self._pool = ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            open=False,
            kwargs={"application_name": "driftlock"},
            configure=_configure,
            name="driftlock",
        )
        try:
            psycopg.connect(url, connect_timeout=max(2, int(timeout)), autocommit=True).close()  # the reason, at once
            self._pool.open(wait=True, timeout=timeout)
        except (psycopg.Error, PoolTimeout) as exc:
            self._pool.close()
            raise RuntimeError(f"cannot connect to PostgreSQL at {self.name}: {exc}".strip()) from None
        # A stream's callers in this process queue here, not holding pooled connections while they wait.
        self._threads = [threading.Lock() for _ in range(THREAD_SLOTS)]
        try:
            self._migrate()
            # the console's webhooks (service/webhooks.py), created under the migration lock
            self.webhooks = SqlWebhooks(self._connection, "%s", (f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})",))
            self.console_sessions = SqlConsoleSessions(  # service/console_sessions.py, likewise
                self._connection, "%s", (f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})",)
            )
        except BaseException:
            self._pool.close()
            raise

    def _migrate(self) -> None:
        with self._connection() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS driftlock_schema (version integer NOT NULL)")
            row = conn.execute("SELECT version FROM driftlock_schema").fetchone()
            if row is None:
                conn.execute("INSERT INTO driftlock_schema (version) VALUES (0)")
            version = int(row[0]) if row is not None else 0
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.name} was written by a newer driftlock (schema {version}, this one knows "
                    f"{SCHEMA_VERSION}): upgrade driftlock or use another --db"
                )
            for statements in MIGRATIONS[version:]:
                for statement in statements:
                    conn.execute(statement)  # our own literals
            if version != SCHEMA_VERSION:
                conn.execute("UPDATE driftlock_schema SET version = %s", (SCHEMA_VERSION,))

    def schema_version(self) -> int:
        with self._connection() as conn:
            row = conn.execute("SELECT version FROM driftlock_schema").fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self._pool.close()

    # -- one stream, locked ------------------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection for reads, checked first: one the server dropped (a restart) is replaced."""
        conn = self._pool.getconn(POOL_WAIT)
        try:
            ConnectionPool.check_connection(conn)
        except psycopg.Error:
            self._pool.putconn(conn)  # broken: the pool replaces it
            conn = self._pool.getconn(POOL_WAIT)
        try:
            with conn:  # commit, or roll back on an exception
                yield conn
        finally:
            self._pool.putconn(conn)

    @contextmanager
    def session(self, stream_id: str, cached: StreamRecord | None = None) -> Iterator[StreamSession]:
        key = lock_key(stream_id)
        with self._threads[key % THREAD_SLOTS]:
            conn = self._pool.getconn(POOL_WAIT)
            try:
                try:
                    session = _PostgresSession(conn, stream_id, key, cached)
                except psycopg.OperationalError:
                    if not conn.broken:
                        raise
                    # dropped while pooled (a server restart): nothing was done on it, so once more on another
                    self._pool.putconn(conn)
                    conn = self._pool.getconn(POOL_WAIT)
                    session = _PostgresSession(conn, stream_id, key, cached)
                try:
                    yield session
                finally:
                    if not session.committed and not conn.closed:
                        conn.rollback()  # releases the lock; nothing was written
            finally:
                self._pool.putconn(conn)

    @contextmanager
    def _reading(self) -> Iterator[Execute]:
        with self._connection() as conn:
            yield lambda sql, args=(): conn.execute(sql.replace("?", "%s"), args)

    _writing = _reading  # the connection's transaction commits when the block ends

    @contextmanager
    def _sweeping(self) -> Iterator[Callable[[], AbstractContextManager[Execute]] | None]:
        """One replica sweeps at a time: the one whose connection holds the session-level RETENTION_LOCK. Each
        batch is a transaction of its own on that connection (the lock outlives them; a lost connection drops it)."""
        with self._connection() as conn:
            conn.commit()
            conn.autocommit = True
            try:
                held = conn.execute("SELECT pg_try_advisory_lock(%s)", (RETENTION_LOCK,)).fetchone()
                if not (held and held[0]):
                    yield None
                    return

                @contextmanager
                def writing() -> Iterator[Execute]:
                    with conn.transaction():
                        yield lambda sql, args=(): conn.execute(sql.replace("?", "%s"), args)

                try:
                    yield writing
                finally:
                    with suppress(psycopg.Error):
                        conn.execute("SELECT pg_advisory_unlock(%s)", (RETENTION_LOCK,))
            finally:
                with suppress(psycopg.Error):
                    conn.autocommit = False

    @contextmanager
    def _deleting_stream(self, stream_id: str) -> Iterator[Execute]:
        with self._connection() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(stream_id),))
            yield lambda sql, args=(): conn.execute(sql.replace("?", "%s"), args)


class _PostgresSession:
    """One stream in one open transaction that holds the stream's advisory lock."""

    def __init__(self, conn: psycopg.Connection[Any], stream_id: str, key: int, cached: StreamRecord | None) -> None:
        self._conn = conn
        self.committed = False
        with conn.pipeline():  # one round trip: the lock, then (a statement of its own, so seen after it) the record
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
            head = conn.cursor(binary=True)
            head.execute(_LOAD, {"id": stream_id, "since": cached.history_next if cached else 0, "all": cached is None})
        row = head.fetchone()
        self._stored_version: int | None = None if row is None else int(row[1])
        self.record: StreamRecord | None = self._load(row, cached) if row is not None else None

    def _load(self, row: Sequence[Any], cached: StreamRecord | None) -> StreamRecord:
        version, epoch, newer, held = row[1], row[10], row[14], row[15]
        if cached is not None and cached.version == version and cached.created_at == row[7]:
            return cached
        if cached is not None and (cached.history_epoch != epoch or cached.created_at != row[7]):
            # rewritten since cached (or deleted by retention and made again): read it whole
            with self._conn.cursor(binary=True) as again:
                again.execute(_LOAD, {"id": row[0], "since": 0, "all": True})
                found = again.fetchone()
            assert found is not None  # the lock is held: the row cannot go away
            newer, held = found[14:]
            cached = None if cached.created_at != row[7] else cached
        return build_record(row, newer, list(held) if held is not None else None, cached=cached)

    def commit(self, change: Commit) -> None:
        if self.committed:
            raise RuntimeError("a stream session commits once")
        self.committed = True
        try:
            self._write(change)
        except psycopg.errors.DivisionByZero:
            with suppress(psycopg.Error):
                self._conn.rollback()
            raise StoreConflictError(f"stream {change.record.stream_id} changed while locked") from None
        except BaseException:
            with suppress(psycopg.Error):  # a lost connection: the server rolls back
                self._conn.rollback()
            raise
        change.record.version += 1

    def _write(self, change: Commit) -> None:
        record, e = change.record, change.record.engine
        new_history, first_seq = advance_history(change)
        joined = dict(change.attach)
        anomalies = change.anomalies
        new_ids = {a["id"] for a in anomalies}
        earlier_joined = [(a, i) for a, i in joined.items() if a not in new_ids]
        incidents = list({i["id"]: i for i in change.incidents}.values())
        earlier = e.detections - len(change.detections)
        at, position, ncd, p_value, anomalous = (list(c) for c in zip(*change.detections, strict=True)) if (
            change.detections
        ) else ([], [], [], [], [])  # fmt: skip
        params: dict[str, Any] = {
            "id": e.stream_id,
            "stored": self._stored_version,
            "version": record.version + 1,
            "ingested": e.events_ingested,
            "since": e.since_detection,
            "anomalies": e.anomaly_count,
            "detections": e.detections,
            "last_event": e.last_event_at,
            "created": record.created_at,
            "last_detection": record.last_detection_at,
            "next": record.history_next,
            "epoch": record.history_epoch,
            "frozen_start": e.frozen_start if e.frozen is not None else None,
            "incident": json.dumps(record.incident.to_json()),
            "meta": json.dumps(record.meta),
            # history: the new events after every stored one; older rows go (all of them on a rewrite)
            "first": first_seq,
            "history": new_history,
            "trim": bool(new_history) or change.rewrite_history,
            "keep_from": history_start(record),
            "a_id": [a["id"] for a in anomalies],
            "a_stream": [a["stream_id"] for a in anomalies],
            "a_at": [a["detected_at"] for a in anomalies],
            "a_ts": [a["detected_ts"] for a in anomalies],
            "a_pos": [a.get("position") for a in anomalies],
            "a_inc": [joined.get(a["id"], a.get("incident_id")) for a in anomalies],
            "a_status": [a.get("status", "open") for a in anomalies],
            "a_record": [json.dumps(a) for a in anomalies],
            # anomalies stored by earlier calls that now belong to an incident (this call's carry theirs)
            "j_id": [a for a, _ in earlier_joined],
            "j_inc": [i for _, i in earlier_joined],
            "i_id": [i["id"] for i in incidents],
            "i_stream": [i["stream_id"] for i in incidents],
            "i_status": [i["status"] for i in incidents],
            "i_opened": [float(i["opened_ts"]) for i in incidents],
            "i_record": [json.dumps(i) for i in incidents],
            "d_at": at,
            "d_pos": position,
            "d_ncd": ncd,
            "d_p": p_value,
            "d_anomaly": anomalous,
            "expire": earlier // 50 != e.detections // 50,  # old detections go now and then
            "expired": time.time() - TIMELINE_SECONDS,
            "count": change.events_at is not None and change.appended > 0,
            "minute": int(change.events_at // 60) if change.events_at is not None else 0,
            "appended": change.appended,
        }
        conn = self._conn
        # One statement for every write and, in the same round trip, COMMIT. Its result divides by the
        # stream rows written, so a row that was not the one read (a write behind the lock's back)
        # fails the whole statement with division_by_zero, at run time, and nothing of it is applied.
        with conn.pipeline():
            conn.execute(_WRITE_NEW if self._stored_version is None else _WRITE, params)
            if change.frozen_changed:
                conn.execute("DELETE FROM frozen_events WHERE stream_id = %s", (e.stream_id,))
                if e.frozen:
                    conn.execute(_INSERT_FROZEN, (e.stream_id, list(e.frozen)))
            conn.commit()


_LOAD = f"""SELECT {STREAM_COLUMNS},
    (SELECT coalesce(array_agg(data ORDER BY seq), '{{}}') FROM stream_events e
     WHERE e.stream_id = s.stream_id AND e.seq >= %(since)s),
    CASE WHEN %(all)s THEN (SELECT coalesce(array_agg(data ORDER BY seq), '{{}}') FROM frozen_events f
     WHERE f.stream_id = s.stream_id) END
FROM streams s WHERE s.stream_id = %(id)s"""
"""The stream's row, its history from ``since``, and (``all``) its frozen baseline."""

_INSERT_FROZEN = (
    "INSERT INTO frozen_events (stream_id, seq, data) SELECT %s, t.n - 1, t.data "
    "FROM unnest(%b::bytea[]) WITH ORDINALITY AS t(data, n)"
)

_WRITES = """,
history AS (
    INSERT INTO stream_events (stream_id, seq, data)
    SELECT %(id)s, %(first)s + t.n - 1, t.data FROM unnest(%(history)b::bytea[]) WITH ORDINALITY AS t(data, n)
    ON CONFLICT (stream_id, seq) DO UPDATE SET data = excluded.data
), trimmed AS (
    DELETE FROM stream_events WHERE %(trim)s AND stream_id = %(id)s AND seq < %(keep_from)s
), found AS (
    INSERT INTO anomalies (id, stream_id, detected_at, detected_ts, position, incident_id, status, record)
    SELECT t.id, t.stream_id, t.at, t.ts, t.pos, t.inc, t.status, t.record::json
    FROM unnest(%(a_id)b::text[], %(a_stream)b::text[], %(a_at)b::text[], %(a_ts)b::float8[], %(a_pos)b::bigint[],
                %(a_inc)b::text[], %(a_status)b::text[], %(a_record)b::text[])
         AS t(id, stream_id, at, ts, pos, inc, status, record)
), joined AS (
    UPDATE anomalies SET incident_id = t.inc FROM unnest(%(j_id)b::text[], %(j_inc)b::text[]) AS t(id, inc)
    WHERE anomalies.id = t.id
), incident_rows AS (
    INSERT INTO incidents (id, stream_id, status, opened_ts, record)
    SELECT t.id, t.stream_id, t.status, t.opened, t.record::json
    FROM unnest(%(i_id)b::text[], %(i_stream)b::text[], %(i_status)b::text[], %(i_opened)b::float8[],
                %(i_record)b::text[]) AS t(id, stream_id, status, opened, record)
    ON CONFLICT (id) DO UPDATE SET stream_id = excluded.stream_id, status = excluded.status,
        opened_ts = excluded.opened_ts, record = excluded.record
), timeline AS (
    INSERT INTO detections (stream_id, at, position, ncd, p_value, anomaly)
    SELECT %(id)s, t.* FROM unnest(%(d_at)b::float8[], %(d_pos)b::bigint[], %(d_ncd)b::float8[], %(d_p)b::float8[],
                                   %(d_anomaly)b::boolean[]) AS t
), expired AS (
    DELETE FROM detections WHERE %(expire)s AND stream_id = %(id)s AND at < %(expired)s
), minutes AS (
    INSERT INTO stream_minutes (stream_id, minute, events) SELECT %(id)s, %(minute)s, %(appended)s WHERE %(count)s
    ON CONFLICT (stream_id, minute) DO UPDATE SET events = stream_minutes.events + excluded.events
)
SELECT 1 / (SELECT count(*)::int FROM written)"""

_VALUES = (
    "%(id)s, %(version)s, %(ingested)s, %(since)s, %(anomalies)s, %(detections)s, %(last_event)s, %(created)s, "
    "%(last_detection)s, %(next)s, %(epoch)s, %(frozen_start)s, %(incident)s, %(meta)s"
)
_WRITE_NEW = (
    f"WITH written AS (INSERT INTO streams ({STREAM_COLUMNS}) VALUES ({_VALUES}) "
    f"ON CONFLICT (stream_id) DO NOTHING RETURNING 1){_WRITES}"
)
_WRITE = (
    "WITH written AS (UPDATE streams SET version = %(version)s, events_ingested = %(ingested)s, "
    "since_detection = %(since)s, anomaly_count = %(anomalies)s, detections = %(detections)s, "
    "last_event_at = %(last_event)s, created_at = %(created)s, last_detection_at = %(last_detection)s, "
    "history_next = %(next)s, history_epoch = %(epoch)s, frozen_start = %(frozen_start)s, incident = %(incident)s, "
    f"meta = %(meta)s WHERE stream_id = %(id)s AND version = %(stored)s RETURNING 1){_WRITES}"
)
