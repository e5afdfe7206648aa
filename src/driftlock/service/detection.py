"""The Driftlock API's semantics, without a web framework.

:class:`DetectionService` validates requests, runs detections over a :class:`~driftlock.service.store.Store`
and shapes answers as the Driftlock API does (API-AND-CBAD.md §1). It decides incidents
(:mod:`driftlock.service.incidents`) under each stream's lock, so that every process, thread and host
sending one stream is told of each incident exactly once: the detect answer marks the anomaly that
opened it. What it keeps in memory is a bounded cache of the store's records.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from driftlock._version import __version__
from driftlock.engine.explain import event_value
from driftlock.engine.settings import DEMO_SETTINGS, DetectionSettings, SettingsError, resolve_settings
from driftlock.engine.stream import MIN_BASELINE_SIZE, StreamState, WindowResult, detections, freeze, thaw
from driftlock.service import anchors, calibration, exports, profiles, tuning, validation
from driftlock.service.errors import ApiError
from driftlock.service.incidents import IncidentRule, merge_explanation
from driftlock.service.shapes import (
    anomaly_detail,
    anomaly_summary,
    go_duration,
    incident_mark,
    incident_view,
    iso,
)
from driftlock.service.store import AnomalyFilter, Commit, MemoryStore, RecordCache, Store, StreamRecord

__all__ = ["DetectionService", "IncidentListener"]

logger = logging.getLogger("driftlock.service")

MAX_EVENTS = 1000
MAX_DEMO_EVENTS = 200
MAX_EVENT_BYTES = validation.MAX_EVENT_BYTES
DEFAULT_STREAM = validation.DEFAULT_STREAM
FEEDBACK_TYPES = ("false_positive", "confirmed", "dismissed")
ANOMALY_STATUSES = ("open", "acknowledged", "resolved")
INCIDENT_STATUSES = ("open", "resolved", "muted")
FEEDBACK_STATUS = {"confirmed": "acknowledged", "false_positive": "resolved", "dismissed": "resolved"}
MAX_MUTE_SECONDS = 30 * 86_400

_T = TypeVar("_T")

IncidentListener = Callable[[str, dict[str, Any]], Any]
"""Called as ``listener("opened" | "resolved", incident)`` after the change is stored."""


@dataclass
class _Outcome:
    """What one detect call did on its stream."""

    results: list[tuple[WindowResult, dict[str, Any]]] = field(default_factory=list)  # anomalies + records
    changes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # ("opened"|"resolved", row)
    commit: Commit | None = None
    drift: dict[str, Any] | None = None  # the latest window against the stream's anchor


class DetectionService:
    """Thread-safe and process-safe over a shared store. Detections of different streams run
    concurrently; one stream's run in order."""

    def __init__(
        self,
        store: Store | None = None,
        *,
        cache: RecordCache | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store: Store = store if store is not None else MemoryStore()
        self.cache = cache if cache is not None else RecordCache()  # an empty cache is falsy (len 0)
        self.clock = clock  # wall time of auto-tuning's cooldown (tests pass their own)
        self.started = time.time()
        self._listeners: list[IncidentListener] = []
        self._listeners_lock = threading.Lock()
        self.totals = {"events": 0, "anomalies": 0, "detect_calls": 0}  # incidents: counted by listeners
        self._totals_lock = threading.Lock()

    def add_listener(self, listener: IncidentListener) -> None:
        with self._listeners_lock:
            self._listeners.append(listener)

    def _tell(self, changes: list[tuple[str, dict[str, Any]]]) -> None:
        with self._listeners_lock:
            listeners = list(self._listeners)
        for kind, row in changes:
            if row.get("muted"):
                continue
            for listener in listeners:
                try:
                    listener(kind, incident_view(row))
                except Exception:
                    logger.exception("incident listener %r raised; continuing", listener)

    # -- detection --------------------------------------------------------------------------

    def detect(self, body: Any, *, request_id: str, trace_ids: list[str] | None = None) -> dict[str, Any]:
        events, override = _validated(body, MAX_EVENTS)
        stream_id = _stream_id(body)
        override = dict(override or {})
        confirmations = override.pop("confirmations", None)
        if confirmations is not None and (
            isinstance(confirmations, bool) or not isinstance(confirmations, int) or not 1 <= confirmations <= 100
        ):
            raise ApiError(
                400, f"config_override.confirmations must be an integer from 1 to 100, got {confirmations!r}"
            )
        tokenizer = override.get("tokenizer", True)  # checked with the rest of the override, under the lock
        started = time.perf_counter()
        encoded = validation.encoded_events(events, tokenizer=tokenizer if isinstance(tokenizer, bool) else True)
        kept = list(enumerate(encoded))
        batch_id = str(uuid.uuid4())
        now = time.time()
        explicit_p = "p_value_threshold" in override
        with self.store.session(stream_id, self.cache.get(stream_id)) as session:
            record = session.record or StreamRecord.new(stream_id)
            profiled = _resolved(override, record.meta)  # config_override > the stream's profile > defaults
            rule = IncidentRule.for_sizes(profiled.baseline_size, profiled.window_size, confirmations)
            settings = profiled
            if not explicit_p:  # the profile's p-value threshold is the ceiling of the stream's calibration
                p_value = calibration.threshold(record.meta.get("calibration"), profiled.p_value_threshold)
                settings = replace(profiled, p_value_threshold=p_value)
            settings = replace(settings, confirm_p_value=rule.p_value)  # confirmations need p settled there
            try:
                outcome = self._run(record, kept, events, settings, rule, batch_id, now, trace_ids)
                outcome.drift = anchors.drift(record.meta, record.engine.events, profiled)
                assert outcome.commit is not None
                session.commit(outcome.commit)
            except BaseException:
                self.cache.drop(stream_id)
                raise
        self.cache.put(record)
        with self._totals_lock:  # detect calls of different streams run on concurrent threads
            self.totals["events"] += len(events)
            self.totals["anomalies"] += len(outcome.results)
            self.totals["detect_calls"] += 1
        self._tell(outcome.changes)
        elapsed = time.perf_counter() - started
        return _detect_response(record.engine, settings, outcome, len(events), batch_id, elapsed, request_id)

    def _run(
        self,
        record: StreamRecord,
        kept: list[tuple[int, bytes]],
        events: list[Any],
        settings: DetectionSettings,
        rule: IncidentRule,
        batch_id: str,
        now: float,
        trace_ids: list[str] | None,
    ) -> _Outcome:
        """Ingest the batch into ``record`` and apply the incident rule after every detection."""
        out = _Outcome()
        engine, state = record.engine, record.incident
        muted = float(record.meta.get("muted_until") or 0) > now
        frozen_before = engine.frozen  # freeze() makes a new list, thaw() drops it: identity says it changed
        rewrite = False
        commit = Commit(record, events_at=now)
        rows: dict[str, dict[str, Any]] = {}  # incident rows changed by this call
        ordinary: list[float] = []  # p-values of the detections outside incidents, for the calibration
        for result in detections(engine, [e for _, e in kept], settings):
            d = result.detection
            commit.detections.append((now, result.position, round(d.ncd, 6), round(d.p_value, 6), d.is_anomaly))
            if state.open is None:
                ordinary.append(d.p_value)
            record.last_detection_at = now
            anomaly = None
            if d.is_anomaly:
                index = kept[result.index][0]
                anomaly = _anomaly_record(result, events[index], index, record.stream_id, batch_id, now)
                if trace_ids is not None and index < len(trace_ids):
                    anomaly["trace_id"] = trace_ids[index]
                commit.anomalies.append(anomaly)
                out.results.append((result, anomaly))
            open_row = state.open
            if open_row is not None:
                if anomaly is not None:
                    open_row.update(
                        last_seen_ts=now,
                        anomaly_count=open_row["anomaly_count"] + 1,
                        explanation=merge_explanation(open_row["explanation"], anomaly["explanation"]),
                    )
                    if rule.confirms(d.p_value):  # only what could open an incident keeps one open
                        open_row["last_position"] = result.position
                    anomaly["incident_id"] = open_row["id"]
                    anomaly["incident"] = incident_mark(open_row["id"], False)
                    rows[open_row["id"]] = open_row
                span = result.position - open_row["opened_position"]
                quiet = result.position - open_row["last_position"]
                if quiet >= rule.quiet or span >= rule.max_span:
                    absorbed = quiet < rule.quiet
                    open_row.update(status="resolved", resolved_ts=now, resolution="absorbed" if absorbed else "quiet")
                    rows[open_row["id"]] = open_row
                    out.changes.append(("resolved", open_row))
                    state.open = None
                    thaw(engine, settings, forget=not absorbed)
                    rewrite = rewrite or not absorbed
                continue
            if anomaly is None or not rule.confirms(d.p_value):
                continue
            members = state.confirm(rule, result.position, anomaly["id"])
            if members is None:
                continue
            incident_id = str(uuid.uuid4())
            row = _incident_row(incident_id, record.stream_id, result.position, now, anomaly, len(members), muted)
            state.open = row
            rows[incident_id] = row
            out.changes.append(("opened", row))
            anomaly["incident_id"] = incident_id
            anomaly["incident"] = incident_mark(incident_id, not muted)
            commit.attach += [(m, incident_id) for m in members if m != anomaly["id"]]
            freeze(engine, settings)
        joined = dict(commit.attach)
        for anomaly in commit.anomalies:  # this call's confirmations of the incident it opened
            if anomaly["id"] in joined:
                anomaly["incident_id"] = joined[anomaly["id"]]
                anomaly["incident"] = incident_mark(joined[anomaly["id"]], False)
        engine.last_event_at = now
        if ordinary:
            record.meta["calibration"] = calibration.observe(record.meta.get("calibration"), ordinary)
        sizes = {"baseline_size": settings.baseline_size, "window_size": settings.window_size}
        if record.meta.get("sizes") != sizes:
            record.meta["sizes"] = sizes
        commit.appended = min(len(kept), len(engine.events))
        commit.rewrite_history = rewrite
        commit.frozen_changed = engine.frozen is not frozen_before or rewrite
        commit.incidents = list(rows.values())
        out.commit = commit
        return out

    def demo_detect(self, body: Any, *, request_id: str, remaining_calls: int, limit: int) -> dict[str, Any]:
        events, override = _validated(body, MAX_DEMO_EVENTS)
        try:
            settings = resolve_settings(override, base=DEMO_SETTINGS, permutation_cap=None)
        except SettingsError as exc:
            raise ApiError(400, f"invalid config_override: {exc}") from None
        started = time.perf_counter()
        state = StreamState("demo")
        found = [r for r in detections(state, validation.encoded_events(events), settings) if r.detection.is_anomaly]
        anomalies = [_anomaly_record(r, events[r.index], r.index, None, None, time.time()) for r in found]
        return {
            "success": True,
            "total_events": len(events),
            "anomaly_count": len(anomalies),
            "processing_time": go_duration(time.perf_counter() - started),
            "compression_algo": settings.compressor,
            "anomalies": [_public_anomaly(a) for a in anomalies],
            "request_id": request_id,
            "demo": {
                "message": "Demo detection: nothing is stored. Run `driftlock serve` for streams.",
                "remaining_calls": remaining_calls,
                "limit_per_minute": limit,
                "max_events_per_request": MAX_DEMO_EVENTS,
                "signup_url": "https://driftlock.net",
            },
        }

    # -- streams ----------------------------------------------------------------------------

    def _info(self, summary: Mapping[str, Any]) -> dict[str, Any]:
        meta = summary.get("meta") or {}
        need = profiles.stream_base(meta).min_events
        ingested = int(summary["events_ingested"])
        history = int(summary.get("history_events", ingested))
        muted = float(meta.get("muted_until") or 0)
        return {
            "stream_id": summary["stream_id"],
            "events_ingested": ingested,
            "status": "calibrating" if ingested < MIN_BASELINE_SIZE else "ready",
            "detection_ready": history >= need,
            "detection_events_needed": max(0, need - history),
            "progress_percent": min(100, 100 * ingested // MIN_BASELINE_SIZE),
            "detections": summary["detections"],
            "anomaly_count": summary["anomaly_count"],
            "last_event_at": iso(summary["last_event_at"]),
            "last_detection_at": iso(summary.get("last_detection_at")),
            "open_incidents": int(summary.get("open_incidents", 0)),
            "muted_until": iso(muted) if muted > time.time() else None,
            "profile": profiles.profile_name(meta),
        }

    def stream_info(self, stream_id: str) -> dict[str, Any] | None:
        summary = self.store.stream(stream_id)
        return self._info(summary) if summary is not None else None

    def list_streams(self, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        rows, total = self.store.list_streams(limit, offset)
        return {"streams": [self._info(r) for r in rows], "total": total, "limit": limit, "offset": offset}

    def recent_events(self, stream_id: str, limit: int) -> list[Any]:
        """The stream's newest events as the engine stores them (canonical and tokenized), oldest first."""
        if self.store.stream(stream_id) is None:
            raise ApiError(404, f"stream {stream_id} not found")
        return [event_value(e) for e in self.store.recent_events(stream_id, limit)]

    def stream_timeline(self, stream_id: str, since_seconds: int = 3600) -> dict[str, Any]:
        if self.store.stream(stream_id) is None:
            raise ApiError(404, f"stream {stream_id} not found")
        since = time.time() - since_seconds
        minutes, found = self.store.timeline(stream_id, since)
        incidents, _ = self.store.list_incidents(stream_id, None, 200, 0)
        return {
            "stream_id": stream_id,
            "minutes": [{"minute": iso(m * 60), "events": n} for m, n in minutes],
            "detections": [
                {"at": iso(at), "position": pos, "ncd": ncd, "p_value": p, "anomaly": bool(anomaly)}
                for at, pos, ncd, p, anomaly in found
            ],
            "incidents": [
                {
                    "id": i["id"],
                    "status": i["status"],
                    "opened_at": iso(i["opened_ts"]),
                    "resolved_at": iso(i.get("resolved_ts")),
                }
                for i in incidents
                if (i.get("resolved_ts") or time.time()) >= since
            ],
        }

    def mute_stream(self, stream_id: str, seconds: int) -> dict[str, Any]:
        if isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 <= seconds <= MAX_MUTE_SECONDS:
            raise ApiError(400, f"seconds must be an integer from 0 to {MAX_MUTE_SECONDS}")
        with self.store.session(stream_id, self.cache.get(stream_id)) as session:
            record = session.record
            if record is None:
                raise ApiError(404, f"stream {stream_id} not found")
            record.meta["muted_until"] = time.time() + seconds if seconds else None
            try:
                session.commit(Commit(record))
            except BaseException:
                self.cache.drop(stream_id)
                raise
        self.cache.put(record)
        info = self.stream_info(stream_id)
        assert info is not None
        return info

    # -- anomalies --------------------------------------------------------------------------

    def list_anomalies(self, query: Mapping[str, str], *, request_id: str) -> dict[str, Any]:
        limit = validation.int_param(query, "limit", 50, 1, 100)
        offset = validation.int_param(query, "offset", 0, 0, 10**100)  # the contract sets no maximum
        status = query.get("status") or None
        if status is not None and status not in ANOMALY_STATUSES:
            raise ApiError(400, f"status must be one of {', '.join(ANOMALY_STATUSES)}, got {status!r}")
        where = AnomalyFilter(
            stream_id=query.get("stream_id") or None,
            status=status,
            since=_time_param(query, "from"),
            until=_time_param(query, "to"),
        )
        rows, total = self.store.list_anomalies(where, limit, min(offset, 2**62))  # SQL takes int64: past every row
        return {
            "anomalies": [anomaly_summary(r) for r in rows],
            "total": total,
            "limit": limit,
            "offset": offset,
            "request_id": request_id,
        }

    def get_anomaly(self, anomaly_id: str, *, request_id: str) -> dict[str, Any]:
        record = self.store.get_anomaly(anomaly_id)
        if record is None:
            raise ApiError(404, f"anomaly {anomaly_id} not found")
        return {**anomaly_detail(record), "request_id": request_id}

    def feedback(self, anomaly_id: str, body: Any, *, request_id: str) -> dict[str, Any]:
        feedback_type, reason = _feedback_body(body)
        if not self.store.add_feedback(anomaly_id, feedback_type, reason, FEEDBACK_STATUS[feedback_type]):
            raise ApiError(404, f"anomaly {anomaly_id} not found")
        anomaly = self.store.get_anomaly(anomaly_id)
        tuned = self._learn(anomaly["stream_id"], [anomaly], feedback_type) if anomaly else None
        answer = {"success": True, "message": "Feedback recorded", "request_id": request_id}
        if tuned is not None:
            answer["tuned"] = tuned
        return answer

    def _learn(
        self, stream_id: str | None, anomalies: list[dict[str, Any]], feedback_type: str
    ) -> dict[str, Any] | None:
        """Count feedback on the stream's anomalies and let auto-tuning act on it (:mod:`.tuning`);
        the tuning history entry of a change, or None."""
        if not stream_id or not anomalies:
            return None
        now = self.clock()

        def learn(record: StreamRecord) -> dict[str, Any] | None:
            for anomaly in anomalies:
                tuning.record_feedback(record.meta, anomaly, feedback_type, now)
            return tuning.tune(record.meta, now)

        try:
            return self._on_stream(stream_id, learn)
        except ApiError:  # the anomaly's stream is gone: the feedback itself is recorded
            return None

    # -- incidents --------------------------------------------------------------------------

    def list_incidents(
        self, stream_id: str | None = None, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> dict[str, Any]:
        if status is not None and status not in INCIDENT_STATUSES:
            raise ApiError(400, f"status must be one of {', '.join(INCIDENT_STATUSES)}, got {status!r}")
        rows, total = self.store.list_incidents(stream_id, status, limit, offset)
        return {"incidents": [incident_view(r) for r in rows], "total": total, "limit": limit, "offset": offset}

    def get_incident(self, incident_id: str, *, anomalies: int = 100) -> dict[str, Any]:
        row = self.store.get_incident(incident_id)
        if row is None:
            raise ApiError(404, f"incident {incident_id} not found")
        members, total = self.store.list_anomalies(AnomalyFilter(incident_id=incident_id), anomalies, 0)
        return {
            **incident_view(row),
            "anomalies": [
                {**anomaly_summary(a), "why": a["why"], "trace_id": a.get("trace_id"), "event": a.get("event")}
                for a in members
            ],
            "anomalies_total": total,
        }

    def incident_feedback(self, incident_id: str, body: Any) -> dict[str, Any]:
        """Feedback on an incident applies to each of its anomalies; a false positive (or a dismissal)
        also resolves it, and its baseline then learns the traffic instead of forgetting it."""
        feedback_type, reason = _feedback_body(body)
        entry = {"feedback_type": feedback_type, "reason": reason, "created_at": iso(time.time())}
        if feedback_type == "confirmed":
            row = self._change_incident(incident_id, lambda r: r.setdefault("feedback", []).append(entry), None)
        else:
            row = self._change_incident(
                incident_id, lambda r: r.setdefault("feedback", []).append(entry), "feedback", forget=False
            )
        members, _ = self.store.list_anomalies(AnomalyFilter(incident_id=incident_id), 10_000, 0)
        for anomaly in members:
            self.store.add_feedback(anomaly["id"], feedback_type, reason, FEEDBACK_STATUS[feedback_type])
        tuned = self._learn(row["stream_id"], members, feedback_type)
        answer = {"success": True, "message": "Feedback recorded", "incident": row}
        if tuned is not None:
            answer["tuned"] = tuned
        return answer

    def resolve_incident(self, incident_id: str) -> dict[str, Any]:
        return self._change_incident(incident_id, lambda r: None, "manual")

    def _change_incident(
        self,
        incident_id: str,
        change: Callable[[dict[str, Any]], Any],
        resolution: str | None,
        *,
        forget: bool = True,
    ) -> dict[str, Any]:
        stored = self.store.get_incident(incident_id)
        if stored is None:
            raise ApiError(404, f"incident {incident_id} not found")
        stream_id = stored["stream_id"]
        changes: list[tuple[str, dict[str, Any]]] = []
        with self.store.session(stream_id, self.cache.get(stream_id)) as session:
            record = session.record
            if record is None:  # pragma: no cover - an incident's stream always exists
                raise ApiError(404, f"stream {stream_id} not found")
            is_open = record.incident.open is not None and record.incident.open["id"] == incident_id
            row = record.incident.open if is_open else self.store.get_incident(incident_id)
            assert row is not None
            change(row)
            commit = Commit(record, incidents=[row])
            if resolution is not None and row["status"] != "resolved":
                row.update(status="resolved", resolved_ts=time.time(), resolution=resolution)
                changes.append(("resolved", row))
                if is_open:
                    record.incident.open = None
                    thaw(record.engine, _stream_settings(record), forget=forget)
                    commit.rewrite_history = forget
                    commit.frozen_changed = True
            try:
                session.commit(commit)
            except BaseException:
                self.cache.drop(stream_id)
                raise
        self.cache.put(record)
        self._tell(changes)
        return incident_view(row)

    # -- profiles, tuning, anchors ------------------------------------------------------------

    def _on_stream(self, stream_id: str, change: Callable[[StreamRecord], _T], *, create: bool = False) -> _T:
        """Run ``change`` on the stream's record under its lock and store what it did to ``meta``.
        A stream that does not exist is 404, or made when ``create``. ``change`` may raise ApiError:
        then nothing is stored."""
        with self.store.session(stream_id, self.cache.get(stream_id)) as session:
            record = session.record
            if record is None:
                if not create:
                    raise ApiError(404, f"stream {stream_id} not found")
                record = StreamRecord.new(stream_id)
            try:
                result = change(record)
                session.commit(Commit(record))
            except BaseException:
                self.cache.drop(stream_id)  # the cached record may hold the change that was not stored
                raise
        self.cache.put(record)
        return result

    def _meta(self, stream_id: str) -> dict[str, Any]:
        summary = self.store.stream(stream_id)
        if summary is None:
            raise ApiError(404, f"stream {stream_id} not found")
        return dict(summary.get("meta") or {})

    def get_profile(self, stream_id: str) -> dict[str, Any]:
        return profiles.profile_view(self._meta(stream_id))

    def update_profile(self, stream_id: str, body: Any) -> dict[str, Any]:
        """PATCH: any of profile, auto_tune_enabled, adaptive_window_enabled. A stream not seen yet is
        made with them (SDK users set a profile before they send)."""
        said = self._on_stream(stream_id, lambda record: profiles.patch_profile(record.meta, body), create=True)
        return {
            "success": True,
            "message": f"Profile updated for stream {stream_id}: {', '.join(said)}",
            **profiles.profile_view(self._meta(stream_id)),
        }

    def get_tuning(self, stream_id: str) -> dict[str, Any]:
        meta = self._meta(stream_id)
        return tuning.tuning_view(meta, profiles.profile_view(meta))

    def list_profiles(self) -> dict[str, Any]:
        return {"profiles": profiles.profile_listing()}

    def anchor_settings(self, stream_id: str) -> dict[str, Any]:
        return {"stream_id": stream_id, **anchors.anchor_settings(self._meta(stream_id))}

    def anchor_details(self, stream_id: str) -> dict[str, Any]:
        return anchors.anchor_details(self._meta(stream_id), stream_id)

    def reset_anchor(self, stream_id: str, body: Any) -> dict[str, Any]:
        """A new anchor of the known-good ``events`` (without events: the stream's current baseline).
        412 while the stream is calibrating; 409 over an active anchor unless ``force_reset``."""
        if not isinstance(body, Mapping):
            raise ApiError(400, 'body must be {"events": [...known-good events], "force_reset": true|false}')
        force = body.get("force_reset", False)
        if not isinstance(force, bool):
            raise ApiError(400, f"force_reset must be true or false, got {force!r}")
        given = _validated(body, MAX_EVENTS)[0] if body.get("events") is not None else None

        def reset(record: StreamRecord) -> dict[str, Any]:
            ingested = record.engine.events_ingested
            if ingested < MIN_BASELINE_SIZE:
                raise ApiError(
                    412,
                    f"stream {stream_id} is not calibrated ({ingested} of {MIN_BASELINE_SIZE} events): "
                    "send its traffic first, then reset its anchor",
                )
            current = anchors.active(record.meta)
            if current is not None and not force:
                raise ApiError(
                    409,
                    f"stream {stream_id} has an active anchor ({current['id']}): send force_reset: true to replace it",
                )
            settings = _stream_settings_of(record.meta)
            if given is not None:
                events = validation.encoded_events(given, tokenizer=settings.tokenizer)
            else:
                history = list(record.engine.events)
                events = list(record.engine.frozen or history[-settings.min_events : -settings.window_size])
            if len(events) < anchors.MIN_ANCHOR_EVENTS:
                raise ApiError(400, f"an anchor needs at least {anchors.MIN_ANCHOR_EVENTS} events, got {len(events)}")
            anchor = anchors.make_anchor(events, settings, time.time())
            record.meta["anchor"] = anchor
            return anchor

        anchor = self._on_stream(stream_id, reset, create=True)  # a stream not seen yet: 412, nothing stored
        return {
            **anchors.anchor_details(self._meta(stream_id), stream_id),
            "success": True,
            "message": f"Anchor {anchor['id']} created from {anchor['event_count']} events",
            "anchor_id": anchor["id"],
        }

    def deactivate_anchor(self, stream_id: str) -> dict[str, Any]:
        def deactivate(record: StreamRecord) -> str | None:
            current = anchors.active(record.meta)
            record.meta.pop("anchor", None)
            return str(current["id"]) if current is not None else None

        was = self._on_stream(stream_id, deactivate)
        message = f"Anchor {was} deactivated" if was else f"stream {stream_id} had no active anchor"
        return {"success": True, "message": message, "has_active_anchor": False}

    # -- exports ----------------------------------------------------------------------------

    def export_anomalies(self, anomaly_ids: Any, fmt: Any) -> dict[str, Any]:
        """A completed export job of the anomalies (their id is its result's address: :mod:`.exports`)."""
        fmt = exports.check_format(fmt)
        if (
            not isinstance(anomaly_ids, list)
            or not anomaly_ids
            or not all(isinstance(i, str) and i for i in anomaly_ids)
        ):
            raise ApiError(400, "anomaly_ids must be a non-empty array of anomaly ids")
        if len(anomaly_ids) > exports.MAX_EXPORT_ANOMALIES:
            raise ApiError(400, f"too many anomaly_ids: max {exports.MAX_EXPORT_ANOMALIES} per export")
        ids = list(dict.fromkeys(anomaly_ids))
        missing = [i for i in ids if self.store.get_anomaly(i) is None]
        if missing:
            raise ApiError(404, f"anomaly(ies) not found: {', '.join(missing[:10])}")
        job_id = exports.encode_job(fmt, ids)
        return {
            "job_id": job_id,
            "status": "completed",
            "format": fmt,
            "anomaly_count": len(ids),
            "message": f"Export of {len(ids)} anomaly(ies) as {fmt} is ready: GET /v1/exports/{job_id}",
            "created_at": iso(time.time()),
        }

    def get_export(self, job_id: str) -> dict[str, Any]:
        fmt, ids = exports.decode_job(job_id)
        found, missing = [], []
        for anomaly_id in ids:
            record = self.store.get_anomaly(anomaly_id)
            if record is None:
                missing.append(anomaly_id)
            else:
                found.append(anomaly_detail(record))
        return exports.render(fmt, job_id, found, missing)

    # -- health -----------------------------------------------------------------------------

    def health(self, *, request_id: str) -> dict[str, Any]:
        return {
            "success": True,
            "ok": True,
            "request_id": request_id,
            "library_status": "healthy",
            "version": __version__,
            "available_algos": ["zstd", "zlab", "gzip"],
            "openzl_available": False,
            "database": "connected",
        }

    def readiness(self, *, request_id: str) -> tuple[bool, dict[str, Any]]:
        try:
            self.store.ping()
        except Exception as exc:
            return False, {
                "ready": False,
                "database": "disconnected",
                "error": f"{type(exc).__name__}: {exc}",
                "request_id": request_id,
            }
        return True, {
            "ready": True,
            "database": "connected",
            "checks": {"database": "ok", "cbad_library": "ok"},
            "request_id": request_id,
        }


# -- request validation and shapes ------------------------------------------------------------------


def _validated(body: Any, max_events: int) -> tuple[list[Any], Mapping[str, Any] | None]:
    if not isinstance(body, Mapping):
        raise ApiError(400, "invalid json: request body must be a JSON object")
    events = body.get("events")
    if not isinstance(events, list) or not events:
        raise ApiError(400, "events required: a non-empty array")
    if len(events) > max_events:
        raise ApiError(400, f"too many events: max {max_events} per request")
    for index, event in enumerate(events):
        if event is None or event == "" or event == {}:
            raise ApiError(400, f"event {index} is empty")
    override = body.get("config_override")
    if override is not None and not isinstance(override, Mapping):
        raise ApiError(400, "invalid config_override: must be an object")
    return events, override


def _stream_id(body: Mapping[str, Any]) -> str:
    return validation.stream_id(body.get("stream_id"))


def _resolved(override: Mapping[str, Any], meta: Mapping[str, Any] | None) -> DetectionSettings:
    """The settings of a detect call: ``config_override`` over the stream's profile (``meta``; None: the
    defaults)."""
    try:
        return resolve_settings(override, base=profiles.stream_base(meta) if meta is not None else None)
    except SettingsError as exc:
        raise ApiError(400, f"invalid config_override: {exc}") from None


def _stream_settings_of(meta: Mapping[str, Any]) -> DetectionSettings:
    """The stream's settings without a request (its profile, or the defaults), capped as detect caps them."""
    return resolve_settings(None, base=profiles.stream_base(meta))


def _stream_settings(record: StreamRecord) -> DetectionSettings:
    """The sizes the stream's last detection used (the balanced profile before any)."""
    sizes = record.meta.get("sizes") or {}
    try:
        return resolve_settings({k: v for k, v in sizes.items() if k in ("baseline_size", "window_size")})
    except SettingsError:
        return resolve_settings(None)


def _feedback_body(body: Any) -> tuple[str, str | None]:
    if not isinstance(body, Mapping) or body.get("feedback_type") not in FEEDBACK_TYPES:
        raise ApiError(400, f"feedback_type must be one of {', '.join(FEEDBACK_TYPES)}")
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise ApiError(400, "reason must be a string")
    return str(body["feedback_type"]), reason


def _time_param(query: Mapping[str, str], name: str) -> float | None:
    from datetime import datetime

    raw = query.get(name)
    if not raw:
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ApiError(400, f"{name} must be an ISO-8601 date-time such as 2025-01-31T23:59:59Z, got {raw!r}") from None


def _anomaly_record(
    found: WindowResult, event: Any, index: int, stream_id: str | None, batch_id: str | None, now: float
) -> dict[str, Any]:
    explanation = found.explanation.as_dict() if found.explanation else {}
    if found.explanation:
        explanation["summary"] = found.why
    return {
        "id": str(uuid.uuid4()),
        "index": index,
        "position": found.position,
        "metrics": found.detection.metrics(),
        "event": event,
        "why": found.why,
        "explanation": explanation,
        "detected": True,
        "stream_id": stream_id,
        "batch_id": batch_id,
        "status": "open",
        "detected_at": iso(now),
        "detected_ts": now,
        "incident_id": None,
        "incident": None,
    }


def _public_anomaly(record: Mapping[str, Any]) -> dict[str, Any]:
    """An anomaly as the detect answer lists it."""
    return {
        "id": record["id"],
        "index": record["index"],
        "metrics": record["metrics"],
        "event": record["event"],
        "why": record["why"],
        "detected": True,
        "explanation": record["explanation"],
        "incident": record.get("incident"),
    }


def _incident_row(
    incident_id: str, stream_id: str, position: int, now: float, anomaly: Mapping[str, Any], members: int, muted: bool
) -> dict[str, Any]:
    return {
        "id": incident_id,
        "stream_id": stream_id,
        "status": "muted" if muted else "open",
        "opened_ts": now,
        "last_seen_ts": now,
        "resolved_ts": None,
        "resolution": None,
        "anomaly_count": members,
        "opened_position": position,
        "last_position": position,
        "opened_by": anomaly["id"],
        "muted": muted,
        "explanation": merge_explanation(None, anomaly["explanation"]),
        "feedback": [],
    }


def _detect_response(
    state: StreamState,
    settings: DetectionSettings,
    outcome: _Outcome,
    total: int,
    batch_id: str,
    elapsed: float,
    request_id: str,
) -> dict[str, Any]:
    calibrating = state.events_ingested < MIN_BASELINE_SIZE
    need = settings.min_events
    ready = len(state.events) >= need
    anomalies = [_public_anomaly(a) for _, a in outcome.results]
    response: dict[str, Any] = {
        "success": True,
        "stream_id": state.stream_id,
        "total_events": total,
        "anomaly_count": len(anomalies),
        "processing_time": go_duration(elapsed),
        "compression_algo": settings.compressor,
        "anomalies": anomalies,
        "incidents": [{**incident_view(row), "change": kind} for kind, row in outcome.changes],
        "request_id": request_id,
        "status": "calibrating" if calibrating else "ready",
        "detection_ready": ready,
    }
    if outcome.drift is not None:
        response["drift"] = outcome.drift
    if settings.compressor in ("lz4", "openzl"):
        response["compression_algo"] = "zstd"
        response["fallback_from_algo"] = settings.compressor
    if not calibrating:
        response["batch_id"] = batch_id
    if not ready:
        response["detection_events_needed"] = need - len(state.events)
        response["calibration"] = {
            "events_ingested": state.events_ingested,
            "events_needed": max(0, MIN_BASELINE_SIZE - state.events_ingested),
            "min_baseline_size": MIN_BASELINE_SIZE,
            "progress_percent": min(100, 100 * state.events_ingested // MIN_BASELINE_SIZE),
            "detection_ready": ready,
            "detection_events_needed": need - len(state.events),
            "detection_min_events": need,
            "message": f"Collecting a baseline: detection starts after {need} events.",
        }
    return response
