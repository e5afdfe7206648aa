"""Every API call of the SDK page as data: method, path, body, query and how to read the answer. No I/O.

The sync and async shells turn an :class:`Operation` into one :func:`driftlock._protocol.call_flow`
and parse its result with ``parse``; what is sent and how it is read is therefore written once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from driftlock import _protocol as protocol
from driftlock.exceptions import DriftlockError, DriftlockValidationError
from driftlock.models import (
    ActionResult,
    AnchorDetails,
    AnchorSettings,
    Anomaly,
    AnomalyPage,
    DetectionResult,
    ExportJob,
    Health,
    Incident,
    IncidentPage,
    Readiness,
    StreamProfile,
    StreamTuning,
)
from driftlock.vocabulary import FEEDBACK_TYPES

T = TypeVar("T")

EXPORT_FORMATS = ("json", "markdown", "html", "pdf")
PROFILES = ("sensitive", "balanced", "strict", "custom")
PROFILE_FIELDS = ("profile", "auto_tune_enabled", "adaptive_window_enabled")


@dataclass(frozen=True)
class Operation(Generic[T]):
    """One request and the parser of its JSON answer."""

    method: str
    path: str
    parse: Callable[[Any], T]
    body: Any = None
    params: Mapping[str, Any] | None = None


def _mapping(parse: Callable[[Mapping[str, Any]], T], what: str = "a JSON object") -> Callable[[Any], T]:
    """A parser of an answer that must be a JSON object: anything else is a :class:`DriftlockError`
    (a proxy's or another service's 200 must not pass for Driftlock's answer)."""

    def read(data: Any) -> T:
        if not isinstance(data, Mapping):
            raise _not_an_answer(what, data)
        return parse(data)

    return read


def _detection(data: Any) -> DetectionResult:
    """A detect answer: a JSON object with an ``anomalies`` list (``null`` is read as empty)."""
    anomalies = data.get("anomalies", False) if isinstance(data, Mapping) else False
    if not (anomalies is None or isinstance(anomalies, list)):
        raise _not_an_answer("a detection result (a JSON object with an 'anomalies' list)", data)
    return DetectionResult.from_dict(data)


def _not_an_answer(what: str, data: Any) -> DriftlockError:
    shown = repr(data)
    shown = shown if len(shown) <= 200 else shown[:200] + "..."
    return DriftlockError(
        f"Driftlock answered with HTTP 200 but not {what}: {shown}. Check that BASE_URL points at a Driftlock API.",
        code="invalid_response",
        status=200,
    )


# -- health and detection -------------------------------------------------------------------------


def health() -> Operation[Health]:
    return Operation("GET", "/healthz", _mapping(Health.from_dict))


def verify() -> Operation[str | None]:
    """The cheapest call that needs the key and changes nothing: one anomaly, read (its request id kept)."""
    return Operation("GET", "/v1/anomalies", _mapping(lambda d: _request_id(d)), params={"limit": 1})


def _request_id(data: Mapping[str, Any]) -> str | None:
    value = data.get("request_id")
    return None if value is None else str(value)


def readiness() -> Operation[Readiness]:
    return Operation("GET", "/readyz", _mapping(Readiness.from_dict))


def demo(events: Iterable[Any], config_override: Mapping[str, Any] | None) -> Operation[DetectionResult]:
    body: dict[str, Any] = {"events": protocol.encode_events(events)}
    if config_override:
        body["config_override"] = dict(config_override)
    return Operation("POST", "/v1/demo/detect", _detection, body)


def detect_parts(
    events: Iterable[Any], stream_id: str | None, config_override: Mapping[str, Any] | None, max_batch_size: int
) -> list[tuple[int, Operation[DetectionResult]]]:
    """The requests of one ``detect``: at most ``max_batch_size`` events each, with their offsets."""
    items = protocol.encode_events(events)
    return [
        (offset, Operation("POST", "/v1/detect", _detection, body))
        for offset, part in protocol.chunk(items, max_batch_size)
        for body in [protocol.detect_body(part, stream_id, config_override)]
    ]


# -- anomalies ------------------------------------------------------------------------------------


def list_anomalies(
    stream_id: str | None,
    status: str | None,
    from_date: str | None,
    to_date: str | None,
    limit: int,
    offset: int,
) -> Operation[AnomalyPage]:
    params = _query(stream_id=stream_id, status=status, limit=limit, offset=offset)
    params.update(_query(**{"from": from_date, "to": to_date}))
    return Operation("GET", "/v1/anomalies", _mapping(AnomalyPage.from_dict), params=params)


def get_anomaly(anomaly_id: str) -> Operation[Anomaly]:
    return Operation("GET", f"/v1/anomalies/{protocol.escape(anomaly_id)}", _mapping(Anomaly.from_dict))


def anomaly_feedback(anomaly_id: str, feedback_type: str, reason: str | None) -> Operation[ActionResult]:
    path = f"/v1/anomalies/{protocol.escape(anomaly_id)}/feedback"
    return Operation("POST", path, ActionResult.from_dict, _feedback_body(feedback_type, reason))


def export_anomaly(anomaly_id: str, fmt: str) -> Operation[ExportJob]:
    path = f"/v1/anomalies/{protocol.escape(anomaly_id)}/export"
    return Operation("POST", path, _mapping(ExportJob.from_dict), {"format": _format(fmt)})


def export_anomalies(anomaly_ids: Sequence[str], fmt: str) -> Operation[ExportJob]:
    if isinstance(anomaly_ids, str) or not all(isinstance(i, str) and i for i in anomaly_ids):
        raise DriftlockValidationError(
            f"anomaly_ids must be a list of anomaly ids, got {anomaly_ids!r}", code="invalid_argument"
        )
    body = {"format": _format(fmt), "anomaly_ids": list(anomaly_ids)}
    return Operation("POST", "/v1/anomalies/export", _mapping(ExportJob.from_dict), body)


def get_export(job_id: str) -> Operation[ExportJob]:
    return Operation("GET", f"/v1/exports/{protocol.escape(job_id)}", _mapping(ExportJob.from_dict))


# -- streams: profiles, tuning, anchors -------------------------------------------------------------


def _stream_path(stream_id: str, suffix: str) -> str:
    return f"/v1/streams/{protocol.escape(stream_id)}/{suffix}"


def get_profile(stream_id: str) -> Operation[StreamProfile]:
    return Operation("GET", _stream_path(stream_id, "profile"), StreamProfile.from_dict)


def update_profile(stream_id: str, changes: Mapping[str, Any]) -> Operation[ActionResult]:
    if not isinstance(changes, Mapping) or not changes:
        raise DriftlockValidationError(
            f"update_profile takes a dict with any of {', '.join(PROFILE_FIELDS)}, got {changes!r}",
            code="invalid_argument",
        )
    unknown = sorted(set(changes) - set(PROFILE_FIELDS))
    if unknown:
        raise DriftlockValidationError(
            f"update_profile got unknown field(s) {', '.join(unknown)}; allowed: {', '.join(PROFILE_FIELDS)}",
            code="invalid_argument",
        )
    if "profile" in changes and changes["profile"] not in PROFILES:
        raise DriftlockValidationError(
            f"profile must be one of {', '.join(PROFILES)}, got {changes['profile']!r}", code="invalid_argument"
        )
    return Operation("PATCH", _stream_path(stream_id, "profile"), ActionResult.from_dict, dict(changes))


def get_tuning(stream_id: str) -> Operation[StreamTuning]:
    return Operation("GET", _stream_path(stream_id, "tuning"), StreamTuning.from_dict)


def get_anchor(stream_id: str) -> Operation[AnchorSettings]:
    return Operation("GET", _stream_path(stream_id, "anchor"), AnchorSettings.from_dict)


def get_anchor_details(stream_id: str) -> Operation[AnchorDetails]:
    return Operation("GET", _stream_path(stream_id, "anchor/details"), AnchorDetails.from_dict)


def reset_anchor(stream_id: str, request: Mapping[str, Any]) -> Operation[ActionResult]:
    """``request`` is ``{"events": [...], "force_reset": bool}``; events are wrapped as ``detect`` wraps them,
    so the anchor is made of the same bytes detection compares."""
    if not isinstance(request, Mapping) or "events" not in request:
        raise DriftlockValidationError(
            "reset_anchor takes {'events': [...], 'force_reset': True|False}", code="invalid_argument"
        )
    body: dict[str, Any] = {"events": protocol.encode_events(request["events"])}
    if "force_reset" in request:
        body["force_reset"] = bool(request["force_reset"])
    return Operation("POST", _stream_path(stream_id, "reset-anchor"), ActionResult.from_dict, body)


def deactivate_anchor(stream_id: str) -> Operation[ActionResult]:
    return Operation("DELETE", _stream_path(stream_id, "anchor"), ActionResult.from_dict)


# -- incidents ------------------------------------------------------------------------------------


def list_incidents(stream_id: str | None, status: str | None, limit: int, offset: int) -> Operation[IncidentPage]:
    params = _query(stream_id=stream_id, status=status, limit=limit, offset=offset)
    return Operation("GET", "/v1/incidents", _mapping(IncidentPage.from_dict), params=params)


def get_incident(incident_id: str) -> Operation[Incident]:
    return Operation("GET", f"/v1/incidents/{protocol.escape(incident_id)}", _mapping(Incident.from_dict))


def incident_feedback(incident_id: str, feedback_type: str, reason: str | None) -> Operation[ActionResult]:
    path = f"/v1/incidents/{protocol.escape(incident_id)}/feedback"
    return Operation("POST", path, ActionResult.from_dict, _feedback_body(feedback_type, reason))


# -- checks shared by several calls ------------------------------------------------------------------


def _query(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _feedback_body(feedback_type: str, reason: str | None) -> dict[str, Any]:
    if feedback_type not in FEEDBACK_TYPES:
        raise DriftlockValidationError(
            f"feedback_type must be one of {', '.join(FEEDBACK_TYPES)}, got {feedback_type!r}",
            code="invalid_argument",
        )
    return {"feedback_type": feedback_type, **({"reason": reason} if reason else {})}


def _format(fmt: str) -> str:
    if fmt not in EXPORT_FORMATS:
        raise DriftlockValidationError(
            f"export format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}", code="invalid_argument"
        )
    return fmt
