"""A child process that prints the URL it listens on: how the demo runs ``driftlock serve`` and gunicorn."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["ListeningProcess"]

_LISTEN = re.compile(r"(?:Listening at|listening on|running on):? (http://[\d.]+:\d+)")
MAX_KEPT_LINES = 2000


class ListeningProcess:
    """Starts ``cmd``; :meth:`wait_for_url` waits (bounded) for the line that names its address."""

    def __init__(
        self,
        cmd: Sequence[str],
        env: dict[str, str],
        name: str,
        *,
        cwd: str | Path | None = None,
        cpus: set[int] | None = None,
    ) -> None:
        self.name = name
        self.output: list[str] = []
        self.proc = subprocess.Popen(
            list(cmd),
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if len(self.output) < MAX_KEPT_LINES:
                self.output.append(line)
            self._lines.put(line)

    def wait_for_url(self, timeout: float = 60.0) -> str:
        return self.wait_for_line(_LISTEN, timeout).group(1)

    def wait_for_line(self, pattern: re.Pattern[str], timeout: float = 60.0) -> re.Match[str]:
        """The first output line that matches; the process is stopped if none does in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                match = pattern.search(self._lines.get(timeout=0.2))
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            if match:
                return match
        self.stop()
        raise RuntimeError(f"{self.name} did not start:\n" + "".join(self.output[-30:]))

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
