"""The store: the truth for every stream's state, anomalies and incidents.

The service holds no authority of its own. Each detect call works on one stream inside a
:meth:`Store.session`: the stream's lock is held (across threads, processes and, for a database
server, hosts), the stream's record is read (reusing the caller's cached copy when its version is
still the stored one), and the call's outcome is written in one transaction that bumps the version.
So any number of processes over one store answer as one would.

Three stores keep this contract: :class:`MemoryStore` (one process), ``SqliteStore`` (every
process on one machine) and ``PostgresStore`` (several hosts).
"""

from __future__ import annotations

import copy
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from driftlock.engine.settings import MAX_STATE_EVENTS
from driftlock.engine.stream import StreamState
from driftlock.incident_rule import IncidentState
from driftlock.service.console_sessions import ConsoleSessionStore, MemoryConsoleSessions
from driftlock.service.meta import StreamMeta, retention_cutoff
from driftlock.service.shapes import iso
from driftlock.service.webhooks import MemoryWebhooks, WebhookStore

__all__ = [
    "AnomalyFilter",
    "Commit",
    "MemoryStore",
    "RecordCache",
    "Store",
    "StoreConflictError",
    "StreamRecord",
    "StreamSession",
]

TIMELINE_SECONDS = 86_400
"""Detections and per-minute counts are kept this long, for the console's timelines."""


class StoreConflictError(RuntimeError):
    """A stream was written by someone else while this session held its lock: a bug, never normal."""


@dataclass
class StreamRecord:
    """One stream as the store keeps it: the engine's state, the incident bookkeeping, and settings."""

    engine: StreamState
    incident: IncidentState = field(default_factory=IncidentState)
    meta: StreamMeta = field(default_factory=lambda: StreamMeta())  # profile, mute, anchors, tuning: JSON
    version: int = 0
    created_at: float = field(default_factory=time.time)
    last_detection_at: float | None = None
    history_next: int = 0  # sequence number of the next history event (never reused)
    history_epoch: int = 0  # bumped whenever the history is rewritten

    @property
    def stream_id(self) -> str:
        return self.engine.stream_id

    @classmethod
    def new(cls, stream_id: str) -> StreamRecord:
        return cls(StreamState(stream_id))

    def events_in_memory(self) -> int:
        return len(self.engine.events) + len(self.engine.frozen or ())

    def bytes_in_memory(self) -> int:
        """The bytes of its events (history and frozen baseline), which is what grows with large events."""
        return sum(map(len, self.engine.events)) + sum(map(len, self.engine.frozen or ()))


@dataclass
class Commit:
    """What one call changed on one stream, written in one transaction."""

    record: StreamRecord
    appended: int = 0  # newest history events to write
    rewrite_history: bool = False  # the history was replaced (a thaw that forgets)
    trimmed: bool = False  # the oldest history events went past the stream's byte budget (a new history epoch)
    frozen_changed: bool = False
    anomalies: list[dict[str, Any]] = field(default_factory=list)  # new anomaly records
    incidents: list[dict[str, Any]] = field(default_factory=list)  # incident rows to write
    attach: list[tuple[str, str]] = field(default_factory=list)  # (anomaly id, incident id)
    detections: list[tuple[float, int, float, float, bool]] = field(default_factory=list)
    events_at: float | None = None  # when the appended events arrived (per-minute counts)


@dataclass(frozen=True)
class AnomalyFilter:
    stream_id: str | None = None
    status: str | None = None
    since: float | None = None  # detected at or after, epoch seconds
    until: float | None = None
    incident_id: str | None = None


class StreamSession(Protocol):
    """One stream, locked: ``record`` as stored (None for a new stream), then at most one commit."""

    record: StreamRecord | None

    def commit(self, change: Commit) -> None: ...


