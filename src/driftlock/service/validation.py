"""Input validated once, at the edge: what a request may carry so that everything stored can be read back.

:func:`parse_json` is how ``driftlock serve`` reads a JSON body: UTF-8 only, no ``NaN``/``Infinity``
nor floats beyond a 64-bit float's range (JSON cannot carry them back), no lone surrogates (they
cannot be encoded as UTF-8), at most :data:`MAX_DEPTH` levels of nesting. :func:`stream_id` says what
a stream id is; :func:`encoded_events` serializes a batch's events for the engine and refuses one it
could not keep (too large, or not representable as JSON), naming its index. Every failure is an
:class:`~driftlock.service.errors.ApiError` whose message says what to change.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from driftlock.engine.tokenize import event_bytes
from driftlock.service.errors import ApiError

__all__ = [
    "DEFAULT_STREAM",
    "MAX_DEPTH",
    "MAX_EVENT_BYTES",
    "MAX_STREAM_ID",
    "EventError",
    "encoded_events",
    "parse_json",
    "stream_id",
]

MAX_DEPTH = 64
"""Levels of arrays and objects in one body (the body's own object is the first)."""
MAX_EVENT_BYTES = 1 << 20
"""One event, serialized as the engine keeps it (1 MiB, as the reference server's limit)."""
MAX_STREAM_ID = 200
DEFAULT_STREAM = "default"

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class EventError(ApiError):
    """One event of a batch cannot be kept; ``index`` is its position in the batch."""

    def __init__(self, status: int, index: int, problem: str) -> None:
        super().__init__(status, f"event {index} {problem}")
        self.index = index


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
        raise ApiError(400, f"{what}; got {type(value).__name__} {json.dumps(value)[:60]}")
    if not value.strip() or len(value) > MAX_STREAM_ID:
        raise ApiError(400, f"{what}; got {len(value)} characters{' of blanks' if value and not value.strip() else ''}")
    if _has_surrogate(value) or _CONTROL.search(value):
        raise ApiError(400, f"{what}; got one with a control character or a lone surrogate")
    return value


def encoded_events(events: Sequence[Any], *, tokenizer: bool = True) -> list[bytes]:
    """Each event as the engine keeps it; ApiError (413 past :data:`MAX_EVENT_BYTES`, else 400) names the event."""
    encoded = []
    for index, event in enumerate(events):
        try:
            data = event_bytes(event, tokenizer=tokenizer)
        except UnicodeEncodeError:
            raise EventError(400, index, _SURROGATE_HINT) from None
        except RecursionError:
            raise EventError(400, index, f"is nested deeper than {MAX_DEPTH} levels of arrays and objects") from None
        if len(data) > MAX_EVENT_BYTES:
            raise EventError(
                413,
                index,
                f"is {len(data)} bytes once serialized; the limit is {MAX_EVENT_BYTES} bytes (1 MiB) per event: "
                "send less of it",
            )
        if (b"NaN" in data or b"Infinity" in data) and not _is_json(data):
            raise EventError(400, index, "holds NaN or Infinity, which JSON cannot carry: send null or a string")
        encoded.append(data)
    return encoded


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data, parse_constant=_no_constant)
    except (ApiError, ValueError):
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
