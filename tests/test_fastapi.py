"""driftlock.fastapi in real servers: uvicorn with several workers, gunicorn with uvicorn workers, a plain
Starlette app, all exporting to a real `driftlock serve`; and the faults (API down or slow, bad settings)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from driftlock.exceptions import DriftlockConfigurationError
from tests.fastapi_project.serving import PROJECT, AsgiServer
from tests.support import FaultServer, Reply, ServerProcess, clean_env, free_port_url, running_server, wait_for


def events(srv: ServerProcess, stream: str) -> list[dict[str, Any]]:
    response = srv.get(f"/v1/streams/{stream}/events", params={"limit": 2000})
    return response.json()["events"] if response.status_code == 200 else []


def bodies(srv: ServerProcess, stream: str) -> list[dict[str, Any]]:
    return [e["body"] for e in events(srv, stream)]


def shop(srv_url: str, kind: str = "uvicorn", workers: int = 2, **env: str) -> AsgiServer:
    return AsgiServer("shop:application", kind=kind, workers=workers, DRIFTLOCK_BASE_URL=srv_url, **env)


def test_uvicorn_workers_one_event_per_request_with_route_status_user_and_context() -> None:
    with running_server() as srv:
        with shop(srv.url) as web, httpx.Client(base_url=web.url, timeout=30) as http:
            assert http.get("/items/7").json() == {"item_id": 7}
            assert http.get("/items/8", headers={"x-user": "ana"}).status_code == 200
            assert http.get("/context").json() == {"ok": True}
            assert http.get("/no-such-page/123").status_code == 404
            assert web.get("/boom").status_code == 500  # its own connection: uvicorn closes it after an app error
            assert http.post("/items/7").status_code == 405
            assert http.get("/items/seven").status_code == 422
            assert http.get("/api/things/5").json() == {"thing": 5}
            assert http.get("/sync/3").json() == {"item_id": 3}
            for _ in range(3):
                assert http.get("/health").status_code == 200  # excluded: no span, no event
            wait_for(lambda: len(bodies(srv, "fastapi-shop")) >= 9, timeout=20, message="9 events")
        got = bodies(srv, "fastapi-shop")  # the workers flushed at shutdown: anything extra is here too
    assert sorted((b["method"], b["route"], b["status"]) for b in got) == sorted(
        [
            ("GET", "/items/{item_id}", 200),
            ("GET", "/items/{item_id}", 200),
            ("GET", "/context", 200),
            ("GET", "/no-such-page/{int}", 404),
            ("GET", "/boom", 500),
            ("POST", "/items/{item_id}", 405),
            ("GET", "/items/{item_id}", 422),
            ("GET", "/api/things/{thing_id}", 200),
            ("GET", "/sync/{item_id}", 200),
        ]
    )
    by_route = {(b["route"], b["status"], b.get("user")): b for b in got}
    assert ("/items/{item_id}", 200, "anonymous") in by_route and ("/items/{item_id}", 200, "authenticated") in by_route
    assert all("user_id" not in b for b in got)  # opt-in only
    assert by_route[("/context", 200, "anonymous")]["context"] == {"feature": "checkout", "user_tier": "gold"}
    assert by_route[("/boom", 500, "anonymous")]["error"] == "RuntimeError"
    assert all(b["duration"].startswith("<") for b in got)


@pytest.mark.parametrize("worker", ["uvicorn_worker.UvicornWorker", "uvicorn.workers.UvicornWorker"])
def test_gunicorn_with_uvicorn_workers_one_event_per_request(worker: str) -> None:
    if importlib.util.find_spec(worker.rpartition(".")[0]) is None:
        pytest.skip(f"{worker} is not installed")
    with running_server() as srv:
        with shop(srv.url, kind=worker) as web, httpx.Client(base_url=web.url, timeout=30) as http:
            pids = set()
            for i in range(30):
                assert http.get(f"/items/{i}").status_code == 200
            for _ in range(10):
                pids.add(http.get("/client").json()["pid"])
        got = bodies(srv, "fastapi-shop")  # every worker flushed when gunicorn stopped it
    assert len(got) == 40
    assert sorted({(b["route"], b["status"]) for b in got}) == [("/client", 200), ("/items/{item_id}", 200)]
    assert not [line for line in web.output if "Traceback" in line]


def test_dependency_gives_one_client_per_app_closed_at_shutdown() -> None:
    with running_server() as srv:
        with shop(srv.url, workers=1) as web:
            seen = [web.get("/client").json() for _ in range(5)]
            assert len({(s["pid"], s["client"]) for s in seen}) == 1
            assert seen[0]["base_url"] == srv.url  # the middleware's settings (environment as fallback)
        said = [line for line in web.output if "lifespan over" in line]
    assert said == ["shop: lifespan over, client closed=True, left on app.state=False\n"], web.output[-20:]


def test_starlette_app_without_fastapi() -> None:
    with running_server() as srv:
        with AsgiServer("plain:app", workers=1, DRIFTLOCK_BASE_URL=srv.url) as web:
            assert web.get("/hello/ana").json() == {"hello": "ana"}
            assert web.get("/shop/orders/42").json() == {"order": 42}
            assert web.get("/nothing/here").status_code == 404
            assert web.post("/detect").json() == {"anomalies": 0}  # the dependency, called directly
            wait_for(lambda: len(bodies(srv, "plain-starlette")) >= 4, timeout=20, message="4 events")
        got = bodies(srv, "plain-starlette")
        direct = bodies(srv, "plain-direct")
    assert sorted((b["method"], b["route"], b["status"]) for b in got) == [
        ("GET", "/hello/{name}", 200),
        ("GET", "/nothing/here", 404),
        ("GET", "/shop/orders/{order_id:int}", 200),
        ("POST", "/detect", 200),
    ]
    assert next(b for b in got if b["route"] == "/hello/{name}")["context"] == {"greeting": True}
    assert len(direct) == 1 and set(direct[0]) == {"n"}  # the server tokenizes numbers


@pytest.mark.parametrize("fault", ["refused", "slow"])
def test_api_down_or_slow_costs_the_app_nothing(fault: str) -> None:
    def run(url: str) -> tuple[list[float], list[str]]:
        with shop(url, workers=1, DRIFTLOCK_TIMEOUT="2") as web, httpx.Client(base_url=web.url, timeout=30) as http:
            timings = []
            for i in range(30):
                started = time.perf_counter()
                response = http.get(f"/items/{i}")
                timings.append(time.perf_counter() - started)
                assert response.status_code == 200
            assert web.get("/boom").status_code == 500  # the app's own error, unchanged
        return timings, web.output

    if fault == "refused":
        timings, output = run(free_port_url())
    else:
        with FaultServer(default=Reply(delay=5)) as slow:
            timings, output = run(slow.url)
    assert sorted(timings)[len(timings) // 2] < 0.25, timings  # ASYNC_MODE: the export is not on the request path
    assert not [line for line in output if "Traceback" in line and "driftlock" in line]


def test_incidents_are_told_once_across_workers(tmp_path: Path) -> None:
    """The service decides incidents for the stream; each is told once, by the worker whose batch opened it.

    The stream's default sizes, as on the Django side (tests/test_incidents.py): a baseline of varied
    ordinary requests, then a scan mixed into ordinary traffic."""
    told = tmp_path / "incidents.log"
    rng = random.Random(7)
    ordinary = ["/items/1", "/items/2", "/items/3", "/context", "/api/things/4", "/sync/5"]
    scan = ["/wp-login.php", "/.env", "/.git/config", "/xmlrpc.php", "/phpmyadmin/"]
    with running_server() as srv:
        with (
            shop(srv.url, INCIDENT_LOG=str(told)) as web,
            httpx.Client(base_url=web.url, timeout=30) as http,
        ):
            for _ in range(450):
                http.get(rng.choice(ordinary))
            # both workers' batches of ordinary traffic first, or the scanner may land in the baseline
            wait_for(lambda: len(events(srv, "fastapi-shop")) >= 450, timeout=30, message="the ordinary traffic")
            for _ in range(150):
                http.get(rng.choice(scan) if rng.random() < 0.5 else rng.choice(ordinary))
            wait_for(lambda: len(events(srv, "fastapi-shop")) >= 600, timeout=30, message="the scan")
        opened = srv.get("/v1/incidents", params={"stream_id": "fastapi-shop"}).json()
    lines = told.read_text().splitlines() if told.exists() else []
    assert opened["incidents"], "the scan opened no incident"
    assert lines, f"no incident reached the handlers: {opened}"
    ids = [line.split()[2] for line in lines if line.split()[3] == "opened"]
    assert len(ids) == len(set(ids))  # never twice, whichever worker sent the batch
    assert all(line.split()[1] == "fastapi-shop" for line in lines)
    assert sorted(ids) == sorted(i["id"] for i in opened["incidents"])  # each told exactly once


def test_under_opentelemetry_instrument_one_event_per_request() -> None:
    """`opentelemetry-instrument` with the Driftlock exporter and the middleware listed: one exporter, one event each."""
    with running_server() as srv:
        with AsgiServer("shop:application", workers=1, instrument=True, DRIFTLOCK_BASE_URL=srv.url) as web:
            with httpx.Client(base_url=web.url, timeout=30) as http:
                for i in range(10):
                    assert http.get(f"/items/{i}").status_code == 200
        got = bodies(srv, "fastapi-shop")
    assert len(got) == 10 and {b["route"] for b in got} == {"/items/{item_id}"}


@pytest.mark.parametrize("kind", ["uvicorn", "uvicorn_worker.UvicornWorker"])
def test_a_misspelt_setting_stops_the_start_naming_it(kind: str) -> None:
    server = AsgiServer("misspelt:app", kind=kind, workers=1)
    result = subprocess.run(server.cmd, cwd=PROJECT, env=server.env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    said = [line for line in (result.stdout + result.stderr).splitlines() if "DriftlockMiddleware:" in line]
    assert said and "Unknown driftlock setting 'stream_idd'" in said[0] and "stream_id" in said[0]
    assert "your-api-key" not in result.stdout + result.stderr


def test_a_wrong_type_is_named_on_every_path_the_app_is_called() -> None:
    from driftlock.fastapi import DriftlockMiddleware

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("not called")

    middleware = DriftlockMiddleware(app, exclude_paths="/docs")  # a string, not a list

    async def request() -> None:
        await middleware({"type": "http", "path": "/", "method": "GET", "headers": []}, None, None)  # type: ignore[arg-type]

    with pytest.raises(DriftlockConfigurationError, match="EXCLUDE_PATHS must be a list of strings"):
        asyncio.run(request())


SPANS = """
import json, sys
from fastapi import FastAPI, Request
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from driftlock.fastapi import DriftlockMiddleware

