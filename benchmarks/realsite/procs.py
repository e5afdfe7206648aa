"""Child processes that print the address they listen on (``driftlock serve``, gunicorn); stopped on exit.

Kept apart from ``driftlock.demo.process`` on purpose: replay starts servers from other source trees."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

LISTEN = re.compile(r"(?:Listening at|listening on|running on):? (http://[\d.]+:\d+)")
KEPT_LINES = 500


class Child:
    def __init__(self, cmd: Sequence[str], *, env: dict[str, str], cwd: Path | None = None, name: str = "") -> None:
        self.name = name or str(cmd[0])
        self.output: list[str] = []
        self.proc = subprocess.Popen(
            list(cmd),
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            del self.output[:-KEPT_LINES]
            self._lines.put(line)

    def wait_for_url(self, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                found = LISTEN.search(self._lines.get(timeout=0.2))
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            if found:
                return found.group(1)
        self.stop()
        raise RuntimeError(f"{self.name} did not start:\n" + "".join(self.output[-30:]))

    def stop(self, timeout: float = 30.0, sig: int = signal.SIGTERM) -> int | None:
        """Signal the process group (gunicorn's workers too) and wait, bounded."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIFTLOCK_", "OTEL_", "REALSITE_"))}
    env.update(extra)
    return env
