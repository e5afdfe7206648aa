"""Celery: a real Redis server, a real prefork worker, a real `driftlock serve`.

Skipped with the reason when `redis-server` is not installed on a developer machine; in CI
(CI=true) a missing Redis fails instead, because `.ci/run` installs it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from driftlock.demo.process import ListeningProcess
from tests.support import INSTRUMENT, ServerProcess, clean_env, running_server, wait_for

PROJECT = Path(__file__).resolve().parent / "celery_project"
REDIS = shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)

if REDIS is None:
    if os.environ.get("CI"):
        pytest.fail("redis-server is missing in CI: .ci/run should have installed it", pytrace=False)
    pytest.skip(
        "redis-server is not installed (apt-get install redis-server); Celery tests need it", allow_module_level=True
    )


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server on a free loopback port, no persistence."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = tmp_path_factory.mktemp("redis")
    assert REDIS is not None
    proc = subprocess.Popen(
        [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def answers() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    try:
        wait_for(answers, timeout=15, message="redis-server to answer PING")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


class Worker:
    """`celery -A celery_app worker` in a subprocess, ready when it says so."""

    def __init__(self, broker: str, driftlock_url: str, *args: str, **env: str) -> None:
        self.cmd = [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "--loglevel=INFO", *args]
        self.env = clean_env(
            CELERY_BROKER_URL=broker,
            DRIFTLOCK_BASE_URL=driftlock_url,
            DRIFTLOCK_STREAM_ID="shop",
            OTEL_SERVICE_NAME="shop-worker",
            PYTHONPATH=str(PROJECT),
            **env,
        )
        self.process: ListeningProcess | None = None

    @property
    def output(self) -> list[str]:
        return self.process.output if self.process else []

    def __enter__(self) -> Worker:
        self.process = ListeningProcess(self.cmd, self.env, "celery worker", cwd=PROJECT)
        self.process.wait_for_line(re.compile(r" ready\."))
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.stop(timeout=30)  # warm shutdown: pool processes end, worker_process_shutdown flushes


def client_app(broker: str) -> Any:
    """The producer side: the same tasks, sent from this test process."""
    from celery import Celery

    app = Celery("jobs", broker=broker, backend=broker)
    app.conf.broker_connection_retry_on_startup = True
    return app


def events(srv: ServerProcess, stream: str) -> list[dict[str, Any]]:
    response = srv.get(f"/v1/streams/{stream}/events", params={"limit": 2000})
    return response.json()["events"] if response.status_code == 200 else []


def run_tasks(app: Any) -> None:
    results = [app.send_task("tasks.add", (i, i)) for i in range(4)]
    results.append(app.send_task("tasks.fail"))
    results.append(app.send_task("tasks.flaky"))
    for result in results:
        result.get(timeout=60, propagate=False)
    assert [r.get(timeout=1, propagate=False) for r in results[:4]] == [0, 2, 4, 6]
    assert results[4].state == "FAILURE" and results[5].get(timeout=1) == "third time lucky"


def summary(found: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((e["body"]["task"], e["body"]["state"]) for e in found)


EXPECTED = sorted(
    [("tasks.add", "SUCCESS")] * 4
    + [("tasks.fail", "FAILURE")]
    + [("tasks.flaky", "RETRY")] * 2
    + [("tasks.flaky", "SUCCESS")]
)


def test_prefork_worker_tasks_become_events_in_their_own_stream(redis_url: str) -> None:
    with running_server() as srv:
        with Worker(redis_url, srv.url, "--pool=prefork", "--concurrency=2"):
            run_tasks(client_app(redis_url))
            wait_for(lambda: len(events(srv, "shop.celery")) >= len(EXPECTED), timeout=30, message="task events")
        found = events(srv, "shop.celery")
        web = events(srv, "shop")
    assert summary(found) == EXPECTED
    # as the engine stores them: a count is judged by its magnitude (0 stays 0, 2 is "<2.5")
    bodies = {(e["body"]["task"], e["body"]["state"], e["body"]["retries"]): e["body"] for e in found}
    assert bodies[("tasks.fail", "FAILURE", 0)]["error"] == "ValueError"
    assert ("tasks.flaky", "SUCCESS", "<2.5") in bodies  # the third run, after two retries
    assert all(e["body"]["kind"] == "task" and e["body"]["duration"].startswith(("<", ">=")) for e in found)
    assert web == []  # task traffic never mixes with web traffic


def test_recycled_pool_children_lose_no_task_span(redis_url: str) -> None:
    with running_server() as srv:
        with Worker(redis_url, srv.url, "--pool=prefork", "--concurrency=2", MAX_TASKS_PER_CHILD="1") as worker:
            run_tasks(client_app(redis_url))
            wait_for(lambda: len(events(srv, "shop.celery")) >= len(EXPECTED), timeout=30, message="task events")
        assert summary(events(srv, "shop.celery")) == EXPECTED, "".join(worker.output[-30:])


@pytest.mark.parametrize("pool", ["solo", "threads"])
def test_solo_and_threads_pools_are_watched(redis_url: str, pool: str) -> None:
    with running_server() as srv:
        with Worker(redis_url, srv.url, f"--pool={pool}", "--concurrency=1"):
            app = client_app(redis_url)
            assert app.send_task("tasks.add", (2, 3)).get(timeout=60) == 5
            wait_for(lambda: events(srv, "shop.celery"), timeout=30, message="a task event")
        assert summary(events(srv, "shop.celery")) == [("tasks.add", "SUCCESS")]


def test_the_page_snippet_runs_inside_the_worker(redis_url: str) -> None:
    with running_server() as srv:
        with Worker(redis_url, srv.url, "--pool=prefork", "--concurrency=2"):
            app = client_app(redis_url)
            duration = 0.25
            # views.py, as on the page (the task is sent by name from this process)
            result = app.send_task(
                "tasks.detect_anomaly_task",
                ({"timestamp": datetime.now().isoformat(), "type": "job_metric", "body": {"duration": duration}},),
            )
            result.get(timeout=60)
            found = wait_for(lambda: events(srv, "background-jobs"), timeout=30, message="the snippet's event")
    assert found[0]["body"] == {"duration": "<0.5"}  # stored as the engine judges it: a magnitude


def test_opentelemetry_instrument_celery_worker(redis_url: str) -> None:
    with running_server() as srv:
        worker = Worker(redis_url, srv.url, "--pool=prefork", "--concurrency=2")
        worker.cmd = [*INSTRUMENT, *worker.cmd]
        with worker:
            run_tasks(client_app(redis_url))
            wait_for(lambda: len(events(srv, "shop.celery")) >= len(EXPECTED), timeout=30, message="task events")
        assert summary(events(srv, "shop.celery")) == EXPECTED  # each span once, not twice
