"""Serve the test shop with real servers (gunicorn, uvicorn) in subprocesses."""

from __future__ import annotations

import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support import BIN, INSTRUMENT, clean_env

PROJECT = Path(__file__).parent / "django_project"
_LISTEN = re.compile(r"(?:Listening at|running on):? (http://[\d.]+:\d+)")


def migrate(db: Path, settings: str = "shop.settings") -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(DJANGO_SETTINGS_MODULE=settings, SHOP_DB=str(db)),
    )
    assert result.returncode == 0, result.stderr


class DjangoServer:
    def __init__(
        self,
        kind: str,
        *,
        driftlock_url: str,
        db: Path,
        settings: str = "shop.settings",
        args: tuple[str, ...] = (),
        instrument: bool = False,
        **env: str,
    ) -> None:
        if kind == "gunicorn":
            cmd = [
                str(BIN / "gunicorn"),
                "shop.wsgi:application",
                "--bind",
                "127.0.0.1:0",
                "--workers",
                "2",
                "--graceful-timeout",
                "10",
                *args,
            ]
        elif kind == "uvicorn":
            cmd = [str(BIN / "uvicorn"), "shop.asgi:application", "--port", "0", "--host", "127.0.0.1", *args]
        else:
            raise ValueError(kind)
        if instrument:
            cmd = [*INSTRUMENT, *cmd]
        self.cmd = cmd
        self.env = clean_env(
            DJANGO_SETTINGS_MODULE=settings,
            SHOP_DB=str(db),
            DRIFTLOCK_BASE_URL=driftlock_url,
            PYTHONPATH=str(PROJECT),
            **env,
        )
        self.url = ""
        self.output: list[str] = []
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> DjangoServer:
        self.proc = subprocess.Popen(
            self.cmd, cwd=PROJECT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        lines: queue.Queue[str] = queue.Queue()

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.output.append(line)
                lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not self.url:
            try:
                line = lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            match = _LISTEN.search(line)
            if match:
                self.url = match.group(1)
        if not self.url:
            self.stop()
            raise RuntimeError("server did not start:\n" + "".join(self.output))
        # gunicorn announces its socket before the workers are up: wait until one answers
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(self.url + "/health/", timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=30, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.post(self.url + path, timeout=30, **kwargs)
