"""The ``driftlock`` command.

``serve`` (the local API), ``demo`` (all of it at once), ``detect`` (events once), ``stream`` (log lines
from stdin as they come), ``history`` (recent anomalies), ``login`` and ``config`` (the CLI's settings).
Exit status: 0 success, 1 what the command was asked to fail on (an anomaly with ``detect
--fail-on-anomaly``, events lost by ``stream``), 2 an error, reported in one line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from driftlock.cli._account import add_config, add_login
from driftlock.cli._detect import add_detect, add_history
from driftlock.cli._serve import add_demo, add_serve
from driftlock.cli._settings import CliError
from driftlock.cli._stream import add_stream

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="driftlock", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add_serve(commands)
    add_detect(commands)
    add_stream(commands)
    add_history(commands)
    add_login(commands)
    add_config(commands)
    add_demo(commands)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"driftlock {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
