"""Detection results with attribute access, parsed tolerantly from any known Driftlock response shape.

The hosted API, its Go predecessor and its documentation disagree on spelling (``NCD`` vs ``ncd``,
``ConfidenceLevel`` vs ``confidence_level`` vs ``confidence``); every one of them parses here, and
unknown fields are kept in ``raw`` and otherwise ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

__all__ = [
    "ActionResult",
    "Anchor",
    "AnchorDetails",
    "AnchorSettings",
    "Anomaly",
    "AnomalyMetrics",
    "AnomalyPage",
    "Calibration",
    "DemoInfo",
    "DetectionResult",
    "ExportJob",
    "FeedbackStats",
    "Health",
    "Incident",
    "IncidentExplanation",
    "IncidentMark",
    "IncidentPage",
    "Readiness",
    "StreamProfile",
    "StreamTuning",
    "Thresholds",
    "TuneEvent",
    "Verification",
    "merge_results",
    "parse_duration",
]


def _norm(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


# normalized spelling -> field name
_METRIC_ALIASES = {
    "ncd": "ncd",
    "pvalue": "p_value",
    "confidencelevel": "confidence_level",
    "confidence": "confidence_level",
    "baselinecompressionratio": "baseline_compression_ratio",
    "windowcompressionratio": "window_compression_ratio",
    "compressionratio": "window_compression_ratio",
    "compressionratiochange": "compression_ratio_change",
    "baselineentropy": "baseline_entropy",
    "windowentropy": "window_entropy",
    "entropychange": "entropy_change",
    "compositescore": "composite_score",
    "conditionalnovelty": "conditional_novelty",
    "isstatisticallysignificant": "is_statistically_significant",
    "isanomaly": "is_anomaly",
    "permutationcount": "permutation_count",
    "explanation": "explanation",
}


@dataclass(frozen=True)
class AnomalyMetrics:
    """CBAD figures for one detection. Missing figures are ``None``."""

    ncd: float | None = None
    p_value: float | None = None
    confidence_level: float | None = None
    baseline_compression_ratio: float | None = None
    window_compression_ratio: float | None = None
    compression_ratio_change: float | None = None
    baseline_entropy: float | None = None
    window_entropy: float | None = None
    entropy_change: float | None = None
    composite_score: float | None = None
    conditional_novelty: float | None = None
    is_statistically_significant: bool | None = None
    is_anomaly: bool | None = None
    permutation_count: int | None = None
    explanation: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def confidence(self) -> float | None:
        return self.confidence_level

    @property
    def compression_ratio(self) -> float | None:
        return self.window_compression_ratio

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> AnomalyMetrics:
        values: dict[str, Any] = {}
        for key, value in (data or {}).items():
            name = _METRIC_ALIASES.get(_norm(str(key)))
            if name is None or name in values:
                continue
            values[name] = value
        typed: dict[str, Any] = {}
        for name, value in values.items():
            if name in ("is_statistically_significant", "is_anomaly"):
                typed[name] = bool(value) if value is not None else None
            elif name == "permutation_count":
                typed[name] = _as_int(value)
            elif name == "explanation":
                typed[name] = value if isinstance(value, str) else None
            else:
                typed[name] = _as_float(value)
        return cls(**typed, raw=dict(data or {}))


@dataclass(frozen=True)
class IncidentMark:
    """An anomaly's place in an incident: ``opened`` is True for the anomaly that opened it, ``updated`` for one
    that changed an open incident's evidence (the application is told of both)."""

    id: str
    opened: bool = False
    updated: bool = False

    @classmethod
    def from_dict(cls, data: Any) -> IncidentMark | None:
        if not isinstance(data, Mapping) or data.get("id") is None:
            return None
        return cls(id=str(data["id"]), opened=bool(data.get("opened", False)), updated=bool(data.get("updated", False)))


