"""Serve an ASGI app from this folder (or another) with real uvicorn or gunicorn + uvicorn workers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from driftlock.demo.process import ListeningProcess
from tests.support import BIN, INSTRUMENT, clean_env

PROJECT = Path(__file__).parent


class AsgiServer:
    """``kind``: ``uvicorn`` (``--workers N``) or a gunicorn worker class such as ``uvicorn_worker.UvicornWorker``."""

    def __init__(
        self,
        target: str,
        *,
        kind: str = "uvicorn",
        workers: int = 2,
        cwd: Path = PROJECT,
        ready_path: str = "/health",
        instrument: bool = False,
        **env: str,
    ) -> None:
        if kind == "uvicorn":
            cmd = [str(BIN / "uvicorn"), target, "--host", "127.0.0.1", "--port", "0", "--workers", str(workers)]
        else:
            cmd = [
                *(str(BIN / "gunicorn"), target, "-k", kind, "--bind", "127.0.0.1:0"),
                *("--workers", str(workers), "--graceful-timeout", "10"),
            ]
        self.cmd = [*INSTRUMENT, *cmd] if instrument else cmd
        self.cwd = cwd
        self.ready_path = ready_path
        self.env = clean_env(PYTHONPATH=str(cwd), **env)
        self.url = ""
        self.process: ListeningProcess | None = None

    @property
    def output(self) -> list[str]:
        return self.process.output if self.process else []

    def __enter__(self) -> AsgiServer:
        self.process = ListeningProcess(self.cmd, self.env, f"{self.cmd[0]} {self.cmd[1]}", cwd=self.cwd)
        self.url = self.process.wait_for_url()
        # the socket is announced before the workers are up: wait until one answers
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(self.url + self.ready_path, timeout=5)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or self.process.proc.poll() is not None:
                    raise RuntimeError("the ASGI server did not answer:\n" + "".join(self.output[-30:])) from None
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
