"""Serve the test shop with real servers (gunicorn, uvicorn) in subprocesses."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from driftlock.demo.process import ListeningProcess
from tests.support import BIN, INSTRUMENT, clean_env

PROJECT = Path(__file__).parent / "django_project"


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
        self.process: ListeningProcess | None = None

    @property
    def output(self) -> list[str]:
        return self.process.output if self.process else []

    def __enter__(self) -> DjangoServer:
        self.process = ListeningProcess(self.cmd, self.env, "the Django server", cwd=PROJECT)
        self.url = self.process.wait_for_url()
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
        if self.process is not None:
            self.process.stop(timeout=30)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=30, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.post(self.url + path, timeout=30, **kwargs)
