"""Access-log lines (nginx, Apache) -> the event a server span of the same request would give.

A line is read into a :class:`~driftlock.events.SpanRecord` and mapped by
:func:`~driftlock.events.span_to_event`, the exporter's own function: method, route (the path with
ids normalized), status, query (scrubbed) and the duration bucket come out exactly as they do for a
span, so a stream of log lines is judged as a stream of spans is. A log knows two things a span
does not carry: the response size, added as a bucket on the same 1-2.5-5 scale, and the
user-agent's family.

Formats: the combined format (nginx's default, Apache's ``combined``), Apache's ``common`` format
(no referer, no agent), either one followed by a request time (a number with a point: seconds, as
nginx's ``$request_time``; a whole number: microseconds, as Apache's ``%D``; or ``rt=``/
``request_time=``), and nginx JSON logs (``log_format ... escape=json``) with nginx's variable names.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from driftlock.engine.tokenize import magnitude
from driftlock.events import SpanRecord, span_to_event
from driftlock.logs._agents import agent_family
from driftlock.logs._errors import LogFormatError

__all__ = ["AccessRecord", "access_event", "parse_access_json", "parse_access_line"]

_QUOTED = r'"((?:[^"\\]|\\.)*)"'
_LINE = re.compile(
    r"(?P<host>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<time>[^\]]+)\] "
    + _QUOTED.replace("(", "(?P<request>", 1)
    + r" (?P<status>\d{3}) (?P<bytes>\d+|-)"
    + r"(?: "
    + _QUOTED.replace("(", "(?P<referer>", 1)
    + " "
    + _QUOTED.replace("(", "(?P<agent>", 1)
    + r")?(?P<rest>.*)"
)
_TIME = re.compile(r"(?:^|\s)(?:rt=|request_time=)?(\d+(?:\.\d+)?)(?=\s|$)")
_METHOD = re.compile(r"[A-Z][A-Z_-]{0,19}")
_MAX_PATH = 2000


@dataclass(frozen=True)
class AccessRecord:
    """One request as an access log tells it."""

    method: str
    target: str  # path and query as sent; "-" when the request line could not be read
    status: int
    bytes: int | None = None
    agent: str | None = None
    time: datetime | None = None
    duration: float | None = None  # seconds


def parse_access_line(line: str) -> AccessRecord:
    """Read one line in the combined or common format (a request time may follow)."""
    m = _LINE.fullmatch(line.rstrip("\r\n"))
    if m is None:
        raise LogFormatError("not an access log line in the combined or common format")
    method, target = _request(m["request"])
    return AccessRecord(
        method=method,
        target=target,
        status=int(m["status"]),
        bytes=None if m["bytes"] == "-" else int(m["bytes"]),
        agent=m["agent"],
        time=_time(m["time"]),
        duration=_duration(m["rest"]),
    )


def parse_access_json(data: Mapping[str, Any]) -> AccessRecord:
    """Read an nginx JSON log record (``request`` or ``method`` + ``uri``/``request_uri``, ``status``...)."""
    if "request" in data:
        method, target = _request(str(data["request"]))
    elif "method" in data or "request_method" in data:
        method = str(data.get("method") or data.get("request_method"))
        target = str(data.get("request_uri") or data.get("uri") or data.get("path") or "/")
        if data.get("args") and "?" not in target:
            target += "?" + str(data["args"])
    else:
        raise LogFormatError("a JSON access log record needs 'request' or 'method' and 'uri'")
    status = _int(data.get("status"))
    if status is None:
        raise LogFormatError("a JSON access log record needs a numeric 'status'")
    size = next((_int(data[k]) for k in ("body_bytes_sent", "bytes_sent", "bytes") if k in data), None)
    agent = data.get("http_user_agent", data.get("user_agent"))
    when = next((_time(str(data[k])) for k in ("timestamp", "time_iso8601", "time_local", "time") if data.get(k)), None)
    duration = next((_float(data[k]) for k in ("request_time", "duration") if k in data), None)
    return AccessRecord(method, target, status, size, None if agent is None else str(agent), when, duration)


def access_event(record: AccessRecord, *, service: str) -> dict[str, Any]:
    """The event for one request: the span mapping's, plus ``bytes`` and ``agent``."""
    path, _, query = record.target.partition("?")
    start = int(record.time.timestamp() * 1e9) if record.time else 0
    attributes: dict[str, Any] = {
        "http.request.method": record.method,
        "url.path": unquote(path)[:_MAX_PATH] if path != "-" else "-",
        "http.response.status_code": record.status,
    }
    if query:
        attributes["url.query"] = query
    if record.status >= 500:
        attributes["error.type"] = str(record.status)  # what the semantic conventions set on a span
    span = SpanRecord(
        name=f"{record.method} {path}",
        kind="server",
        start_ns=start,
        end_ns=start + int((record.duration or 0) * 1e9),
        status="error" if record.status >= 500 else "unset",
        attributes=attributes,
        resource={"service.name": service},
    )
    event = span_to_event(span, span_kinds=("server",))
    assert event is not None  # a server span with a method is always exported
    body = event["body"]
    if record.duration is None:
        del body["duration"]  # the log did not say; a bucket would claim it was fast
    if record.time is None:
        del event["timestamp"]
    if record.bytes is not None:
        body["bytes"] = magnitude(record.bytes) + "B"
    body["agent"] = agent_family(record.agent)
    return event


def _request(request: str) -> tuple[str, str]:
    """``GET /a?b HTTP/1.1`` -> ("GET", "/a?b"); a line that is not a request (a TLS hello sent to the
    plain port, an empty request) -> ("-", "-"): itself worth judging."""
    parts = request.split(" ")
    if len(parts) in (2, 3) and _METHOD.fullmatch(parts[0]) and parts[1]:
        return parts[0], parts[1]
    return "-", "-"


@functools.lru_cache(maxsize=1024)
def _time(text: str) -> datetime | None:
    """Cached: a busy log repeats each second on many lines, and ``strptime`` is a quarter of a line's cost."""
    try:
        return datetime.strptime(text, "%d/%b/%Y:%H:%M:%S %z")
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _duration(rest: str) -> float | None:
    m = _TIME.search(rest)
    if m is None:
        return None
    value = m.group(1)
    return float(value) if "." in value else int(value) / 1e6


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def loads_record(line: str) -> Mapping[str, Any]:
    """A JSON object from one line, or a clear error."""
    try:
        data = json.loads(line)
    except ValueError as exc:
        raise LogFormatError(f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise LogFormatError(f"a JSON log line must be an object, got {type(data).__name__}")
    return data
