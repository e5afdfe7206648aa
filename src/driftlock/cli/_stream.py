"""``driftlock stream``: log lines from stdin, as they come, into a buffered stream; incidents printed as they open.

Reading never waits for the API: lines become events and go into the client's
:class:`~driftlock.client.SyncStream`, whose worker thread sends a batch when ``--batch-size`` are
waiting and every ``--flush-interval`` seconds. Memory stays bounded whatever the input: a line is
read at most ``MAX_LINE`` bytes at a time, and the stream holds at most ``--max-buffered`` events,
dropping (and counting) the oldest when the API is slower than the input. End of input, Ctrl-C
(SIGINT) and SIGTERM send what is buffered, within ``--shutdown-timeout`` seconds.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from dataclasses import dataclass
from types import FrameType
from typing import Any, BinaryIO, Final

from driftlock.cli import _output, _settings
from driftlock.cli._detect import add_common
from driftlock.cli._settings import CliError
from driftlock.client import SyncStream
from driftlock.exceptions import DriftlockError
from driftlock.logs import FORMATS, LogFormatError, line_to_event
from driftlock.models import DetectionResult

__all__ = ["add_stream"]

MAX_LINE: Final = 64 * 1024
"""Longer lines are skipped (and counted), read in pieces of this size: never held whole."""
ERROR_INTERVAL: Final = 10.0
"""Seconds between two reports of one kind of send error."""
SHOWN_ERRORS: Final = 10
"""Unreadable lines reported one by one; after these they are only counted."""


class _Stop(Exception):
    """SIGTERM: stop reading and flush, as on Ctrl-C."""


@dataclass
class _Counts:
    lines: int = 0
    unreadable: int = 0
    opened: int = 0
    errors: int = 0


def _lines(source: BinaryIO) -> Any:
    """(number, text, problem) per line; a line longer than MAX_LINE is skipped in pieces."""
    number = 0
    while True:
        raw = source.readline(MAX_LINE)
        if not raw:
            return
        number += 1
        if len(raw) == MAX_LINE and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):
                raw = source.readline(MAX_LINE)
            yield number, "", f"longer than {MAX_LINE} bytes: skipped"
            continue
        yield number, raw.decode("utf-8", errors="replace"), None


class _Printer:
    """Incidents to stdout as they open and resolve; send errors to stderr."""

    def __init__(self, output: str, counts: _Counts) -> None:
        self.output = output
        self.counts = counts
        self._lock = threading.Lock()
        self._reported: dict[str, float] = {}

    def batch(self, result: DetectionResult) -> None:
        if result.incidents is None:  # an API that marks no incidents: each anomaly is told
            for anomaly in result.anomalies:
                with self._lock:
                    if self.output == "json":
                        print(json.dumps({"anomaly": _output.anomaly_dict(anomaly)}), flush=True)
                    else:
                        print(_output.anomaly_text(anomaly), flush=True)
            return
        for incident in result.incidents:
            if incident.change not in ("opened", "resolved"):
                continue
            with self._lock:
                self.counts.opened += incident.change == "opened"
                if self.output == "json":
                    print(json.dumps({"incident": _output.incident_dict(incident)}), flush=True)
                else:
                    print(_output.incident_text(incident), flush=True)

    def error(self, error: BaseException) -> None:
        """Each kind of error (its code) printed at most once every ERROR_INTERVAL seconds: a full buffer
        reports every push, and a down API every flush."""
        kind = getattr(error, "code", None) or type(error).__name__
        now = time.monotonic()
        with self._lock:
            self.counts.errors += 1
            if now - self._reported.get(kind, -ERROR_INTERVAL) >= ERROR_INTERVAL:
                self._reported[kind] = now
                print(f"driftlock stream: {error}", file=sys.stderr, flush=True)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def _read(source: BinaryIO, stream: SyncStream, fmt: str, counts: _Counts) -> None:
    for number, text, problem in _lines(source):
        counts.lines = number
        if problem is None and not text.strip():
            continue
        try:
            if problem is not None:
                raise LogFormatError(problem)
            stream.push(line_to_event(text, fmt))
        except (LogFormatError, DriftlockError) as exc:
            counts.unreadable += 1
            if counts.unreadable <= SHOWN_ERRORS:
                shown = text.strip()[:120]
                print(f"driftlock stream: line {number}: {exc}" + (f": {shown!r}" if shown else ""), file=sys.stderr)
                if counts.unreadable == SHOWN_ERRORS:
                    print("driftlock stream: further unreadable lines are counted, not shown", file=sys.stderr)


def _close(stream: SyncStream, timeout: float) -> bool:
    """Send what is buffered, giving up after ``timeout`` seconds; True when it finished."""
    closer = threading.Thread(target=stream.close, kwargs={"timeout": timeout}, daemon=True)
    closer.start()
    closer.join(timeout)
    return not closer.is_alive()


def _stream(args: argparse.Namespace) -> int:
    stored = _settings.load()
    output = _settings.output_format(args.output, stored)
    counts = _Counts()
    printer = _Printer(output, counts)
    client = _settings.client(args.base_url, stored)
    try:
        stream_id = args.stream or client.config.stream_id or f"{args.format}-logs"
        try:
            stream = client.create_stream(
                stream_id, args.batch_size, args.flush_interval, max_buffered=max(args.max_buffered, args.batch_size)
            )
        except ValueError as exc:
            raise CliError(str(exc)) from None
        stream.on("batch")(printer.batch)
        stream.on("error")(printer.error)
        interrupted = _follow(stream, args.format, counts)
        try:
            finished = _close(stream, args.shutdown_timeout)
        except KeyboardInterrupt:  # a second Ctrl-C: stop now
            print(f"driftlock stream: stopped; {stream.buffered} events not sent", file=sys.stderr, flush=True)
            return 130
        unsent = stream.buffered
        summary = (
            f"driftlock stream: {counts.lines} lines, {stream.sent} events sent to stream {stream_id!r}, "
            f"{stream.dropped} dropped (buffer full), {counts.unreadable} unreadable, {counts.opened} incidents opened"
        )
        if unsent or not finished:
            summary += f"; {unsent} not sent" + ("" if finished else f" (gave up after {args.shutdown_timeout:g}s)")
        print(summary + (" (interrupted)" if interrupted else ""), file=sys.stderr, flush=True)
        return 1 if stream.dropped or unsent or not finished else 0
    finally:
        client.close()


def _follow(stream: SyncStream, fmt: str, counts: _Counts) -> bool:
    """Read stdin to its end or to Ctrl-C/SIGTERM; True when interrupted."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main else None
    try:
        _read(sys.stdin.buffer, stream, fmt, counts)
    except (KeyboardInterrupt, _Stop):
        return True
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous or signal.SIG_DFL)
    return False


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
        return value

    return parse


