"""The FastAPI integration page (tests/data/fastapi-integration.md, a copy of seed/fastapi-integration.md),
run as written in real servers against a real `driftlock serve`.

The page's Python blocks become two modules, unchanged: the Middleware Integration block (its own app), and
the blocks after it in order (Dependency Injection makes the ``app`` that Background Tasks, Pydantic
Integration and Error Handling add to; Configuration's module-level client sits among them). What is added,
and only that: the server's address, as ``DRIFTLOCK_BASE_URL`` in the environment (below the page's
keywords, so nothing the page sets is overridden); and the Error Handling block's ``client.detect(...)``,
which stands for a real call, becomes one. The first module runs under uvicorn with two workers, the second
under gunicorn with two uvicorn workers.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fastapi_project.serving import AsgiServer
from tests.support import FaultServer, Reply, ServerProcess, clean_env, running_server, wait_for

PAGE = Path(__file__).parent / "data" / "fastapi-integration.md"
PLACEHOLDER = "await client.detect(...)"
REAL_CALL = 'await client.detect(stream_id="data-reads", events=[{"type": "read", "body": {"endpoint": "/data"}}])'
APP_BLOCKS = ("Dependency Injection", "Background Tasks", "Pydantic Integration", "Configuration", "Error Handling")


def page_blocks() -> dict[str, str]:
    """The page's python blocks by the heading they sit under (one each on this page)."""
    blocks: dict[str, str] = {}
    heading, code = "", None
    for line in PAGE.read_text().splitlines():
        if code is not None:
            if line.strip() == "```":
                blocks[heading] = "\n".join(code) + "\n"
                code = None
            else:
                code.append(line)
        elif line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif line.strip() == "```python":
            code = []
    return blocks


BLOCKS = page_blocks()


def test_every_python_block_of_the_page_is_run() -> None:
    assert sorted(BLOCKS) == sorted(["Middleware Integration", *APP_BLOCKS])
    assert BLOCKS["Error Handling"].count(PLACEHOLDER) == 1


@pytest.fixture(scope="module")
def modules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("page")
    (folder / "middleware_page.py").write_text(BLOCKS["Middleware Integration"])
    app = "\n".join(BLOCKS[h] for h in APP_BLOCKS).replace(PLACEHOLDER, REAL_CALL)
    (folder / "page_app.py").write_text(app)
    return folder


@pytest.fixture(scope="module")
def page_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(Path(tmp_path_factory.mktemp("serve")) / "page.sqlite3") as server:
        yield server


# Per-item detection needs a window one event can stand out in: the same settings as the Django page's test.
OVERRIDE = '{"baseline_size": 400, "window_size": 10, "hop_size": 1, "p_value_threshold": 0.05}'


@pytest.fixture(scope="module")
def page_app(modules: Path, page_server: ServerProcess) -> Iterator[AsgiServer]:
    with AsgiServer(
        "page_app:app",
        kind="uvicorn_worker.UvicornWorker",
        cwd=modules,
        ready_path="/docs",
        DRIFTLOCK_BASE_URL=page_server.url,
        DRIFTLOCK_CONFIG_OVERRIDE=OVERRIDE,
    ) as web:
        yield web
    assert not [line for line in web.output if "Traceback" in line or "Unclosed" in line or "Warning" in line], (
        web.output[-30:]
    )


def ingested(server: ServerProcess, stream_id: str) -> int:
    reply = server.get("/v1/streams/" + urllib.parse.quote(stream_id, safe=""))
    return int(reply.json()["events_ingested"]) if reply.status_code == 200 else 0


def events(server: ServerProcess, stream: str) -> list[dict[str, Any]]:
    response = server.get(f"/v1/streams/{stream}/events", params={"limit": 2000})
    return response.json()["events"] if response.status_code == 200 else []


# -- Middleware Integration -----------------------------------------------------------------------


def test_middleware_integration(modules: Path, page_server: ServerProcess) -> None:
    with (
        AsgiServer("middleware_page:app", cwd=modules, ready_path="/docs", DRIFTLOCK_BASE_URL=page_server.url) as web,
        httpx.Client(base_url=web.url, timeout=30) as http,
    ):
        for _ in range(5):
            assert http.get("/").json() == {"message": "Hello World"}
        assert http.get("/docs").status_code == 200  # excluded by the page's exclude_paths
        assert http.get("/openapi.json").status_code == 200
        assert http.get("/missing").status_code == 404
    got = [e["body"] for e in events(page_server, "fastapi-app")]  # the workers flushed at shutdown
    assert sorted((b["method"], b["route"], b["status"]) for b in got) == [("GET", "/", 200)] * 5 + [
        ("GET", "/missing", 404)
    ]
    assert not [line for line in web.output if "Traceback" in line]


