"""Log lines -> Driftlock events, one function per format, for ``driftlock stream --format``.

``json``: each line is an event (an envelope with ``body``, or a bare value that becomes the body).
``nginx`` and ``apache``: access logs, mapped as a server span of the same request is (see
:mod:`driftlock.logs._access`); nginx's JSON log lines are read too. ``syslog`` and ``logfmt``:
application logs, as events of type ``log``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

from driftlock.logs._access import (
    AccessRecord,
    access_event,
    loads_record,
    parse_access_json,
    parse_access_line,
)
from driftlock.logs._agents import agent_family
from driftlock.logs._errors import LogFormatError
from driftlock.logs._logfmt import logfmt_event, parse_logfmt
from driftlock.logs._syslog import syslog_event

__all__ = [
    "FORMATS",
    "AccessRecord",
    "LogFormatError",
    "access_event",
    "agent_family",
    "line_to_event",
    "parse_access_json",
    "parse_access_line",
    "parse_logfmt",
]


def _json(line: str, service: str) -> Any:
    try:
        return json.loads(line)
    except ValueError as exc:
        raise LogFormatError(f"not valid JSON ({exc})") from None


def _access(line: str, service: str) -> dict[str, Any]:
    if line.lstrip().startswith(("{", "[")):
        return access_event(parse_access_json(loads_record(line)), service=service)
    return access_event(parse_access_line(line), service=service)


FORMATS: Final[dict[str, Callable[[str, str], Any]]] = {
    "json": _json,
    "nginx": _access,
    "apache": _access,
    "syslog": lambda line, service: syslog_event(line),
    "logfmt": lambda line, service: logfmt_event(line),
}
"""``--format`` name -> function of (line, service name) returning the event."""


def line_to_event(line: str, fmt: str, *, service: str | None = None) -> Any:
    """The event for one line in format ``fmt`` (one of :data:`FORMATS`); ``service`` names the
    access-log events' service (default: the format). Raises :class:`LogFormatError` saying what is wrong."""
    try:
        parse = FORMATS[fmt]
    except KeyError:
        raise ValueError(f"unknown log format {fmt!r}: use one of {', '.join(FORMATS)}") from None
    return parse(line, service or fmt)