def add_stream(commands: Any) -> None:
    stream = commands.add_parser(
        "stream",
        help="send log lines from stdin as they come (tail -f access.log | driftlock stream --format nginx)",
        description="Reads stdin line by line, turns each line into an event (--format), sends them in batches and "
        "prints incidents as they open. Ends at end of input or Ctrl-C, after sending what is buffered. Exit status: "
        "0 all sent, 1 events lost (buffer full, or the API unreachable at the end), 2 error.",
    )
    stream.add_argument(
        "--stream",
        "--stream-id",
        dest="stream",
        default=None,
        help="stream id (default: DRIFTLOCK_STREAM_ID, else FORMAT-logs)",
    )
    stream.add_argument(
        "--format",
        choices=tuple(FORMATS),
        default="json",
        help="json: one event per line; nginx, apache: access logs (combined/common, nginx JSON); syslog; logfmt "
        "(default: %(default)s)",
    )
    stream.add_argument(
        "--batch-size", type=_positive(int), default=100, help="events per request (default: %(default)s)"
    )
    stream.add_argument(
        "--flush-interval",
        type=_positive(float),
        default=1.0,
        help="send what is waiting every N seconds (default: %(default)s)",
    )
    stream.add_argument(
        "--max-buffered",
        type=_positive(int),
        default=10_000,
        help="events held while the API is slower than the input; beyond that the oldest are dropped "
        "(default: %(default)s)",
    )
    stream.add_argument(
        "--shutdown-timeout",
        type=_positive(float),
        default=10.0,
        help="seconds to send what is buffered at the end (default: %(default)s)",
    )
    add_common(stream)
    stream.set_defaults(func=_stream)
