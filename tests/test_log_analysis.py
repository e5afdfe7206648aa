"""The log-analysis page end to end: a real nginx writes its access log, real tools attack it, and the
page's pipeline (``tail -f access.log | driftlock stream --format nginx``) opens an incident during
each attack while ordinary traffic stays quiet; against a real `driftlock serve`.

Needs Debian's ``nginx`` (and ``dirb`` and ``sqlmap`` for the real tools): skipped naming the package on
a developer machine, failed in CI (CI=true), where ``.ci/run`` installs them.
"""

from __future__ import annotations

import json
import os
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
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support import ServerProcess, clean_env, running_server, wait_for

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


def _session(rng: random.Random) -> list[tuple[str, str, dict[str, str]]]:
    """One shopper's visit: the home page and its assets, then items, searches, listings, a cart."""
    agent = {"User-Agent": rng.choice(BROWSERS)}
    requests = [("GET", path, agent) for path in ("/", "/static/app.css", "/static/app.js", "/static/logo.png")]
    for _ in range(rng.randint(1, 6)):
        choice = rng.random()
        if choice < 0.5:
            requests.append(("GET", f"/api/items/{rng.randint(1, 5000)}", agent))
        elif choice < 0.75:
            requests.append(("GET", "/search?q=" + rng.choice(WORDS).replace(" ", "+"), agent))
        elif choice < 0.9:
            requests.append(("GET", f"/api/items?page={rng.randint(1, 20)}", agent))
        else:
            requests.append(("POST", "/api/cart", agent))
    return requests


def ordinary_traffic(url: str, requests: int, seed: int, visitors: int = 8) -> int:
    """Shoppers in sessions, ``visitors`` at a time, their requests interleaved as a busy site logs
    them (deterministic for a seed). Returns the requests sent."""
    rng = random.Random(seed)
    sessions = [_session(rng) for _ in range(visitors)]
    with httpx.Client(base_url=url, timeout=10) as client:
        for _ in range(requests):
            i = rng.randrange(visitors)
            method, path, headers = sessions[i].pop(0)
            if not sessions[i]:
                sessions[i] = _session(rng)
            if method == "POST":
                client.post(path, json={"item": rng.randint(1, 5000)}, headers=headers)
            else:
                client.get(path, headers=headers)
    return requests


PAGES = Path(__file__).parent / "data"
ORDINARY = 1000
"""Requests of ordinary traffic before an attack: the stream's baseline (450 events) and 550 judged ones."""


def page_command(page: str, contains: str) -> str:
    """The one shell command of ``page`` that contains ``contains``, as written."""
    found = [line.strip() for line in (PAGES / page).read_text().splitlines() if contains in line]
    assert len(found) == 1, found
    return found[0]


class Pipeline:
    """A shell pipeline in its own session, its stdout lines collected as they come."""

    def __init__(self, command: str, env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            ["bash", "-c", command], env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True,
        )  # fmt: skip
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=lambda s=stream, k=sink: k.extend(s), daemon=True).start()

    def incidents(self) -> list[str]:
        return [line for line in self.out if line.startswith("[INCIDENT OPENED]")]

    def interrupt(self) -> int:
        """Ctrl-C, as in a terminal: SIGINT to the whole pipeline."""
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(30)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def ingested(server: ServerProcess, stream_id: str) -> int:
    streams = server.get("/v1/streams", params={"limit": 1000}).json()["streams"]
    return next((int(s["events_ingested"]) for s in streams if s["stream_id"] == stream_id), 0)


def cli_env(tmp_path: Path, url: str) -> dict[str, str]:
    return clean_env(
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        DRIFTLOCK_BASE_URL=url,
    )


@contextmanager
def watched(command: str, nginx: Nginx, tmp_path: Path) -> Iterator[tuple[Pipeline, ServerProcess]]:
    """A private `driftlock serve` and the page's pipeline reading the nginx log (its path the only change)."""
    with running_server(":memory:") as server:
        pipeline = Pipeline(
            command.replace("/var/log/nginx/access.log", str(nginx.log)), cli_env(tmp_path, server.url), tmp_path
        )
        try:
            yield pipeline, server
        finally:
            pipeline.kill()