app = FastAPI()
app.add_middleware(DriftlockMiddleware, base_url=sys.argv[1], stream_id="spans", enabled=sys.argv[2] != "off")
sub = FastAPI()
@sub.get("/things/{thing_id}")
async def thing(thing_id: int):
    return {"thing": thing_id}
app.mount("/api", sub)
@app.get("/items/{item_id}")
async def item(item_id: int, request: Request):
    request.state.driftlock_context = {"tier": "gold"}
    return {"item_id": item_id}
memory = InMemorySpanExporter()
served = OpenTelemetryMiddleware(app) if sys.argv[2] == "outer" else app  # as opentelemetry-instrument would
with TestClient(served) as http:
    provider = trace.get_tracer_provider()
    if hasattr(provider, "add_span_processor"):
        provider.add_span_processor(SimpleSpanProcessor(memory))
    for path in ("/items/1", "/items/2", "/api/things/3", "/nope"):
        http.get(path)
print(json.dumps([[s.name, s.kind.name, s.attributes.get("http.route"), s.attributes.get("driftlock.context")]
                  for s in memory.get_finished_spans()]))
"""


@pytest.mark.parametrize("enabled", ["on", "off", "outer", "disabled-by-environment"])
def test_exactly_one_span_per_request_and_none_when_disabled(enabled: str, server: ServerProcess) -> None:
    """Every span the process makes (not only exported ones): no receive/send spans, none from FastAPI's own
    telemetry or a mounted FastAPI app; under an outer instrumentation's server span, that span, with ours
    attributes."""
    result = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", SPANS, server.url, enabled],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PROJECT,
        env=clean_env(OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="asgi,fastapi")
        if enabled == "disabled-by-environment"
        else clean_env(),
    )
    assert result.returncode == 0, result.stderr
    spans = json.loads(result.stdout.splitlines()[-1])
    if enabled in ("off", "disabled-by-environment"):
        assert spans == []
        return
    context = '{"tier": "gold"}'
    if enabled == "outer":  # named by the outer middleware, from the path; its own send spans aside
        assert [s for s in spans if not s[0].endswith(" http send")] == [
            ["GET /items/1", "SERVER", "/items/{item_id}", context],
            ["GET /items/2", "SERVER", "/items/{item_id}", context],
            ["GET /api/things/3", "SERVER", "/api/things/{thing_id}", None],
            ["GET /nope", "SERVER", None, None],
        ]
        return
    assert spans == [
        ["GET /items/{item_id}", "SERVER", "/items/{item_id}", context],
        ["GET /items/{item_id}", "SERVER", "/items/{item_id}", context],
        ["GET /api/things/{thing_id}", "SERVER", "/api/things/{thing_id}", None],
        ["GET", "SERVER", None, None],
    ]


USER = """
import json, sys
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
from starlette.middleware.authentication import AuthenticationMiddleware
from driftlock.fastapi import DriftlockMiddleware