@dataclass(frozen=True)
class Anomaly:
    """One anomaly. ``index`` points into the caller's event list.

    A detection's anomalies carry ``metrics``, ``event`` and ``why``; a listed one (``anomalies.list``)
    carries ``explanation``, ``status``, ``detected_at`` and its figures (``ncd``, ``p_value``, ``confidence``).
    """

    id: str | None
    index: int
    metrics: AnomalyMetrics
    why: str = ""
    event: Any = None
    detected: bool = True
    stream_id: str | None = None
    explanation: str = ""
    status: str | None = None
    detected_at: str | None = None
    incident: IncidentMark | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ncd(self) -> float | None:
        return self.metrics.ncd

    @property
    def p_value(self) -> float | None:
        return self.metrics.p_value

    @property
    def confidence(self) -> float | None:
        return self.metrics.confidence_level

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, stream_id: str | None = None) -> Anomaly:
        metrics = data.get("metrics")
        if not isinstance(metrics, Mapping):  # the flat shape of GET /v1/anomalies and docs/architecture/API.md
            metrics = {k: v for k, v in data.items() if _norm(k) in _METRIC_ALIASES and _norm(k) != "explanation"}
        explanation = _text(data.get("explanation"))
        why = str(data.get("why") or explanation or "")
        return cls(
            id=_as_str(data.get("id")),
            index=_as_int(data.get("index")) or 0,
            metrics=AnomalyMetrics.from_dict(metrics),
            why=why,
            event=data.get("event"),
            detected=bool(data.get("detected", True)),
            stream_id=_as_str(data.get("stream_id")) or stream_id,
            explanation=explanation or why,
            status=_as_str(data.get("status")),
            detected_at=_as_str(data.get("detected_at") or data.get("timestamp")),
            incident=IncidentMark.from_dict(data.get("incident")),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Calibration:
    """Progress of a stream towards detection (present while calibrating or warming up)."""

    events_ingested: int | None = None
    events_needed: int | None = None
    min_baseline_size: int | None = None
    progress_percent: int | None = None
    detection_ready: bool | None = None
    detection_events_needed: int | None = None
    detection_min_events: int | None = None
    message: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Calibration | None:
        if not isinstance(data, Mapping):
            return None
        ints = {
            k: _as_int(data.get(k))
            for k in (
                "events_ingested",
                "events_needed",
                "min_baseline_size",
                "progress_percent",
                "detection_events_needed",
                "detection_min_events",
            )
        }
        ready = data.get("detection_ready")
        return cls(
            **ints,
            detection_ready=None if ready is None else bool(ready),
            message=_as_str(data.get("message")),
        )


@dataclass(frozen=True)
class DetectionResult:
    """The answer to one ``detect`` call (merged when the events were sent in several requests)."""

    anomalies: tuple[Anomaly, ...] = ()
    total_events: int = 0
    anomaly_count: int = 0
    success: bool = True
    stream_id: str | None = None
    batch_id: str | None = None
    request_id: str | None = None
    processing_time: timedelta | None = None
    compression_algo: str | None = None
    status: str | None = None
    detection_ready: bool | None = None
    detection_events_needed: int | None = None
    calibration: Calibration | None = None
    incidents: tuple[Incident, ...] | None = None
    demo: DemoInfo | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """``incidents`` is None when the API marks no incidents (an API older than incidents); ``demo`` is
    set by ``detection.demo``; ``calibration`` is set whenever ``detection_ready`` is False."""

    @property
    def has_anomalies(self) -> bool:
        return bool(self.anomalies)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DetectionResult:
        stream_id = _as_str(data.get("stream_id"))
        items = data.get("anomalies") or []
        anomalies = tuple(Anomaly.from_dict(a, stream_id=stream_id) for a in items if isinstance(a, Mapping))
        count = _as_int(data.get("anomaly_count"))
        ready = data.get("detection_ready")
        needed = _as_int(data.get("detection_events_needed"))
        calibration = Calibration.from_dict(data.get("calibration"))
        if calibration is None and ready is False:  # calibrated but warming up: the figures are top-level
            calibration = Calibration(detection_ready=False, detection_events_needed=needed)
        incidents = data.get("incidents")
        return cls(
            anomalies=anomalies,
            total_events=_as_int(data.get("total_events")) or 0,
            anomaly_count=len(anomalies) if count is None else count,
            success=bool(data.get("success", True)),
            stream_id=stream_id,
            batch_id=_as_str(data.get("batch_id")),
            request_id=_as_str(data.get("request_id")),
            processing_time=parse_duration(data.get("processing_time")),
            compression_algo=_as_str(data.get("compression_algo")),
            status=_as_str(data.get("status")),
            detection_ready=None if ready is None else bool(ready),
            detection_events_needed=needed,
            calibration=calibration,
            incidents=None
            if not isinstance(incidents, list)
            else tuple(Incident.from_dict(i, stream_id=stream_id) for i in incidents if isinstance(i, Mapping)),
            demo=DemoInfo.from_dict(data.get("demo")),
            raw=dict(data),
        )


def merge_results(parts: Sequence[tuple[int, DetectionResult]]) -> DetectionResult:
    """Merge the results of consecutive chunks; ``offset`` shifts each chunk's anomaly indexes.

    Incidents are merged by id (a later chunk's state wins, their anomalies are joined); the merged
    ``incidents`` is None only when no chunk's response carried the key.
    """
    if len(parts) == 1 and parts[0][0] == 0:
        return parts[0][1]
    anomalies = tuple(
        replace(anomaly, index=anomaly.index + offset) for offset, part in parts for anomaly in part.anomalies
    )
    incidents: dict[str, Incident] | None = None
    for offset, part in parts:
        if part.incidents is None:
            continue
        incidents = {} if incidents is None else incidents
        for incident in part.incidents:
            shifted = replace(incident, anomalies=tuple(replace(a, index=a.index + offset) for a in incident.anomalies))
            earlier = incidents.get(incident.id)
            if earlier is not None:
                seen = {a.id for a in shifted.anomalies if a.id is not None}
                joined = tuple(a for a in earlier.anomalies if a.id is None or a.id not in seen) + shifted.anomalies
                shifted = replace(shifted, anomalies=joined)
            incidents[incident.id] = shifted
    last = parts[-1][1]
    times = [p.processing_time for _, p in parts if p.processing_time is not None]
    return replace(
        last,
        anomalies=anomalies,
        anomaly_count=sum(p.anomaly_count for _, p in parts),
        total_events=sum(p.total_events for _, p in parts),
        success=all(p.success for _, p in parts),
        processing_time=sum(times, timedelta()) if times else None,
        incidents=None if incidents is None else tuple(incidents.values()),
        raw={"parts": [dict(p.raw) for _, p in parts]},
    )


# -- incidents ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IncidentExplanation:
    """Why an incident was opened, as structure: the signal, the routes involved, what surged and the
    events least like the baseline. ``summary`` is the same in one sentence."""

    summary: str = ""
    signal: str | None = None
    routes: tuple[Any, ...] = ()
    surges: tuple[Any, ...] = ()
    least_like: tuple[Any, ...] = ()

    @classmethod
    def from_dict(cls, data: Any) -> IncidentExplanation | None:
        if isinstance(data, str):
            return cls(summary=data)
        if not isinstance(data, Mapping):
            return None
        f = _fields(data)
        return cls(
            summary=_text(f.get("summary")) or "",
            signal=_as_str(f.get("signal")),
            routes=_tuple(f.get("routes")),
            surges=_tuple(f.get("surges")),
            least_like=_tuple(f.get("leastlike")),
        )


@dataclass(frozen=True)
class Incident:
    """The alarm a user is told: opened by the detection service over the whole stream, once.

    ``anomalies`` are the detections that belong to it (in a detect response, their ``index`` points
    into the caller's event list); ``feedback`` lists the feedback given, oldest first.
    """

    id: str
    stream_id: str | None = None
    status: str | None = None
    opened_at: str | None = None
    last_seen_at: str | None = None
    resolved_at: str | None = None
    anomaly_count: int = 0
    explanation: IncidentExplanation | None = None
    anomalies: tuple[Anomaly, ...] = ()
    feedback: tuple[Mapping[str, Any], ...] = ()
    change: str | None = None  # in a detect answer: "opened", "updated" or "resolved"
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def routes(self) -> tuple[str, ...]:
        """The routes the incident's evidence names."""
        return tuple(str(r) for r in (self.explanation.routes if self.explanation else ()))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, stream_id: str | None = None) -> Incident:
        stream = _as_str(data.get("stream_id")) or stream_id
        anomalies = tuple(
            Anomaly.from_dict(a, stream_id=stream) if isinstance(a, Mapping) else _anomaly_ref(a, stream)
            for a in data.get("anomalies") or ()
            if isinstance(a, Mapping | str)
        )
        count = _as_int(data.get("anomaly_count"))
        return cls(
            id=str(data.get("id") or ""),
            stream_id=stream,
            status=_as_str(data.get("status")),
            opened_at=_as_str(data.get("opened_at")),
            last_seen_at=_as_str(data.get("last_seen_at")),
            resolved_at=_as_str(data.get("resolved_at")),
            anomaly_count=len(anomalies) if count is None else count,
            explanation=IncidentExplanation.from_dict(data.get("explanation")),
            anomalies=anomalies,
            feedback=tuple(dict(f) for f in data.get("feedback") or () if isinstance(f, Mapping)),
            change=_as_str(data.get("change")),
            raw=dict(data),
        )


