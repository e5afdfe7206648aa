"""Input validated once, at the edge: what a request may carry so that everything stored can be read back.

:func:`parse_json` is how ``driftlock serve`` reads a JSON body: UTF-8 only, no ``NaN``/``Infinity``
nor floats beyond a 64-bit float's range (JSON cannot carry them back), no lone surrogates (they
cannot be encoded as UTF-8), at most :data:`MAX_DEPTH` levels of nesting. The request readers below it
(:func:`detect_request`, :func:`feedback_request`, ...) turn a decoded body into the typed arguments of
the service's methods. :func:`stream_id` says what a stream id is; :func:`encoded_events` (the one part
the service itself calls) serializes a batch's events for the engine and refuses one it could not keep
(too large, or not representable as JSON), naming its index. Every failure is a
:class:`~driftlock.service.errors.ServiceError` whose message says what to change.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from driftlock.engine.tokenize import event_bytes
from driftlock.service.budgets import human_bytes
from driftlock.service.errors import ApiError, InvalidArgument, ServiceError
from driftlock.vocabulary import ANOMALY_STATUSES, FEEDBACK_TYPES

__all__ = [
    "DEFAULT_STREAM",
    "MAX_DEMO_BYTES",
    "MAX_DEMO_EVENTS",
    "MAX_DEMO_EVENT_BYTES",
    "MAX_DEMO_PERMUTATIONS",
    "MAX_DEPTH",
    "MAX_EVENTS",
    "MAX_EVENT_BYTES",
    "MAX_MUTE_SECONDS",
    "MAX_STREAM_ID",
    "MIN_DEMO_HOP",
    "EventError",
    "anchor_request",
    "anomaly_filter_request",
    "detect_request",
    "encoded_events",
    "export_request",
    "feedback_request",
    "int_param",
    "mute_request",
    "parse_json",
    "profile_request",
    "stream_id",
]

MAX_DEPTH = 64
"""Levels of arrays and objects in one body (the body's own object is the first)."""
MAX_EVENT_BYTES = 1 << 20
"""One event, serialized as the engine keeps it (1 MiB, as the reference server's limit); ``driftlock serve``
keeps less (:class:`~driftlock.service.budgets.Budgets`)."""
MAX_STREAM_ID = 200
DEFAULT_STREAM = "default"
MAX_EVENTS = 1000
"""Events in one detect call."""
MAX_DEMO_EVENTS = 200
"""Events in one demo call. The demo needs no key, so it accepts less than detect (one 21 KB request with 10,000
permutations and hop_size 1 once cost 6 s of CPU):"""
MAX_DEMO_EVENT_BYTES = 4 * 1024
"""bytes of one demo event once serialized,"""
MAX_DEMO_BYTES = 64 * 1024
"""bytes of a demo call's events in all,"""
MIN_DEMO_HOP = 5
"""the smallest hop_size (detections per event),"""
MAX_DEMO_PERMUTATIONS = 300
"""and permutations per detection (detect's cap, which detect applies silently and the demo refuses past)."""
MAX_MUTE_SECONDS = 30 * 86_400
PROFILE_FIELDS = ("profile", "auto_tune_enabled", "adaptive_window_enabled", "retention_seconds")
MIN_RETENTION_SECONDS = 60
MAX_RETENTION_SECONDS = 10 * 365 * 86400  # ten years

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class EventError(ServiceError):
    """One event of a batch cannot be kept; ``index`` is its position in the batch."""

    def __init__(self, index: int, problem: str, *, too_large: bool = False) -> None:
        super().__init__(f"event {index} {problem}")
        self.index = index
        self.code = "payload_too_large" if too_large else InvalidArgument.code


def _no_constant(name: str) -> Any:
    raise ApiError(
        400, f"invalid json: {name} is not a JSON number; send null or a string instead (JSON has no NaN or Infinity)"
    )


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ApiError(
            400, f"invalid json: the number {text[:40]} is out of range (at most about 1.8e308); send it as a string"
        )
    return value


_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite_float)


def parse_json(body: bytes) -> Any:
    """The JSON value of a request body (None when empty), or ApiError 400 saying what is wrong with it."""
    if not body:
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"invalid json: the body is not UTF-8 (byte {exc.start}); send UTF-8 JSON") from None
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise ApiError(400, f"invalid json: nested deeper than {MAX_DEPTH} levels of arrays and objects") from None
    except ValueError as exc:
        if "integer string conversion" in str(exc):
            raise ApiError(400, "invalid json: an integer has more than 4300 digits; send it as a string") from None
        raise ApiError(400, f"invalid json: {exc}") from None
    surrogates = _SURROGATE_ESCAPE.search(body) is not None
    if surrogates or not _shallow(body):
        _check(value, surrogates)
    return value


