"""Syslog lines (RFC 3164 as files and ``logger`` write them, RFC 5424, rsyslog's ISO timestamps) -> events.

The body is what should be judged: the program, the severity when the line carries a priority, and
the message. The host and the process id differ by machine and by run, so they stay out; the engine
tokenizes ids and numbers inside the message.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from driftlock.logs._errors import LogFormatError

__all__ = ["syslog_event"]

_SEVERITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
_PRI = re.compile(r"<(\d{1,3})>")
_RFC5424 = re.compile(
    r"1 (?P<time>\S+) (?P<host>\S+) (?P<app>\S+) (?P<pid>\S+) (?P<msgid>\S+) "
    r"(?P<sd>-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: (?P<msg>.*))?"
)
_RFC3164 = re.compile(
    r"(?P<time>[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2}|\d{4}-\d{2}-\d{2}T\S+) (?P<host>\S+) "
    r"(?P<app>[^\s:\[]+)(?:\[(?P<pid>[^\]]*)\])?: ?(?P<msg>.*)"
)
_MAX_MESSAGE = 1000


def syslog_event(line: str) -> dict[str, Any]:
    """One syslog line as an event of type ``log``."""
    text = line.rstrip("\r\n")
    body: dict[str, Any] = {"kind": "syslog"}
    pri = _PRI.match(text)
    if pri:
        value = int(pri.group(1))
        if value > 191:
            raise LogFormatError(f"syslog priority <{value}> is out of range (0-191)")
        body["severity"] = _SEVERITIES[value % 8]
        text = text[pri.end() :]
    m = _RFC5424.fullmatch(text) or _RFC3164.fullmatch(text)
    if m is None:
        raise LogFormatError("not a syslog line (RFC 3164 'Mmm dd hh:mm:ss host app[pid]: message' or RFC 5424)")
    body["app"] = m["app"] if m["app"] != "-" else None
    if "msgid" in m.groupdict() and m["msgid"] != "-":
        body["msgid"] = m["msgid"]
    body["message"] = (m["msg"] or "")[:_MAX_MESSAGE]
    event: dict[str, Any] = {"type": "log", "body": body}
    when = _timestamp(m["time"])
    if when:
        event["timestamp"] = when
    return event


def _timestamp(text: str) -> str | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:  # RFC 3164 has no year: the current one
            moment = datetime.strptime(f"{datetime.now(UTC).year} {text}", "%Y %b %d %H:%M:%S").replace(tzinfo=UTC)
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