def _anomaly_ref(anomaly_id: Any, stream_id: str | None) -> Anomaly:
    """An incident that lists its anomalies by id only."""
    return Anomaly(id=str(anomaly_id), index=0, metrics=AnomalyMetrics(), stream_id=stream_id)


@dataclass(frozen=True)
class IncidentPage:
    """One page of ``GET /v1/incidents``."""

    incidents: tuple[Incident, ...]
    total: int
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IncidentPage:
        items = tuple(Incident.from_dict(i) for i in data.get("incidents") or () if isinstance(i, Mapping))
        total = _as_int(data.get("total"))
        return cls(incidents=items, total=len(items) if total is None else total, raw=dict(data))


# -- the other answers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoInfo:
    """The ``demo`` block of ``POST /v1/demo/detect``."""

    remaining_calls: int | None = None
    limit_per_minute: int | None = None
    max_events_per_request: int | None = None
    message: str | None = None
    signup_url: str | None = None

    @classmethod
    def from_dict(cls, data: Any) -> DemoInfo | None:
        if not isinstance(data, Mapping):
            return None
        return cls(
            remaining_calls=_as_int(data.get("remaining_calls")),
            limit_per_minute=_as_int(data.get("limit_per_minute")),
            max_events_per_request=_as_int(data.get("max_events_per_request")),
            message=_as_str(data.get("message")),
            signup_url=_as_str(data.get("signup_url")),
        )