# -- Dependency Injection, Background Tasks, Pydantic Integration, Error Handling -------------------


def test_dependency_injection(page_app: AsgiServer, page_server: ServerProcess) -> None:
    before = ingested(page_server, "items-creation")
    reply = page_app.post("/items/", json={"name": "lamp", "price": 12})
    assert reply.status_code == 200 and reply.json() == {"item": {"name": "lamp", "price": 12}, "status": "created"}
    assert ingested(page_server, "items-creation") == before + 1  # awaited before the response


def test_dependency_injection_answers_400_on_an_anomaly(page_app: AsgiServer, page_server: ServerProcess) -> None:
    rng = random.Random(5)
    names = ["lamp", "chair", "desk", "shelf", "rug", "mirror", "sofa", "table"]
    with httpx.Client(base_url=page_app.url, timeout=30) as http:
        for _ in range(420):
            item = {"name": rng.choice(names), "price": rng.choice([12, 19, 25, 40, 55, 80])}
            assert http.post("/items/", json=item).status_code in (200, 400)
        normal = http.post("/items/", json={"name": "desk", "price": 25})
        assert normal.status_code == 200, normal.text
        odd = http.post("/items/", json={"name": "' OR 1=1; DROP TABLE items;--", "price": -99999999})
    assert odd.status_code == 400 and odd.json() == {"detail": "Anomaly detected"}


def test_background_tasks(page_app: AsgiServer, page_server: ServerProcess) -> None:
    before = ingested(page_server, "logs")
    reply = page_app.post("/logs/", json={"level": "info", "message": "user signed in"})
    assert reply.status_code == 200 and reply.json() == {"status": "accepted"}
    wait_for(lambda: ingested(page_server, "logs") == before + 1, timeout=20, message="the background detection")


def test_pydantic_integration(page_app: AsgiServer, page_server: ServerProcess) -> None:
    before = ingested(page_server, "user-signups")
    user = {"username": "ana", "email": "ana@example.com", "age": 31}
    reply = page_app.post("/users/", json=user)
    assert reply.status_code == 200 and reply.json() == user
    assert ingested(page_server, "user-signups") == before + 1
    assert page_app.post("/users/", json={**user, "age": "old"}).status_code == 422  # Pydantic's own answer
    assert ingested(page_server, "user-signups") == before + 1


def test_error_handling(page_app: AsgiServer, page_server: ServerProcess) -> None:
    before = ingested(page_server, "data-reads")
    reply = page_app.get("/data")
    assert reply.status_code == 200 and reply.json() == {"data": "..."}
    assert ingested(page_server, "data-reads") == before + 1


def test_error_handling_proceeds_on_rate_limit(modules: Path) -> None:
    limited = Reply(429, {"error": {"code": "rate_limited", "message": "slow down"}}, {"Retry-After": "0"})
    with FaultServer(default=limited) as api:
        with AsgiServer("page_app:app", cwd=modules, workers=1, ready_path="/docs", DRIFTLOCK_BASE_URL=api.url) as web:
            reply = web.get("/data")
            assert reply.status_code == 200 and reply.json() == {"data": "..."}
            assert web.post("/items/", json={"name": "lamp"}).status_code == 500  # not caught there: RateLimitError
    detects = [s for s in api.seen if s.path == "/v1/detect"]
    assert len(detects) == 2 * 4  # each call: the first try and MAX_RETRIES (3) retries, then RateLimitError
    assert any("RateLimitError" in line for line in web.output)


def test_configuration(modules: Path, page_server: ServerProcess) -> None:
    script = (
        "import json, page_app\n"
        "c = page_app.get_client()\n"
        "print(json.dumps({'same': c is page_app.client, 'timeout': c.config.timeout, 'key': c.config.api_key,"
        " 'base_url': c.config.base_url}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=modules,
        env=clean_env(DRIFTLOCK_BASE_URL=page_server.url),
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"same": True, "timeout": 5.0, "key": "...", "base_url": page_server.url}
    assert result.stderr == ""