_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _shallow(body: bytes) -> bool:
    """True when the body certainly nests at most :data:`MAX_DEPTH` levels, found at C speed: its brackets
    (those inside strings too) are reduced by deleting adjacent pairs, which takes at most two levels a pass.
    False means "walk it to know" (deeper, or brackets in strings that do not pair)."""
    rest = body.translate(None, _NOT_BRACKETS)
    for _ in range(MAX_DEPTH // 2):
        if not rest:
            return True
        rest = rest.replace(b"[]", b"").replace(b"{}", b"")
    return not rest


def _check(value: Any, surrogates: bool) -> None:
    """Depth and (when the body escapes any) lone surrogates, without recursion: the value may be as deep as
    the parser allowed. Only containers are stacked, with their parent, so that a path is built on failure only."""
    if type(value) is not dict and type(value) is not list:
        if surrogates and isinstance(value, str) and _has_surrogate(value):
            raise ApiError(400, f"invalid json: the body {_SURROGATE_HINT}")
        return
    stack: list[tuple[Any, int, Any, Any]] = [(value, 1, None, None)]  # (container, depth, parent entry, key)
    while stack:
        entry = stack.pop()
        item, depth = entry[0], entry[1]
        if depth > MAX_DEPTH:
            raise ApiError(400, f"invalid json: {_path(entry)} is nested deeper than {MAX_DEPTH} levels")
        pairs = item.items() if type(item) is dict else enumerate(item)
        for key, child in pairs:
            kind = type(child)
            if kind is dict or kind is list:
                stack.append((child, depth + 1, entry, key))
            elif surrogates and kind is str and _has_surrogate(child):
                raise ApiError(400, f"invalid json: {_path((child, depth + 1, entry, key))} {_SURROGATE_HINT}")
            if surrogates and type(key) is str and _has_surrogate(key):
                raise ApiError(400, f"invalid json: a key in {_path(entry)} {_SURROGATE_HINT}")


def _path(entry: tuple[Any, int, Any, Any]) -> str:
    """``events[0].body.route`` for the value ``entry`` stands for (``the body`` for the whole body)."""
    parts: list[str] = []
    while entry[2] is not None:
        key = entry[3]
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
        entry = entry[2]
    path = "".join(reversed(parts)).lstrip(".") or "the body"
    return path if len(path) <= 80 else path[:77] + "..."


_SURROGATE_HINT = "holds a lone UTF-16 surrogate (such as \\ud800), which is not text: escape pairs only"


def _has_surrogate(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def stream_id(value: Any) -> str:
    """A stream id: absent or null is the default stream; otherwise a string of 1 to 200 characters, printable."""
    if value is None:
        return DEFAULT_STREAM
    what = (
        f"stream_id must be a string of 1 to {MAX_STREAM_ID} printable characters (or absent/null for the "
        f"{DEFAULT_STREAM!r} stream)"
    )
    if not isinstance(value, str):
        raise InvalidArgument(f"{what}; got {type(value).__name__} {json.dumps(value)[:60]}")
    if not value.strip() or len(value) > MAX_STREAM_ID:
        raise InvalidArgument(
            f"{what}; got {len(value)} characters{' of blanks' if value and not value.strip() else ''}"
        )
    if _has_surrogate(value) or _CONTROL.search(value):
        raise InvalidArgument(f"{what}; got one with a control character or a lone surrogate")
    return value


def encoded_events(
    events: Sequence[Any],
    *,
    tokenizer: bool = True,
    max_bytes: int = MAX_EVENT_BYTES,
    total_bytes: int | None = None,
    where: str = " (driftlock serve --max-event-bytes)",
) -> list[bytes]:
    """Each event as the engine keeps it; EventError (too large past ``max_bytes``, or past ``total_bytes``
    for the batch) names the event, and the limit (``where`` says whose)."""
    encoded = []
    total = 0
    for index, event in enumerate(events):
        try:
            data = event_bytes(event, tokenizer=tokenizer)
        except UnicodeEncodeError:
            raise EventError(index, _SURROGATE_HINT) from None
        except RecursionError:
            raise EventError(index, f"is nested deeper than {MAX_DEPTH} levels of arrays and objects") from None
        if len(data) > max_bytes:
            raise EventError(
                index,
                f"is {len(data)} bytes once serialized; the limit is {max_bytes} bytes ({human_bytes(max_bytes)}) per "
                f"event{where}: send less of it",
                too_large=True,
            )
        total += len(data)
        if total_bytes is not None and total > total_bytes:
            raise EventError(
                index,
                f"takes the batch to {total} bytes once serialized; the limit is {total_bytes} bytes "
                f"({human_bytes(total_bytes)}) per request{where}: send fewer or smaller events",
                too_large=True,
            )
        if (b"NaN" in data or b"Infinity" in data) and not _is_json(data):
            raise EventError(index, "holds NaN or Infinity, which JSON cannot carry: send null or a string")
        encoded.append(data)
    return encoded


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data, parse_constant=_no_constant)
    except (ServiceError, ValueError):
        return False
    return True


def int_param(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """A query parameter as an integer from ``low`` to ``high`` (``default`` when absent or empty)."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be between {low} and {high}, got {value}")
    return value


# -- request bodies and queries, read into the service's arguments -------------------------------------------


def events_request(body: Any, max_events: int) -> tuple[list[Any], dict[str, Any]]:
    """The events and the ``config_override`` of a detect body."""
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
    return events, dict(override or {})


def detect_request(body: Any) -> tuple[str, list[Any], dict[str, Any], int | None]:
    """(stream id, events, config_override without ``confirmations``, confirmations) of ``POST /v1/detect``."""
    events, override = events_request(body, MAX_EVENTS)
    confirmations = override.pop("confirmations", None)
    if confirmations is not None and (
        isinstance(confirmations, bool) or not isinstance(confirmations, int) or not 1 <= confirmations <= 100
    ):
        raise ApiError(400, f"config_override.confirmations must be an integer from 1 to 100, got {confirmations!r}")
    return stream_id(body.get("stream_id")), events, override, confirmations


def feedback_request(body: Any) -> tuple[str, str | None]:
    """(feedback type, reason) of a feedback body."""
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


def anomaly_filter_request(query: Mapping[str, str]) -> tuple[str | None, str | None, float | None, float | None]:
    """(stream id, status, since, until) of ``GET /v1/anomalies``."""
    status = query.get("status") or None
    if status is not None and status not in ANOMALY_STATUSES:
        raise ApiError(400, f"status must be one of {', '.join(ANOMALY_STATUSES)}, got {status!r}")
    return query.get("stream_id") or None, status, _time_param(query, "from"), _time_param(query, "to")


def mute_request(body: Any) -> int:
    """The seconds of ``POST /v1/streams/{id}/mute``."""
    if not isinstance(body, Mapping) or "seconds" not in body:
        raise ApiError(400, 'body must be {"seconds": <how long to mute, in seconds>}')
    value = body["seconds"]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"seconds must be an integer, got {value!r}")
    return mute_seconds(value)


def mute_seconds(seconds: Any) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 <= seconds <= MAX_MUTE_SECONDS:
        raise InvalidArgument(f"seconds must be an integer from 0 to {MAX_MUTE_SECONDS}")
    return seconds


def profile_request(body: Any) -> dict[str, Any]:
    """The fields of ``PATCH /v1/streams/{id}/profile``, checked."""
    from driftlock.service.profiles import PROFILE_NAMES

    if not isinstance(body, Mapping) or not body:
        raise ApiError(400, f"body must be an object with any of {', '.join(PROFILE_FIELDS)}")
    unknown = sorted(set(body) - set(PROFILE_FIELDS))
    if unknown:
        raise ApiError(400, f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(PROFILE_FIELDS)}")
    if "profile" in body and body["profile"] not in PROFILE_NAMES:
        raise ApiError(400, f"profile must be one of {', '.join(PROFILE_NAMES)}, got {body['profile']!r}")
    for key in ("auto_tune_enabled", "adaptive_window_enabled"):
        if key in body and not isinstance(body[key], bool):
            raise ApiError(400, f"{key} must be true or false, got {body[key]!r}")
    seconds = body.get("retention_seconds")
    if seconds is not None and (
        isinstance(seconds, bool)
        or not isinstance(seconds, int)
        or not MIN_RETENTION_SECONDS <= seconds <= MAX_RETENTION_SECONDS
    ):
        raise ApiError(
            400,
            f"retention_seconds must be an integer from {MIN_RETENTION_SECONDS} to {MAX_RETENTION_SECONDS} (ten "
            f"years), or null to follow the server's --retention; got {seconds!r}",
        )
    return dict(body)


def anchor_request(body: Any) -> tuple[list[Any] | None, bool]:
    """(known-good events or None for the stream's baseline, force_reset) of ``POST .../reset-anchor``."""
    if not isinstance(body, Mapping):
        raise ApiError(400, 'body must be {"events": [...known-good events], "force_reset": true|false}')
    force = body.get("force_reset", False)
    if not isinstance(force, bool):
        raise ApiError(400, f"force_reset must be true or false, got {force!r}")
    given = events_request(body, MAX_EVENTS)[0] if body.get("events") is not None else None
    return given, force


def export_request(body: Any, anomaly_id: str | None) -> tuple[list[str], str]:
    """(anomaly ids, format) of an export body (``{format, anomaly_ids}``, or ``{format}`` for one anomaly in the
    path)."""
    from driftlock.service.exports import MAX_EXPORT_ANOMALIES, check_format

    body = body if body is not None else {}
    if not isinstance(body, Mapping):
        raise ApiError(400, 'body must be {"format": "json|markdown|html|pdf", "anomaly_ids": [...]}')
    if anomaly_id is not None:
        ids: Any = [anomaly_id]
    elif "anomaly_ids" not in body:
        raise ApiError(400, "anomaly_ids required: the ids of the anomalies to export")
    else:
        ids = body["anomaly_ids"]
    fmt = check_format(body.get("format"))
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
        raise ApiError(400, "anomaly_ids must be a non-empty array of anomaly ids")
    if len(ids) > MAX_EXPORT_ANOMALIES:
        raise ApiError(400, f"too many anomaly_ids: max {MAX_EXPORT_ANOMALIES} per export")
    return list(dict.fromkeys(ids)), fmt