@dataclass(frozen=True)
class Health:
    """``GET /healthz``: ``ok`` is True when the API says it is healthy."""

    ok: bool
    version: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Health:
        ok = data.get("ok")
        if ok is None:
            ok = data.get("success", False) and data.get("library_status", "healthy") == "healthy"
        version = data.get("version")
        return cls(ok=bool(ok), version=None if version is None else str(version), raw=dict(data))


@dataclass(frozen=True)
class Verification:
    """``client.verify()``: the API accepted the key.

    ``api_root`` is where (without any credentials, ``"embedded"`` for the embedded engine);
    ``restricted`` is True when the key is known but may not read anomalies (HTTP 403: a key scoped to
    ingest or to some streams).
    """

    api_root: str
    request_id: str | None = None
    restricted: bool = False


@dataclass(frozen=True)
class Readiness:
    """``GET /readyz``: ``ready``, and ``database`` (``"connected"`` or ``"disconnected"``) when the API says."""

    ready: bool
    database: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Readiness:
        database = data.get("database")
        checks = data.get("checks")
        if database is None and isinstance(checks, Mapping) and checks.get("database") is not None:
            database = "connected" if checks["database"] in ("ok", "connected", True) else "disconnected"
        return cls(ready=bool(data.get("ready", False)), database=_as_str(database), raw=dict(data))


@dataclass(frozen=True)
class AnomalyPage:
    """One page of ``GET /v1/anomalies``."""

    anomalies: tuple[Anomaly, ...]
    total: int
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AnomalyPage:
        items = data.get("anomalies") or []
        anomalies = tuple(Anomaly.from_dict(a) for a in items if isinstance(a, Mapping))
        total = _as_int(data.get("total"))
        return cls(anomalies=anomalies, total=len(anomalies) if total is None else total, raw=dict(data))