class Store(Protocol):
    def session(self, stream_id: str, cached: StreamRecord | None = None) -> AbstractContextManager[StreamSession]: ...
    def stream(self, stream_id: str) -> dict[str, Any] | None: ...
    def list_streams(self, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]: ...
    def recent_events(self, stream_id: str, limit: int) -> list[bytes]: ...
    def list_anomalies(self, where: AnomalyFilter, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]: ...
    def get_anomaly(self, anomaly_id: str) -> dict[str, Any] | None: ...
    def add_feedback(self, anomaly_id: str, feedback_type: str, reason: str | None, status: str) -> bool: ...
    def list_incidents(
        self, stream_id: str | None, status: str | None, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]: ...
    def get_incident(self, incident_id: str) -> dict[str, Any] | None: ...
    def timeline(self, stream_id: str, since: float) -> tuple[list[tuple[int, int]], list[tuple[Any, ...]]]: ...
    def expire(self, before: float | None, *, batch: int = 500, now: float | None = None) -> dict[str, int] | None:
        """Delete what is older than ``before`` (epoch seconds): anomalies (not of an open incident) and their
        feedback, resolved incidents, detections, per-minute counts, and streams idle since then (without an
        open incident), in transactions of at most ``batch`` rows. A stream whose meta has ``retention_seconds``
        is swept with its own cutoff, ``now`` (default: the time) minus it, instead; ``before`` None (retention
        forever) sweeps only such streams. The counts deleted, or None when another process is sweeping (one
        at a time)."""
        ...

    def ping(self) -> None: ...
    def close(self) -> None: ...
    @property
    def webhooks(self) -> WebhookStore: ...  # the console's webhooks (service/webhooks.py)
    @property
    def console_sessions(self) -> ConsoleSessionStore: ...  # service/console_sessions.py


def stream_summary(record: StreamRecord) -> dict[str, Any]:
    """The counters and settings of a stream, without its events (what listings show)."""
    e = record.engine
    return {
        "stream_id": e.stream_id,
        "events_ingested": e.events_ingested,
        "history_events": len(e.events),
        "detections": e.detections,
        "anomaly_count": e.anomaly_count,
        "last_event_at": e.last_event_at,
        "last_detection_at": record.last_detection_at,
        "created_at": record.created_at,
        "open_incident": (record.incident.open or {}).get("id"),
        "meta": record.meta,
    }


class RecordCache:
    """A bounded, thread-safe LRU of stream records in front of a store, bounded by the events held
    (any client can name new streams; a record holds up to baseline + window events and a frozen baseline),
    by their bytes (events may be large) and by the records held (about 2 KB each even with few events)."""

    def __init__(self, max_events: int = 200_000, max_records: int = 4096, max_bytes: int = 256 << 20) -> None:
        self.max_events = max_events
        self.max_records = max_records
        self.max_bytes = max_bytes
        self._records: OrderedDict[str, StreamRecord] = OrderedDict()
        self._sizes: dict[str, tuple[int, int]] = {}  # (events, bytes) when each record was put (it grows in place)
        self._events = 0
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, stream_id: str) -> StreamRecord | None:
        with self._lock:
            record = self._records.get(stream_id)
            if record is not None:
                self._records.move_to_end(stream_id)
            return record

    def put(self, record: StreamRecord) -> None:
        size = (record.events_in_memory(), record.bytes_in_memory())
        with self._lock:
            self._records.pop(record.stream_id, None)
            self._forget(record.stream_id)
            self._sizes[record.stream_id] = size
            self._records[record.stream_id] = record
            self._events += size[0]
            self._bytes += size[1]
            while (
                self._events > self.max_events or self._bytes > self.max_bytes or len(self._records) > self.max_records
            ) and len(self._records) > 1:
                evicted, _ = self._records.popitem(last=False)
                self._forget(evicted)

    def _forget(self, stream_id: str) -> None:
        events, size = self._sizes.pop(stream_id, (0, 0))
        self._events -= events
        self._bytes -= size

    def drop(self, stream_id: str) -> None:
        with self._lock:
            self._records.pop(stream_id, None)
            self._forget(stream_id)

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._records)


# -- memory ---------------------------------------------------------------------------------------