class Staff(SimpleUser):
    is_staff = True

class HeaderLogin(AuthenticationBackend):
    async def authenticate(self, conn):
        name = conn.headers.get("x-user")
        return (AuthCredentials(["authenticated"]), Staff(name) if name == "root" else SimpleUser(name)) if name else None

app = FastAPI()
app.add_middleware(AuthenticationMiddleware, backend=HeaderLogin())
app.add_middleware(DriftlockMiddleware, base_url=sys.argv[1], capture_user_id=sys.argv[2] == "on")
@app.get("/me")
async def me():
    return {}
memory = InMemorySpanExporter()
with TestClient(app) as http:
    trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(memory))
    for user in ("ana", "root", None):
        http.get("/me", headers={"x-user": user} if user else {})
print(json.dumps([[s.attributes.get("driftlock.user"), s.attributes.get("enduser.id")] for s in memory.get_finished_spans()]))
"""


@pytest.mark.parametrize("capture", ["on", "off"])
def test_user_class_always_and_user_id_only_when_asked(capture: str, server: ServerProcess) -> None:
    result = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", USER, server.url, capture],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PROJECT,
        env=clean_env(),
    )
    assert result.returncode == 0, result.stderr
    users = json.loads(result.stdout.splitlines()[-1])
    if capture == "on":
        assert users == [["authenticated", "ana"], ["staff", "root"], ["anonymous", None]]
    else:
        assert users == [["authenticated", None], ["staff", None], ["anonymous", None]]
