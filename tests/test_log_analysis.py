"""The log-analysis page end to end: a real nginx writes its access log, real tools attack it, and the
page's pipeline (``tail -f access.log | driftlock stream --format nginx``) opens an incident during
each attack while ordinary traffic stays quiet; against a real `driftlock serve`.

Needs Debian's ``nginx`` (and ``dirb`` and ``sqlmap`` for the real tools): skipped naming the package on
a developer machine, failed in CI (CI=true), where ``.ci/run`` installs them.
"""

from __future__ import annotations

import os
import queue
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import ServerProcess, clean_env, wait_for

BIN = Path(sys.executable).parent


def _require(program: str, package: str) -> str:
    found = shutil.which(program) or next(
        (str(p) for p in (Path("/usr/sbin") / program, Path("/usr/bin") / program) if p.exists()), None
    )
    if found:
        return found
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{program} is missing in CI: .ci/run should install the Debian package {package}", pytrace=False)
    pytest.skip(f"needs {program}: apt-get install {package}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


NGINX_CONF = """
daemon off;
master_process on;
worker_processes 1;
{user}
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {dir}/access.log combined;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    types {{ text/html html; text/css css; application/javascript js; image/png png; }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {dir}/site;
        location = / {{ try_files /index.html =404; }}
        location /static/ {{ }}
        location ~ ^/api/items/(\\d+)$ {{
            default_type application/json;
            return 200 '{{"id": $1, "name": "item $1", "price": 12}}';
        }}
        location = /api/items {{
            default_type application/json;
            return 200 '{{"items": [], "page": "$arg_page"}}';
        }}
        location = /search {{
            default_type text/html;
            return 200 '<html><body><h1>Results</h1><p>for $arg_q</p></body></html>';
        }}
        location = /api/cart {{
            if ($request_method = POST) {{ return 201 '{{"ok": true}}'; }}
            default_type application/json;
            return 200 '{{"lines": []}}';
        }}
    }}
}}
"""


class Nginx:
    """A private nginx on a free loopback port, serving a small shop and writing its own access log."""

    def __init__(self, directory: Path) -> None:
        self.binary = _require("nginx", "nginx")
        self.dir = directory
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = directory / "access.log"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Nginx:
        for sub in ("tmp", "site/static"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "site/index.html").write_text("<html><body><h1>Shop</h1>" + "<p>item</p>" * 40 + "</body></html>")
        (self.dir / "site/static/app.css").write_text("body { margin: 0 }\n" * 60)
        (self.dir / "site/static/app.js").write_text("console.log('shop');\n" * 200)
        (self.dir / "site/static/logo.png").write_bytes(b"\x89PNG" + bytes(3000))
        self.log.touch()
        user = "user root;" if os.geteuid() == 0 else ""  # workers must read the test's private directory
        conf = self.dir / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=self.dir, port=self.port, user=user))
        self.process = subprocess.Popen(
            [self.binary, "-p", str(self.dir), "-c", str(conf), "-e", str(self.dir / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def up() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError("nginx exited:\n" + (self.dir / "error.log").read_text())
            try:
                return httpx.get(self.url + "/", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, timeout=15, message="nginx to answer")
        self.log.write_text("")  # the readiness probe is not part of the traffic
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def lines(self) -> int:
        return sum(1 for _ in self.log.open("rb"))


BROWSERS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 "
    "Mobile/15E148 Safari/604.1",
)
WORDS = ("shoes", "red shirt", "socks", "hat", "blue jeans", "jacket", "scarf", "gloves", "boots", "belt")


def ordinary_traffic(url: str, requests: int, seed: int) -> int:
    """Shoppers in sessions: the home page and its assets, items, searches, a cart. Returns requests sent."""
    rng = random.Random(seed)
    sent = 0
    with httpx.Client(base_url=url, timeout=10) as client:
        while sent < requests:
            agent = {"User-Agent": rng.choice(BROWSERS)}
            paths = ["/", "/static/app.css", "/static/app.js", "/static/logo.png"]
            for _ in range(rng.randint(1, 6)):
                choice = rng.random()
                if choice < 0.5:
                    paths.append(f"/api/items/{rng.randint(1, 5000)}")
                elif choice < 0.75:
                    paths.append("/search?q=" + rng.choice(WORDS).replace(" ", "+"))
                elif choice < 0.9:
                    paths.append(f"/api/items?page={rng.randint(1, 20)}")
                else:
                    paths.append("POST /api/cart")
            for path in paths:
                if path.startswith("POST "):
                    client.post(path[5:], json={"item": rng.randint(1, 5000)}, headers=agent)
                else:
                    client.get(path, headers=agent)
                sent += 1
    return sent