class _MemorySession:
    def __init__(self, store: MemoryStore, stream_id: str) -> None:
        self._store = store
        stored = store._streams.get(stream_id)
        self.record = _copy(stored) if stored is not None else None

    def commit(self, change: Commit) -> None:
        store = self._store
        record = change.record
        with store._lock:
            stored = store._streams.get(record.stream_id)
            if (stored.version if stored else 0) != record.version:
                raise StoreConflictError(f"stream {record.stream_id} changed while locked")
            record.version += 1
            store._streams[record.stream_id] = _copy(record)
            for anomaly in change.anomalies:
                store._anomalies[anomaly["id"]] = dict(anomaly)
            for anomaly_id, incident_id in change.attach:
                if anomaly_id in store._anomalies:
                    store._anomalies[anomaly_id]["incident_id"] = incident_id
            for row in change.incidents:
                store._incidents[row["id"]] = copy.deepcopy(row)
            timeline = store._timeline.setdefault(record.stream_id, deque(maxlen=20_000))
            timeline.extend(change.detections)
            if change.events_at is not None and change.appended:
                minute = int(change.events_at // 60)
                counts = store._minutes.setdefault(record.stream_id, {})
                counts[minute] = counts.get(minute, 0) + change.appended
            while len(store._anomalies) > store.max_anomalies:
                del store._anomalies[next(iter(store._anomalies))]


def _copy(record: StreamRecord) -> StreamRecord:
    engine = copy.copy(record.engine)
    engine.events = deque(record.engine.events, maxlen=MAX_STATE_EVENTS)
    engine.frozen = list(record.engine.frozen) if record.engine.frozen is not None else None
    return StreamRecord(
        engine=engine,
        incident=IncidentState.from_json(copy.deepcopy(record.incident.to_json())),
        meta=copy.deepcopy(record.meta),
        version=record.version,
        created_at=record.created_at,
        last_detection_at=record.last_detection_at,
        history_next=record.history_next,
        history_epoch=record.history_epoch,
    )


class MemoryStore:
    """Keeps everything in this process (``:memory:``); anomalies are capped so memory stays bounded."""

    def __init__(self, max_anomalies: int = 10_000) -> None:
        self.max_anomalies = max_anomalies
        self._streams: dict[str, StreamRecord] = {}
        self._anomalies: dict[str, dict[str, Any]] = {}
        self._incidents: dict[str, dict[str, Any]] = {}
        self._feedback: dict[str, list[dict[str, Any]]] = {}
        self._timeline: dict[str, deque[tuple[float, int, float, float, bool]]] = {}
        self._minutes: dict[str, dict[int, int]] = {}
        self._lock = threading.Lock()
        self._stream_locks: dict[str, threading.Lock] = {}
        self.webhooks = MemoryWebhooks()
        self.console_sessions = MemoryConsoleSessions()

    @contextmanager
    def session(self, stream_id: str, cached: StreamRecord | None = None) -> Iterator[StreamSession]:
        with self._lock:
            lock = self._stream_locks.setdefault(stream_id, threading.Lock())
        with lock:
            yield _MemorySession(self, stream_id)

    def stream(self, stream_id: str) -> dict[str, Any] | None:
        record = self._streams.get(stream_id)
        if record is None:
            return None
        summary = stream_summary(record)
        summary["open_incidents"] = sum(
            1 for i in list(self._incidents.values()) if i["stream_id"] == stream_id and i["status"] == "open"
        )
        return summary

    def list_streams(self, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        ids = sorted(self._streams)
        return [s for sid in ids[offset : offset + limit] if (s := self.stream(sid))], len(ids)

    def recent_events(self, stream_id: str, limit: int) -> list[bytes]:
        record = self._streams.get(stream_id)
        return list(record.engine.events)[-limit:] if record else []

    def _matches(self, a: Mapping[str, Any], where: AnomalyFilter) -> bool:
        return (
            where.stream_id in (None, a["stream_id"])
            and where.status in (None, a.get("status"))
            and where.incident_id in (None, a.get("incident_id"))
            and (where.since is None or a["detected_ts"] >= where.since)
            and (where.until is None or a["detected_ts"] <= where.until)
        )

    def list_anomalies(self, where: AnomalyFilter, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        with self._lock:
            rows = [dict(a) for a in reversed(self._anomalies.values()) if self._matches(a, where)]
        for row in rows:
            row["feedback"] = list(self._feedback.get(row["id"], []))
        return rows[offset : offset + limit], len(rows)

    def get_anomaly(self, anomaly_id: str) -> dict[str, Any] | None:
        row = self._anomalies.get(anomaly_id)
        if row is None:
            return None
        return {**row, "feedback": list(self._feedback.get(anomaly_id, []))}

    def add_feedback(self, anomaly_id: str, feedback_type: str, reason: str | None, status: str) -> bool:
        with self._lock:
            row = self._anomalies.get(anomaly_id)
            if row is None:
                return False
            self._feedback.setdefault(anomaly_id, []).append(
                {"feedback_type": feedback_type, "reason": reason, "created_at": _now_iso()}
            )
            row["status"] = status
            return True

    def list_incidents(
        self, stream_id: str | None, status: str | None, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        with self._lock:
            rows = [
                copy.deepcopy(i)
                for i in reversed(self._incidents.values())
                if stream_id in (None, i["stream_id"]) and status in (None, i["status"])
            ]
        rows.sort(key=lambda i: (-float(i["opened_ts"]), i["id"]))
        return rows[offset : offset + limit], len(rows)

    def get_incident(self, incident_id: str) -> dict[str, Any] | None:
        row = self._incidents.get(incident_id)
        return copy.deepcopy(row) if row is not None else None

    def timeline(self, stream_id: str, since: float) -> tuple[list[tuple[int, int]], list[tuple[Any, ...]]]:
        minutes = sorted((m, n) for m, n in self._minutes.get(stream_id, {}).items() if m * 60 >= since)
        detections = [d for d in self._timeline.get(stream_id, ()) if d[0] >= since]
        return minutes, detections

    def expire(self, before: float | None, *, batch: int = 500, now: float | None = None) -> dict[str, int] | None:
        counts = dict.fromkeys(("anomalies", "feedback", "incidents", "detections", "minutes", "streams"), 0)
        at = time.time() if now is None else now
        with self._lock:
            own = {sid: retention_cutoff(r.meta, at) for sid, r in self._streams.items()}
            own = {sid: cut for sid, cut in own.items() if cut is not None}

            def cutoff(stream_id: str) -> float | None:  # the stream's own, else the server's (None: keep)
                return own.get(stream_id, before)

            def older(ts: float, stream_id: str) -> bool:
                cut = cutoff(stream_id)
                return cut is not None and ts < cut

            open_ids = {i["id"] for i in self._incidents.values() if i["status"] == "open"}
            for anomaly_id, a in list(self._anomalies.items()):
                if older(a["detected_ts"], a["stream_id"]) and a.get("incident_id") not in open_ids:
                    del self._anomalies[anomaly_id]
                    counts["anomalies"] += 1
                    counts["feedback"] += len(self._feedback.pop(anomaly_id, ()))
            for incident_id, i in list(self._incidents.items()):
                if i["status"] == "resolved" and older(float(i.get("resolved_ts") or i["opened_ts"]), i["stream_id"]):
                    del self._incidents[incident_id]
                    counts["incidents"] += 1
            for stream_id, timeline in self._timeline.items():
                while timeline and older(timeline[0][0], stream_id):
                    timeline.popleft()
                    counts["detections"] += 1
            for stream_id, minutes in self._minutes.items():
                cut = cutoff(stream_id)
                for minute in [m for m in minutes if cut is not None and m < int(cut // 60)]:  # minutes over it
                    del minutes[minute]
                    counts["minutes"] += 1
            idle = [
                sid
                for sid, r in self._streams.items()
                if older(r.engine.last_event_at or r.created_at, sid) and r.incident.open is None
            ]
        for stream_id in idle:
            # under the stream's lock: no call is between its read and its commit
            with self.session(stream_id), self._lock:
                record = self._streams.get(stream_id)
                if record is None:
                    continue
                cut = retention_cutoff(record.meta, at)  # as it is now (a PATCH may have changed it)
                cut = before if cut is None else cut
                if cut is None or (record.engine.last_event_at or record.created_at) >= cut:
                    continue
                del self._streams[stream_id]
                self._timeline.pop(stream_id, None)
                self._minutes.pop(stream_id, None)
                counts["streams"] += 1
        return counts

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None


def _now_iso() -> str:
    return iso(time.time()) or ""
