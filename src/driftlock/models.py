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
    "Anomaly",
    "AnomalyMetrics",
    "Calibration",
    "DetectionResult",
    "Incident",
    "IncidentMark",
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
    """An anomaly's incident: ``opened`` is True on the one anomaly that opened it."""

    id: str
    opened: bool = False

    @classmethod
    def from_dict(cls, data: Any) -> IncidentMark | None:
        if not isinstance(data, Mapping) or not data.get("id"):
            return None
        return cls(id=str(data["id"]), opened=bool(data.get("opened", False)))


@dataclass(frozen=True)
class Incident:
    """What a person is told: one incident of a stream, decided by the detection service.

    ``change`` is set on the incidents a detect answer lists: ``"opened"`` or ``"resolved"``."""

    id: str
    stream_id: str | None = None
    status: str | None = None
    opened_at: str | None = None
    last_seen_at: str | None = None
    resolved_at: str | None = None
    anomaly_count: int = 0
    routes: tuple[str, ...] = ()
    summary: str = ""
    explanation: Mapping[str, Any] = field(default_factory=dict, repr=False)
    change: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Incident:
        explanation = data.get("explanation")
        explanation = explanation if isinstance(explanation, Mapping) else {}
        routes = explanation.get("routes") or ()
        return cls(
            id=str(data.get("id") or ""),
            stream_id=_as_str(data.get("stream_id")),
            status=_as_str(data.get("status")),
            opened_at=_as_str(data.get("opened_at")),
            last_seen_at=_as_str(data.get("last_seen_at")),
            resolved_at=_as_str(data.get("resolved_at")),
            anomaly_count=_as_int(data.get("anomaly_count")) or 0,
            routes=tuple(str(r) for r in routes if isinstance(r, str)),
            summary=str(explanation.get("summary") or ""),
            explanation=dict(explanation),
            change=_as_str(data.get("change")),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Anomaly:
    """One anomaly. ``index`` points into the caller's event list."""

    id: str | None
    index: int
    metrics: AnomalyMetrics
    why: str = ""
    event: Any = None
    detected: bool = True
    stream_id: str | None = None
    incident: IncidentMark | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, stream_id: str | None = None) -> Anomaly:
        metrics = data.get("metrics")
        if metrics is None:  # the flat shape of docs/architecture/API.md
            metrics = {k: v for k, v in data.items() if _norm(k) in _METRIC_ALIASES}
        return cls(
            id=_as_str(data.get("id")),
            index=_as_int(data.get("index")) or 0,
            metrics=AnomalyMetrics.from_dict(metrics),
            why=str(data.get("why") or data.get("explanation") or ""),
            event=data.get("event"),
            detected=bool(data.get("detected", True)),
            stream_id=_as_str(data.get("stream_id")) or stream_id,
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
    incidents: tuple[Incident, ...] | None = None  # None: the API marks no incidents
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

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
            detection_events_needed=_as_int(data.get("detection_events_needed")),
            calibration=Calibration.from_dict(data.get("calibration")),
            incidents=_incidents(data.get("incidents")),
            raw=dict(data),
        )


def _incidents(value: Any) -> tuple[Incident, ...] | None:
    if not isinstance(value, list):
        return None
    return tuple(Incident.from_dict(i) for i in value if isinstance(i, Mapping) and i.get("id"))


def merge_results(parts: Sequence[tuple[int, DetectionResult]]) -> DetectionResult:
    """Merge the results of consecutive chunks; ``offset`` shifts each chunk's anomaly indexes."""
    if len(parts) == 1 and parts[0][0] == 0:
        return parts[0][1]
    anomalies = tuple(
        replace(anomaly, index=anomaly.index + offset) for offset, part in parts for anomaly in part.anomalies
    )
    last = parts[-1][1]
    times = [p.processing_time for _, p in parts if p.processing_time is not None]
    marked = [p.incidents for _, p in parts if p.incidents is not None]
    return replace(
        last,
        anomalies=anomalies,
        anomaly_count=sum(p.anomaly_count for _, p in parts),
        total_events=sum(p.total_events for _, p in parts),
        success=all(p.success for _, p in parts),
        processing_time=sum(times, timedelta()) if times else None,
        incidents=tuple(i for part in marked for i in part) if marked else None,
        raw={"parts": [dict(p.raw) for _, p in parts]},
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
