"""``driftlock detect`` (events from ``--json`` or a file, once) and ``driftlock history`` (recent anomalies)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from driftlock.cli import _output, _settings
from driftlock.cli._settings import CliError
from driftlock.exceptions import DriftlockError
from driftlock.logs import FORMATS, LogFormatError, line_to_event
from driftlock.models import DetectionResult, merge_results

__all__ = ["add_detect", "add_history"]

HISTORY_MAX = 100
"""The API lists at most this many anomalies per call."""


def read_events(handle: TextIO, name: str, fmt: str = "json") -> list[Any]:
    """JSON lines, or one JSON array; or log lines in ``fmt``. Blank lines are skipped; errors name the
    file and the line."""
    text = handle.read()
    if fmt != "json":
        events = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    events.append(line_to_event(line, fmt))
                except LogFormatError as exc:
                    raise CliError(f"{name} line {number}: {exc}: {line.strip()[:120]!r}") from None
    elif text.lstrip().startswith("["):
        try:
            events = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CliError(
                f"{name} line {exc.lineno}: not a valid JSON array ({exc.msg}, column {exc.colno})"
            ) from None
        if not isinstance(events, list):
            raise CliError(f"{name}: a JSON array must hold the events")
    else:
        events = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise CliError(
                    f"{name} line {number}: not valid JSON ({exc.msg}, column {exc.colno}); "
                    "the file must hold one JSON event per line, or one JSON array"
                ) from None
    if not events:
        raise CliError(f"{name} holds no events")
    return events


def _events(args: argparse.Namespace) -> list[Any]:
    sources = [s for s in (args.json, args.file, args.path) if s is not None]
    if len(sources) != 1:
        raise CliError("give the events once: --json '{...}', or --file FILE (JSON lines or a JSON array; - for stdin)")
    if args.json is not None:
        try:
            value = json.loads(args.json)
        except json.JSONDecodeError as exc:
            raise CliError(f"--json: not valid JSON ({exc.msg}, column {exc.colno})") from None
        return value if isinstance(value, list) and value else [value]
    name = args.file if args.file is not None else args.path
    if name == "-":
        return read_events(sys.stdin, "stdin", args.format)
    try:
        with open(name, encoding="utf-8", errors="replace" if args.format != "json" else "strict") as handle:
            return read_events(handle, name, args.format)
    except OSError as exc:
        raise CliError(f"cannot read {name}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise CliError(f"{name} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _detect(args: argparse.Namespace) -> int:
    stored = _settings.load()
    output = _settings.output_format(args.output, stored)
    events = _events(args)
    parts: list[tuple[int, DetectionResult]] = []
    try:
        with _settings.client(args.base_url, stored) as client:
            size = client.config.max_batch_size
            for start in range(0, len(events), size):  # a request per batch, each with its own deadline
                parts.append((start, client.detect(events[start : start + size], stream_id=args.stream)))
    except DriftlockError as exc:
        sent = f" ({parts[-1][0] + parts[-1][1].total_events} of {len(events)} events were sent)" if parts else ""
        raise CliError(f"{exc}{sent}") from None
    result = merge_results(parts)
    if output == "json":
        print(json.dumps(_output.detection_dict(result), indent=2))
    else:
        print(_output.detection_text(result))
    return 1 if args.fail_on_anomaly and result.anomalies else 0


def _history(args: argparse.Namespace) -> int:
    stored = _settings.load()
    output = _settings.output_format(args.output, stored)
    try:
        with _settings.client(args.base_url, stored) as client:
            page = client.anomalies.list(stream_id=args.stream, limit=args.limit)
    except DriftlockError as exc:
        raise CliError(str(exc)) from None
    if output == "json":
        print(
            json.dumps({"total": page.total, "anomalies": [_output.anomaly_dict(a) for a in page.anomalies]}, indent=2)
        )
    else:
        print(_output.history_text(page.anomalies, args.stream))
    return 0


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if not 1 <= value <= HISTORY_MAX:
        raise argparse.ArgumentTypeError(f"must be between 1 and {HISTORY_MAX}, got {value}")
    return value


def add_common(parser: argparse.ArgumentParser) -> None:
    """``--base-url`` and ``--output``, on every command that talks to the API."""
    parser.add_argument(
        "--base-url",
        default=None,
        help="API root, e.g. a `driftlock serve`; default: DRIFTLOCK_BASE_URL, then `driftlock config set base_url`; "
        "with no key and no URL the embedded engine answers",
    )
    parser.add_argument(
        "--output", choices=("text", "json"), default=None, help="default: `driftlock config get output`, else text"
    )


def add_detect(commands: Any) -> None:
    detect = commands.add_parser(
        "detect",
        help="send events for detection once and print what was found",
        description="Send one event (--json) or a file of events (--file: JSON lines or a JSON array) for detection. "
        "Exit status: 0 no anomaly (or no --fail-on-anomaly), 1 anomaly found with --fail-on-anomaly, 2 error.",
    )
    detect.add_argument("path", nargs="?", default=None, help=argparse.SUPPRESS)  # the 0.x form: detect FILE
    detect.add_argument(
        "--stream",
        "--stream-id",
        dest="stream",
        default=None,
        help="stream id (default: DRIFTLOCK_STREAM_ID, else the API's default)",
    )
    detect.add_argument("--json", default=None, metavar="JSON", help="one event (or a JSON array of events)")
    detect.add_argument(
        "--file", default=None, metavar="FILE", help="events as JSON lines or one JSON array; - for stdin"
    )
    detect.add_argument(
        "--format",
        choices=tuple(FORMATS),
        default="json",
        help="what the file holds: json (events), or log lines as `driftlock stream --format` reads them "
        "(default: %(default)s)",
    )
    detect.add_argument(
        "--fail-on-anomaly", action="store_true", help="exit with status 1 when an anomaly is found (for CI)"
    )
    add_common(detect)
    detect.set_defaults(func=_detect)


def add_history(commands: Any) -> None:
    history = commands.add_parser("history", help="list recent anomalies, newest first")
    history.add_argument("--stream", "--stream-id", dest="stream", default=None, help="only this stream")
    history.add_argument(
        "--limit", type=_limit, default=20, help=f"how many, 1 to {HISTORY_MAX} (default: %(default)s)"
    )
    add_common(history)
    history.set_defaults(func=_history)