def caught_up(server: ServerProcess, stream: str, nginx: Nginx, pipeline: Pipeline) -> None:
    """Wait until every line nginx wrote is an event the server holds."""
    wait_for(
        lambda: pipeline.proc.poll() is None and ingested(server, stream) == nginx.lines(),
        timeout=40,
        message=f"the server to hold every logged request ({''.join(pipeline.err)[-500:]})",
    )


def test_the_log_analysis_pipeline_finds_a_directory_scanner(tmp_path: Path) -> None:
    """log-analysis.md's ``tail -f access.log | driftlock stream --stream-id nginx-logs --format nginx``:
    quiet over a thousand ordinary requests, an incident while dirb scans the site."""
    dirb = _require("dirb", "dirb")
    command = page_command("log-analysis.md", "| driftlock stream")
    assert command == "tail -f /var/log/nginx/access.log | driftlock stream --stream-id nginx-logs --format nginx"
    with Nginx(tmp_path / "nginx") as nginx, watched(command, nginx, tmp_path) as (pipeline, server):
        ordinary_traffic(nginx.url, ORDINARY, seed=1)
        caught_up(server, "nginx-logs", nginx, pipeline)
        assert pipeline.incidents() == [] and server.get("/v1/incidents").json()["total"] == 0
        ordinary = nginx.lines()

        scan = subprocess.run(
            [dirb, nginx.url + "/", "/usr/share/dirb/wordlists/small.txt", "-S", "-r"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert scan.returncode == 0 and "DOWNLOADED: 959" in scan.stdout, scan.stdout[-500:]
        wait_for(pipeline.incidents, timeout=40, message="an incident while dirb scans")
        (opened,) = pipeline.incidents()
        routes = next(line.rstrip("\n") for line in pipeline.out if line.startswith("Routes: "))
        assert all(route.startswith("GET /") for route in routes[8:].split(", "))
        assert not any(r in routes for r in ("/api/items", "/search", "/static/"))  # what dirb asked for, not the shop
        (incident,) = server.get("/v1/incidents", params={"stream_id": "nginx-logs"}).json()["incidents"]
        assert incident["id"] in opened
        caught_up(server, "nginx-logs", nginx, pipeline)  # tail -f may still be delivering dirb's last lines
        assert pipeline.interrupt() == 0
    summary = "".join(pipeline.err)
    assert f"{nginx.lines()} events sent to stream 'nginx-logs', 0 dropped" in summary, summary

    # the page's other way in, a file read once: the same verdict, and no anomaly in the ordinary part
    replay = subprocess.run(
        [str(BIN / "driftlock"), "detect", "--stream", "replay", "--format", "nginx", "--file", str(nginx.log),
         "--fail-on-anomaly", "--output", "json"],
        env={**cli_env(tmp_path, ""), "DRIFTLOCK_BASE_URL": "", "DRIFTLOCK_EMBEDDED_DB": str(tmp_path / "e.sqlite3")},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert replay.returncode == 1, replay.stderr
    found = json.loads(replay.stdout)
    assert found["anomalies"] and min(a["index"] for a in found["anomalies"]) >= ordinary
    assert [i["change"] for i in found["incidents"]] == ["opened"]


def test_the_cli_pages_stream_command_finds_a_sql_injection_run(tmp_path: Path) -> None:
    """cli.md's ``tail -f /var/log/nginx/access.log | driftlock stream --format nginx``: quiet over ordinary
    traffic, an incident while sqlmap probes a parameter; the incident names the route and the tool."""
    sqlmap = _require("sqlmap", "sqlmap")
    command = page_command("cli.md", "| driftlock stream")
    assert command == "tail -f /var/log/nginx/access.log | driftlock stream --format nginx"
    with Nginx(tmp_path / "nginx") as nginx, watched(command, nginx, tmp_path) as (pipeline, server):
        ordinary_traffic(nginx.url, ORDINARY, seed=2)
        caught_up(server, "nginx-logs", nginx, pipeline)
        assert pipeline.incidents() == [] and server.get("/v1/incidents").json()["total"] == 0

        attack = subprocess.run(
            [sqlmap, "-u", nginx.url + "/api/items?page=1", "--batch", "--disable-coloring", "--level", "1",
             "--risk", "1", "--output-dir", str(tmp_path / "sqlmap")],
            capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": str(tmp_path)},
        )  # fmt: skip
        assert "all tested parameters do not appear to be injectable" in attack.stdout, attack.stdout[-800:]
        wait_for(pipeline.incidents, timeout=40, message="an incident while sqlmap probes")
        (opened,) = pipeline.incidents()
        assert "Routes: GET /api/items" in [line.rstrip("\n") for line in pipeline.out]
        (incident,) = server.get("/v1/incidents", params={"stream_id": "nginx-logs"}).json()["incidents"]
        assert incident["id"] in opened
        evidence = json.dumps(incident["explanation"])
        assert "sqlmap" in evidence or re.search(r"AND|UNION|SELECT|SLEEP", evidence), (
            evidence
        )  # the tool or its payloads
        caught_up(server, "nginx-logs", nginx, pipeline)  # tail -f may still be delivering sqlmap's last lines
        assert pipeline.interrupt() == 0
        assert ingested(server, "nginx-logs") == nginx.lines()


def app_log_line(rng: random.Random, error: bool = False) -> str:
    """A JSON application log line: ordinary sign-ins, requests and cache hits, or the page's new error."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if error:
        entry = {
            "timestamp": stamp, "level": "ERROR", "logger": "db",
            "message": "Database connection failed: could not connect to server: Connection refused",
            "exception": "psycopg.OperationalError", "retry_in_ms": rng.choice((500, 1000, 2000)),
        }  # fmt: skip
    else:
        entry = rng.choice(
            (
                {"timestamp": stamp, "level": "INFO", "logger": "auth", "message": f"User {rng.randint(1, 9999)} logged in"},
                {"timestamp": stamp, "level": "INFO", "logger": "http", "message": f"GET /api/items/{rng.randint(1, 999)} 200", "ms": rng.randint(5, 40)},
                {"timestamp": stamp, "level": "DEBUG", "logger": "cache", "message": f"cache hit item:{rng.randint(1, 999)}"},
            )
        )  # fmt: skip
    return json.dumps(entry) + "\n"


def test_the_pages_python_tail_loop_alerts_on_a_new_error_pattern(tmp_path: Path) -> None:
    """log-analysis.md's Python block as written (``base_url`` added, the log's path made the test's, and
    ``asyncio.run(monitor_logs())`` to start it): quiet over ordinary lines, ``[ALERT]`` on the new errors."""
    page = (PAGES / "log-analysis.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", page, re.S)
    log = tmp_path / "app.json"
    log.touch()
    assert 'client = DriftlockClient(api_key="...")' in code and '"/var/log/app.json"' in code
    with running_server(":memory:") as server:
        script = code.replace('api_key="..."', f'api_key="...", base_url="{server.url}"').replace(
            '"/var/log/app.json"', repr(str(log))
        )
        (tmp_path / "monitor.py").write_text(script + "\nimport asyncio\nasyncio.run(monitor_logs())\n")
        proc = subprocess.Popen(
            [sys.executable, str(tmp_path / "monitor.py")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, env=clean_env(),
        )  # fmt: skip
        out: list[str] = []
        threading.Thread(target=lambda: out.extend(proc.stdout or ()), daemon=True).start()
        try:
            # the loop starts at the end of the file: write once it has the file open
            wait_for(
                lambda: any(os.path.realpath(f"/proc/{proc.pid}/fd/{fd}") == str(log) for fd in os.listdir(f"/proc/{proc.pid}/fd")),
                timeout=30, message="the page's loop to open the log",
            )  # fmt: skip
            rng = random.Random(3)
            with log.open("a") as handle:
                handle.writelines(app_log_line(rng) for _ in range(600))
            wait_for(lambda: ingested(server, "app-logs") == 600, timeout=60, message=f"600 lines sent {out[-5:]}")
            assert [line for line in out if line.startswith("[ALERT]")] == []
            with log.open("a") as handle:
                handle.writelines(app_log_line(rng, error=rng.random() < 0.6) for _ in range(100))
            alerts = wait_for(
                lambda: [line for line in out if line.startswith("[ALERT] Anomaly in logs: ")], timeout=60,
                message=f"an alert on the new errors {out[-5:]}",
            )  # fmt: skip
            assert "Database connection failed" in alerts[0]
        finally:
            proc.kill()
            proc.wait(10)


def test_a_missing_tool_skips_naming_its_package_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install no-such-package"):
        _require("no-such-program-here", "no-such-package")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"\.ci/run should install the Debian package no-such-package"):
        _require("no-such-program-here", "no-such-package")