@dataclass(frozen=True)
class ActionResult:
    """The answer to a request that changes something (feedback, profile, anchor): ``success`` and a message."""

    success: bool = True
    message: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Any) -> ActionResult:
        if not isinstance(data, Mapping):
            return cls(raw={})
        return cls(success=bool(data.get("success", True)), message=_as_str(data.get("message")), raw=dict(data))


@dataclass(frozen=True)
class ExportJob:
    """An export of anomalies: ``job_id`` and ``status``; ``result`` once the job is done (``get_export``)."""

    job_id: str
    status: str | None = None
    format: str | None = None
    message: str | None = None
    result: Any = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExportJob:
        f = _fields(data)
        result = next((f[k] for k in ("result", "content", "data", "url") if f.get(k) is not None), None)
        return cls(
            job_id=str(f.get("jobid") or f.get("id") or ""),
            status=_as_str(f.get("status")),
            format=_as_str(f.get("format")),
            message=_as_str(f.get("message")),
            result=result,
            raw=dict(data),
        )


@dataclass(frozen=True)
class Thresholds:
    """A stream's detection thresholds and sizes."""

    ncd_threshold: float | None = None
    pvalue_threshold: float | None = None
    baseline_size: int | None = None
    window_size: int | None = None

    @property
    def p_value_threshold(self) -> float | None:
        return self.pvalue_threshold

    @classmethod
    def from_dict(cls, data: Any) -> Thresholds:
        f = _fields(data)
        return cls(
            ncd_threshold=_as_float(f.get("ncdthreshold")),
            pvalue_threshold=_as_float(f.get("pvaluethreshold")),
            baseline_size=_as_int(f.get("baselinesize")),
            window_size=_as_int(f.get("windowsize")),
        )


@dataclass(frozen=True)
class StreamProfile:
    """``GET /v1/streams/{id}/profile``."""

    profile: str | None = None
    auto_tune_enabled: bool | None = None
    adaptive_window_enabled: bool | None = None
    current_thresholds: Thresholds = field(default_factory=Thresholds)
    profile_descriptions: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Any) -> StreamProfile:
        f = _fields(data)
        descriptions = f.get("profiledescriptions")
        return cls(
            profile=_as_str(f.get("profile") or f.get("detectionprofile")),
            auto_tune_enabled=_as_bool(f.get("autotuneenabled")),
            adaptive_window_enabled=_as_bool(f.get("adaptivewindowenabled")),
            current_thresholds=Thresholds.from_dict(f.get("currentthresholds") or data),
            profile_descriptions=dict(descriptions) if isinstance(descriptions, Mapping) else {},
            raw=dict(data) if isinstance(data, Mapping) else {},
        )


@dataclass(frozen=True)
class TuneEvent:
    """One automatic or manual change of a stream's thresholds."""

    tune_type: str | None = None
    old_value: float | None = None
    new_value: float | None = None
    reason: str | None = None
    confidence: float | None = None
    created_at: str | None = None

    @classmethod
    def from_dict(cls, data: Any) -> TuneEvent:
        f = _fields(data)
        return cls(
            tune_type=_as_str(f.get("tunetype")),
            old_value=_as_float(f.get("oldvalue")),
            new_value=_as_float(f.get("newvalue")),
            reason=_as_str(f.get("reason")),
            confidence=_as_float(f.get("confidence")),
            created_at=_as_str(f.get("createdat")),
        )


@dataclass(frozen=True)
class FeedbackStats:
    """Feedback given on a stream's anomalies."""

    total_feedback: int = 0
    false_positives: int = 0
    confirmed: int = 0
    dismissed: int = 0
    false_positive_rate: float | None = None

    @classmethod
    def from_dict(cls, data: Any) -> FeedbackStats:
        f = _fields(data)
        return cls(
            total_feedback=_as_int(f.get("totalfeedback")) or 0,
            false_positives=_as_int(f.get("falsepositives")) or 0,
            confirmed=_as_int(f.get("confirmed")) or 0,
            dismissed=_as_int(f.get("dismissed")) or 0,
            false_positive_rate=_as_float(f.get("falsepositiverate")),
        )


