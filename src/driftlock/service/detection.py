"""The Driftlock API's semantics as a typed core, without HTTP.

:class:`Service` runs detections over a :class:`~driftlock.service.store.Store` and keeps each
stream's incidents (:mod:`driftlock.service.incidents`) under the stream's lock, so that every
process, thread and host sending one stream is told of each incident exactly once. Its methods take
checked, typed arguments and return plain values; what it refuses it raises as a domain error
(:mod:`driftlock.service.errors`). Reading requests and shaping answers is the edge's
(:mod:`driftlock.service.api`). What it keeps in memory is a bounded cache of the store's records.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from driftlock.engine.explain import event_value
from driftlock.engine.settings import DEMO_SETTINGS, DetectionSettings, SettingsError, resolve_settings
from driftlock.engine.stream import MIN_BASELINE_SIZE, StreamState, WindowResult, detections, freeze, thaw
from driftlock.service import adaptive, anchors, calibration, exports, incidents, profiles, tuning, validation
from driftlock.service.budgets import Budgets, excerpt, trim_history
from driftlock.service.errors import Conflict, InvalidArgument, NotFound, NotReady
from driftlock.service.meta import Sizes
from driftlock.service.shapes import anomaly_detail, anomaly_summary, incident_view, iso
from driftlock.service.store import AnomalyFilter, Commit, MemoryStore, RecordCache, Store, StreamRecord
from driftlock.vocabulary import FEEDBACK_STATUS, INCIDENT_STATUSES

__all__ = ["DemoOutcome", "IncidentListener", "Outcome", "Service"]

logger = logging.getLogger("driftlock.service")

IncidentListener = Callable[[str, dict[str, Any]], Any]
"""Called as ``listener("opened" | "updated" | "resolved", incident)`` after the change is stored."""


@dataclass
class Outcome:
    """What one detect call did on its stream."""

    stream: StreamState  # the stream's engine state after the call
    settings: DetectionSettings  # the settings the call used
    total_events: int
    batch_id: str
    elapsed: float  # seconds
    anomalies: list[dict[str, Any]] = field(default_factory=list)  # the records of the anomalies found
    changes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (opened|updated|resolved, row)
    drift: dict[str, Any] | None = None  # the latest window against the stream's anchor


@dataclass
class DemoOutcome:
    """What a demo detection found (nothing is stored)."""

    settings: DetectionSettings
    total_events: int
    elapsed: float
    anomalies: list[dict[str, Any]]


class Service:
    """Thread-safe and process-safe over a shared store. Detections of different streams run
    concurrently; one stream's run in order."""

    def __init__(
        self,
        store: Store | None = None,
        *,
        cache: RecordCache | None = None,
        clock: Callable[[], float] = time.time,
        budgets: Budgets | None = None,
    ) -> None:
        self.store: Store = store if store is not None else MemoryStore()
        self.budgets = budgets if budgets is not None else Budgets()
        # an empty cache is falsy (len 0)
        self.cache = cache if cache is not None else RecordCache(max_bytes=self.budgets.cache_bytes)
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

    @contextmanager
    def _locked(self, stream_id: str, *, create: bool = False) -> Iterator[Commit]:
        """The stream's record under its lock, as the ``record`` of a commit that the block fills and that is
        stored when it ends. A stream that does not exist is NotFound, or made when ``create``. When the block
        raises, nothing is stored and the cached record (which may hold the change) is dropped."""
        with self.store.session(stream_id, self.cache.get(stream_id)) as session:
            record = session.record
            if record is None:
                if not create:
                    raise NotFound(f"stream {stream_id} not found")
                record = StreamRecord.new(stream_id)
            try:
                commit = Commit(record)
                yield commit
                session.commit(commit)
            except BaseException:
                self.cache.drop(stream_id)
                raise
        self.cache.put(record)

    # -- detection --------------------------------------------------------------------------

    def detect(
        self,
        stream_id: str,
        events: list[Any],
        override: Mapping[str, Any] | None = None,
        *,
        confirmations: int | None = None,
        trace_ids: list[str] | None = None,
    ) -> Outcome:
        """Ingest ``events`` (non-empty, checked by the edge) into the stream and detect on them."""
        override = dict(override or {})
        tokenizer = override.get("tokenizer", True)  # checked with the rest of the override, under the lock
        started = time.perf_counter()
        encoded = validation.encoded_events(
            events, tokenizer=tokenizer if isinstance(tokenizer, bool) else True, max_bytes=self.budgets.event_bytes
        )
        batch_id = str(uuid.uuid4())
        now = time.time()
        with self._locked(stream_id, create=True) as commit:
            record = commit.record
            adaptive.adaptive_sizes(record.meta, encoded)
            try:
                profiled = profiles.stream_settings(record.meta, override)  # override > profile > defaults
            except SettingsError as exc:
                raise InvalidArgument(f"invalid config_override: {exc}") from None
            rule = incidents.IncidentRule.for_sizes(profiled.baseline_size, profiled.window_size, confirmations)
            settings = profiled
            if "p_value_threshold" not in override:  # the profile's threshold is the ceiling of the calibration
                p_value = calibration.threshold(record.meta.get("calibration"), profiled.p_value_threshold)
                settings = replace(profiled, p_value_threshold=p_value)
            settings = replace(
                settings,
                confirm_p_value=rule.p_value,  # confirmations need p settled there
                dependence=calibration.dependence(record.meta.get("calibration")),
            )
            outcome = Outcome(record.engine, settings, len(events), batch_id, 0.0)
            self._run(commit, encoded, events, settings, rule, outcome, now, trace_ids)
            outcome.drift = anchors.drift(record.meta, record.engine.events, profiled)
        with self._totals_lock:  # detect calls of different streams run on concurrent threads
            self.totals["events"] += len(events)
            self.totals["anomalies"] += len(outcome.anomalies)
            self.totals["detect_calls"] += 1
        self._tell(outcome.changes)
        outcome.elapsed = time.perf_counter() - started
        return outcome

    def _run(
        self,
        commit: Commit,
        encoded: list[bytes],
        events: list[Any],
        settings: DetectionSettings,
        rule: incidents.IncidentRule,
        out: Outcome,
        now: float,
        trace_ids: list[str] | None,
    ) -> None:
        """Ingest the batch into the commit's record and apply the incident rule after every detection."""
        record = commit.record
        engine, state = record.engine, record.incident
        muted = float(record.meta.get("muted_until") or 0) > now
        frozen_before = engine.frozen  # freeze() makes a new list, thaw() drops it: identity says it changed
        commit.events_at = now
        rewrite = False
        rows: dict[str, dict[str, Any]] = {}  # incident rows changed by this call
        ordinary: list[float] = []  # p-values of the detections outside incidents, for the calibration
        waiting = calibration.held(record.meta.get("calibration"))  # and their test statistics
        opened = False
        for result in detections(engine, encoded, settings):
            d = result.detection
            commit.detections.append((now, result.position, round(d.ncd, 6), round(d.p_value, 6), d.is_anomaly))
            if state.open is None:
                ordinary.append(d.p_value)
                if d.statistic is not None:
                    waiting.append((result.position, d.statistic))
            record.last_detection_at = now
            anomaly = None
            if d.is_anomaly:
                event = excerpt(events[result.index], self.budgets.excerpt_bytes)
                anomaly = _anomaly_record(result, event, record.stream_id, out.batch_id, now)
                if trace_ids is not None and result.index < len(trace_ids):
                    anomaly["trace_id"] = trace_ids[result.index]
                commit.anomalies.append(anomaly)
                out.anomalies.append(anomaly)
            step = incidents.step(
                state,
                rule,
                result.position,
                d.p_value,
                anomaly,
                stream_id=record.stream_id,
                now=now,
                muted=muted,
                window_routes=lambda row: _window_routes(engine, settings, row),
            )
            if step.changed is not None:
                rows[step.changed["id"]] = step.changed
            if step.updated is not None:
                out.changes.append(("updated", step.updated))
            if step.resolved is not None:
                out.changes.append(("resolved", step.resolved))
                thaw(engine, settings, forget=not step.absorbed)
                rewrite = rewrite or not step.absorbed
            if step.opened is not None:
                out.changes.append(("opened", step.opened))
                waiting, opened = [], True  # the windows that opened it, and its onset, were not ordinary
                commit.attach += [(m, step.opened["id"]) for m in step.members]
                freeze(engine, settings)
        joined = dict(commit.attach)
        for anomaly in commit.anomalies:  # this call's confirmations of the incident it opened
            if anomaly["id"] in joined:
                anomaly["incident_id"] = joined[anomaly["id"]]
                anomaly["incident"] = incidents.incident_mark(joined[anomaly["id"]], False)
        engine.last_event_at = now
        commit.trimmed = trim_history(engine.events, self.budgets.stream_bytes) > 0  # the oldest go past the budget
        if ordinary or opened:
            record.meta["calibration"] = calibration.observe(
                record.meta.get("calibration"),
                ordinary,
                waiting,
                position=engine.events_ingested,
                window=settings.window_size,
            )
        sizes: Sizes = {"baseline_size": settings.baseline_size, "window_size": settings.window_size}
        if record.meta.get("sizes") != sizes:
            record.meta["sizes"] = sizes
        commit.appended = min(len(encoded), len(engine.events))
        commit.rewrite_history = rewrite
        commit.frozen_changed = engine.frozen is not frozen_before or rewrite
        commit.incidents = list(rows.values())

    def demo_detect(self, events: list[Any], override: Mapping[str, Any] | None = None) -> DemoOutcome:
        """Detect on ``events`` alone, with the demo's sizes; nothing is stored. The demo needs no key, so what it
        accepts is bounded tighter than detect (:data:`~driftlock.service.validation.MAX_DEMO_BYTES` and the rest)."""
        try:
            asked = resolve_settings(override, base=DEMO_SETTINGS, permutation_cap=None)
            settings = resolve_settings(override, base=DEMO_SETTINGS)  # detect's permutation cap
        except SettingsError as exc:
            raise InvalidArgument(f"invalid config_override: {exc}") from None
        if override and "permutation_count" in override and asked.permutation_count > validation.MAX_DEMO_PERMUTATIONS:
            raise InvalidArgument(
                f"config_override.permutation_count on the demo must be at most {validation.MAX_DEMO_PERMUTATIONS}, "
                f"got {asked.permutation_count}: use /v1/detect with an API key for more"
            )
        if settings.hop_size < validation.MIN_DEMO_HOP:
            raise InvalidArgument(
                f"config_override.hop_size on the demo must be at least {validation.MIN_DEMO_HOP}, "
                f"got {settings.hop_size}: use /v1/detect with an API key for a smaller one"
            )
        encoded = validation.encoded_events(
            events,
            max_bytes=validation.MAX_DEMO_EVENT_BYTES,
            total_bytes=validation.MAX_DEMO_BYTES,
            where=" on the demo",
        )
        started = time.perf_counter()
        state = StreamState("demo")
        found = [r for r in detections(state, encoded, settings) if r.detection.is_anomaly]
        anomalies = [
            _anomaly_record(r, excerpt(events[r.index], self.budgets.excerpt_bytes), None, None, time.time())
            for r in found
        ]
        return DemoOutcome(settings, len(events), time.perf_counter() - started, anomalies)

    # -- streams ----------------------------------------------------------------------------

    def _info(self, summary: Mapping[str, Any]) -> dict[str, Any]:
        meta = summary.get("meta") or {}
        need = profiles.stream_settings(meta).min_events
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

    def _summary(self, stream_id: str) -> dict[str, Any]:
        summary = self.store.stream(stream_id)
        if summary is None:
            raise NotFound(f"stream {stream_id} not found")
        return summary

    def list_streams(self, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        rows, total = self.store.list_streams(limit, offset)
        return {"streams": [self._info(r) for r in rows], "total": total, "limit": limit, "offset": offset}

    def recent_events(self, stream_id: str, limit: int) -> list[Any]:
        """The stream's newest events as the engine stores them (canonical and tokenized), oldest first."""
        self._summary(stream_id)
        return [event_value(e) for e in self.store.recent_events(stream_id, limit)]

    def stream_timeline(self, stream_id: str, since_seconds: int = 3600) -> dict[str, Any]:
        self._summary(stream_id)
        since = time.time() - since_seconds
        minutes, found = self.store.timeline(stream_id, since)
        listed, _ = self.store.list_incidents(stream_id, None, 200, 0)
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
                for i in listed
                if (i.get("resolved_ts") or time.time()) >= since
            ],
        }

    def mute_stream(self, stream_id: str, seconds: int) -> dict[str, Any]:
        """Mute the stream's incidents for ``seconds`` (0: unmute); the stream's info."""
        seconds = validation.mute_seconds(seconds)
        with self._locked(stream_id) as commit:
            commit.record.meta["muted_until"] = time.time() + seconds if seconds else None
        info = self.stream_info(stream_id)
        assert info is not None
        return info

    # -- anomalies --------------------------------------------------------------------------

    def list_anomalies(self, where: AnomalyFilter, limit: int = 50, offset: int = 0) -> dict[str, Any]:
        rows, total = self.store.list_anomalies(where, limit, min(offset, 2**62))  # SQL takes int64: past every row
        return {"anomalies": [anomaly_summary(r) for r in rows], "total": total, "limit": limit, "offset": offset}

    def get_anomaly(self, anomaly_id: str) -> dict[str, Any]:
        record = self.store.get_anomaly(anomaly_id)
        if record is None:
            raise NotFound(f"anomaly {anomaly_id} not found")
        return anomaly_detail(record)

    def feedback(self, anomaly_id: str, feedback_type: str, reason: str | None = None) -> dict[str, Any] | None:
        """Record feedback on an anomaly; the tuning history entry when auto-tuning changed the stream."""
        if not self.store.add_feedback(anomaly_id, feedback_type, reason, FEEDBACK_STATUS[feedback_type]):
            raise NotFound(f"anomaly {anomaly_id} not found")
        anomaly = self.store.get_anomaly(anomaly_id)
        return self._learn(anomaly["stream_id"], [anomaly], feedback_type) if anomaly else None

    def _learn(
        self, stream_id: str | None, anomalies: list[dict[str, Any]], feedback_type: str
    ) -> dict[str, Any] | None:
        """Count feedback on the stream's anomalies and let auto-tuning act on it (:mod:`.tuning`);
        the tuning history entry of a change, or None."""
        if not stream_id or not anomalies:
            return None
        now = self.clock()
        try:
            with self._locked(stream_id) as commit:
                for anomaly in anomalies:
                    tuning.record_feedback(commit.record.meta, anomaly, feedback_type, now)
                return tuning.tune(commit.record.meta, now)
        except NotFound:  # the anomaly's stream is gone: the feedback itself is recorded
            return None

    # -- incidents --------------------------------------------------------------------------

    def list_incidents(
        self, stream_id: str | None = None, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> dict[str, Any]:
        if status is not None and status not in INCIDENT_STATUSES:
            raise InvalidArgument(f"status must be one of {', '.join(INCIDENT_STATUSES)}, got {status!r}")
        rows, total = self.store.list_incidents(stream_id, status, limit, offset)
        return {"incidents": [incident_view(r) for r in rows], "total": total, "limit": limit, "offset": offset}

    def get_incident(self, incident_id: str, *, anomalies: int = 100) -> dict[str, Any]:
        row = self.store.get_incident(incident_id)
        if row is None:
            raise NotFound(f"incident {incident_id} not found")
        members, total = self.store.list_anomalies(AnomalyFilter(incident_id=incident_id), anomalies, 0)
        return {
            **incident_view(row),
            "anomalies": [
                {**anomaly_summary(a), "why": a["why"], "trace_id": a.get("trace_id"), "event": a.get("event")}
                for a in members
            ],
            "anomalies_total": total,
        }

    def incident_feedback(self, incident_id: str, feedback_type: str, reason: str | None = None) -> dict[str, Any]:
        """Feedback on an incident applies to each of its anomalies; a false positive (or a dismissal)
        also resolves it, and its baseline then learns the traffic instead of forgetting it."""
        entry = {"feedback_type": feedback_type, "reason": reason, "created_at": iso(time.time())}
        resolution = None if feedback_type == "confirmed" else "feedback"
        row = self._change_incident(
            incident_id, lambda r: r.setdefault("feedback", []).append(entry), resolution, forget=False
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
            raise NotFound(f"incident {incident_id} not found")
        changes: list[tuple[str, dict[str, Any]]] = []
        with self._locked(stored["stream_id"]) as commit:
            record = commit.record
            is_open = record.incident.open is not None and record.incident.open["id"] == incident_id
            row = record.incident.open if is_open else self.store.get_incident(incident_id)
            assert row is not None
            change(row)
            commit.incidents = [row]
            if resolution is not None and row["status"] != "resolved":
                row.update(status="resolved", resolved_ts=time.time(), resolution=resolution)
                changes.append(("resolved", row))
                if is_open:
                    record.incident.open = None
                    thaw(record.engine, profiles.last_detection_settings(record.meta), forget=forget)
                    commit.rewrite_history = forget
                    commit.frozen_changed = True
        self._tell(changes)
        return incident_view(row)

    # -- profiles, tuning, anchors ------------------------------------------------------------

    def _meta(self, stream_id: str) -> dict[str, Any]:
        return dict(self._summary(stream_id).get("meta") or {})

    def get_profile(self, stream_id: str) -> dict[str, Any]:
        return profiles.profile_view(self._meta(stream_id))

    def update_profile(self, stream_id: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Any of profile, auto_tune_enabled, adaptive_window_enabled (checked by the edge). A stream not
        seen yet is made with them (SDK users set a profile before they send)."""
        with self._locked(stream_id, create=True) as commit:
            said = profiles.patch_profile(commit.record.meta, fields)
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

    def reset_anchor(self, stream_id: str, events: list[Any] | None = None, *, force: bool = False) -> dict[str, Any]:
        """A new anchor of the known-good ``events`` (None: the stream's current baseline). NotReady while the
        stream is calibrating; Conflict over an active anchor unless ``force``."""
        with self._locked(stream_id, create=True) as commit:  # a stream not seen yet: NotReady, nothing stored
            record = commit.record
            ingested = record.engine.events_ingested
            if ingested < MIN_BASELINE_SIZE:
                raise NotReady(
                    f"stream {stream_id} is not calibrated ({ingested} of {MIN_BASELINE_SIZE} events): "
                    "send its traffic first, then reset its anchor"
                )
            current = anchors.active(record.meta)
            if current is not None and not force:
                raise Conflict(
                    f"stream {stream_id} has an active anchor ({current['id']}): send force_reset: true to replace it"
                )
            settings = profiles.stream_settings(record.meta)
            if events is not None:
                encoded = validation.encoded_events(
                    events, tokenizer=settings.tokenizer, max_bytes=self.budgets.event_bytes
                )
            else:
                history = list(record.engine.events)
                encoded = list(record.engine.frozen or history[-settings.min_events : -settings.window_size])
            if len(encoded) < anchors.MIN_ANCHOR_EVENTS:
                raise InvalidArgument(
                    f"an anchor needs at least {anchors.MIN_ANCHOR_EVENTS} events, got {len(encoded)}"
                )
            anchor = anchors.make_anchor(encoded, settings, time.time())
            record.meta["anchor"] = anchor
        return {
            **anchors.anchor_details(self._meta(stream_id), stream_id),
            "success": True,
            "message": f"Anchor {anchor['id']} created from {anchor['event_count']} events",
            "anchor_id": anchor["id"],
        }

    def deactivate_anchor(self, stream_id: str) -> dict[str, Any]:
        with self._locked(stream_id) as commit:
            current = anchors.active(commit.record.meta)
            commit.record.meta.pop("anchor", None)
        was = str(current["id"]) if current is not None else None
        message = f"Anchor {was} deactivated" if was else f"stream {stream_id} had no active anchor"
        return {"success": True, "message": message, "has_active_anchor": False}

    # -- exports ----------------------------------------------------------------------------

    def export_anomalies(self, anomaly_ids: list[str], fmt: str) -> dict[str, Any]:
        """A completed export job of the anomalies (their id is its result's address: :mod:`.exports`)."""
        missing = [i for i in anomaly_ids if self.store.get_anomaly(i) is None]
        if missing:
            raise NotFound(f"anomaly(ies) not found: {', '.join(missing[:10])}")
        job_id = exports.encode_job(fmt, anomaly_ids)
        return {
            "job_id": job_id,
            "status": "completed",
            "format": fmt,
            "anomaly_count": len(anomaly_ids),
            "message": f"Export of {len(anomaly_ids)} anomaly(ies) as {fmt} is ready: GET /v1/exports/{job_id}",
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

    def ping(self) -> None:
        """Raises what the store raises when it cannot be reached."""
        self.store.ping()


def _window_routes(engine: StreamState, settings: DetectionSettings, row: dict[str, Any]) -> dict[str, float]:
    """The routes the stream's current window over-represents against the baseline the open incident froze
    (whose route shares the row keeps, computed once)."""
    evidence = row.setdefault("evidence", {})
    baseline = evidence.get("baseline")
    if baseline is None:
        shares = incidents.route_shares(event_value(e) for e in engine.frozen or ())
        baseline = evidence["baseline"] = dict(sorted(shares.items(), key=lambda kv: -kv[1])[:50])
    window = list(engine.events)[-settings.window_size :]
    return incidents.over_represented(incidents.route_shares(event_value(e) for e in window), baseline)


def _anomaly_record(
    found: WindowResult, event: Any, stream_id: str | None, batch_id: str | None, now: float
) -> dict[str, Any]:
    explanation = found.explanation.as_dict() if found.explanation else {}
    if found.explanation:
        explanation["summary"] = found.why
    return {
        "id": str(uuid.uuid4()),
        "index": found.index,
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


def __getattr__(name: str) -> Any:
    if name == "DetectionService":  # its old home: the API over this service lives in .api
        from driftlock.service.api import DetectionService

        return DetectionService
    raise AttributeError(f"module 'driftlock.service.detection' has no attribute {name!r}")
