"""logfmt lines (``time=... level=info msg="user logged in" duration=12ms``) -> events.

Every key becomes a field of the body, except the time, which becomes the event's timestamp (exact
times differ on every line); the engine judges numbers by their magnitude and tokenizes ids.
"""

from __future__ import annotations

import re
from typing import Any

from driftlock.logs._errors import LogFormatError

__all__ = ["logfmt_event", "parse_logfmt"]

_PAIR = re.compile(r'\s*([^\s=]+)(?:=("(?:[^"\\]|\\.)*"|[^\s"]*))?')
_ESCAPE = re.compile(r"\\(.)")
_TIME_KEYS = ("time", "ts", "timestamp", "t", "@timestamp")


def parse_logfmt(line: str) -> dict[str, str | bool]:
    """The pairs of one line; a bare key is ``True``. Raises on an unclosed quote or no pair at all."""
    text = line.strip()
    fields: dict[str, str | bool] = {}
    position = 0
    while position < len(text):
        m = _PAIR.match(text, position)
        if m is None or m.end() == position:
            raise LogFormatError(f"not logfmt at column {position + 1}: {text[position : position + 30]!r}")
        key, value = m.group(1), m.group(2)
        if value == "" and text.startswith('"', m.end()):
            raise LogFormatError(f"not logfmt: the quoted value of {key!r} is not closed")
        if value is None:
            fields[key] = True
        elif value.startswith('"'):
            fields[key] = _ESCAPE.sub(r"\1", value[1:-1])
        else:
            fields[key] = value
        position = m.end()
    if not fields or all(v is True for v in fields.values()):
        raise LogFormatError("not logfmt: no key=value pair")
    return fields


def logfmt_event(line: str) -> dict[str, Any]:
    """One logfmt line as an event of type ``log``."""
    fields = parse_logfmt(line)
    event: dict[str, Any] = {"type": "log"}
    for key in _TIME_KEYS:
        value = fields.pop(key, None)
        if isinstance(value, str) and "timestamp" not in event:
            event["timestamp"] = value
    event["body"] = fields
    return event