@dataclass(frozen=True)
class StreamTuning:
    """``GET /v1/streams/{id}/tuning``: the current settings, the last changes and the feedback behind them."""

    current_settings: StreamProfile = field(default_factory=StreamProfile)
    tune_history: tuple[TuneEvent, ...] = ()
    feedback_stats: FeedbackStats = field(default_factory=FeedbackStats)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Any) -> StreamTuning:
        f = _fields(data)
        return cls(
            current_settings=StreamProfile.from_dict(f.get("currentsettings") or {}),
            tune_history=tuple(TuneEvent.from_dict(t) for t in f.get("tunehistory") or () if isinstance(t, Mapping)),
            feedback_stats=FeedbackStats.from_dict(f.get("feedbackstats") or {}),
            raw=dict(data) if isinstance(data, Mapping) else {},
        )


@dataclass(frozen=True)
class AnchorSettings:
    """``GET /v1/streams/{id}/anchor``: drift detection against a fixed anchor baseline."""

    has_active_anchor: bool = False
    anchor_enabled: bool | None = None
    anchor_id: str | None = None
    drift_ncd_threshold: float | None = None
    anchor_reset_on_drift: bool | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Any) -> AnchorSettings:
        f = _fields(data)
        return cls(
            has_active_anchor=bool(f.get("hasactiveanchor", False)),
            anchor_enabled=_as_bool(f.get("anchorenabled")),
            anchor_id=_as_str(f.get("anchorid")),
            drift_ncd_threshold=_as_float(f.get("driftncdthreshold")),
            anchor_reset_on_drift=_as_bool(f.get("anchorresetondrift")),
            raw=dict(data) if isinstance(data, Mapping) else {},
        )


@dataclass(frozen=True)
class Anchor:
    """The events a stream's drift is measured against."""

    id: str | None = None
    stream_id: str | None = None
    compressor: str | None = None
    event_count: int | None = None
    baseline_entropy: float | None = None
    baseline_compression_ratio: float | None = None
    drift_ncd_threshold: float | None = None
    is_active: bool | None = None
    calibration_completed_at: str | None = None
    created_at: str | None = None

    @classmethod
    def from_dict(cls, data: Any) -> Anchor | None:
        if not isinstance(data, Mapping):
            return None
        f = _fields(data)
        return cls(
            id=_as_str(f.get("id")),
            stream_id=_as_str(f.get("streamid")),
            compressor=_as_str(f.get("compressor")),
            event_count=_as_int(f.get("eventcount")),
            baseline_entropy=_as_float(f.get("baselineentropy")),
            baseline_compression_ratio=_as_float(f.get("baselinecompressionratio")),
            drift_ncd_threshold=_as_float(f.get("driftncdthreshold")),
            is_active=_as_bool(f.get("isactive")),
            calibration_completed_at=_as_str(f.get("calibrationcompletedat")),
            created_at=_as_str(f.get("createdat")),
        )


@dataclass(frozen=True)
class AnchorDetails:
    """``GET /v1/streams/{id}/anchor/details``: ``anchor`` is None when the stream has none."""

    anchor: Anchor | None = None
    message: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Any) -> AnchorDetails:
        f = _fields(data)
        return cls(
            anchor=Anchor.from_dict(f.get("anchor")),
            message=_as_str(f.get("message")),
            raw=dict(data) if isinstance(data, Mapping) else {},
        )


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any) -> timedelta | None:
    """Parse a Go duration string (``"1.234ms"``, ``"2m3.5s"``, ``"850µs"``) or a number of seconds."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return timedelta(seconds=float(value))
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text in ("0", ""):
        return timedelta(0)
    sign = -1.0 if text.startswith("-") else 1.0
    text = text.lstrip("+-")
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text):
        return None
    return timedelta(seconds=sign * total)


def _as_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _as_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _as_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _as_bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _text(value: Any) -> str:
    """A string, or the ``summary`` of the ``{summary, details}`` object some documents show."""
    if isinstance(value, Mapping):
        value = value.get("summary")
    return value if isinstance(value, str) else ""


def _tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, list | tuple) else ()


def _fields(data: Any) -> dict[str, Any]:
    """Keys normalized (``TuneType``, ``tune_type`` and ``tune-type`` all become ``tunetype``); first spelling wins."""
    if not isinstance(data, Mapping):
        return {}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.setdefault(_norm(str(key)), value)
    return out
