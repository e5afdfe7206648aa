"""A store that cannot answer is a 503 with Retry-After, never a 500; serve recovers by itself; nothing acknowledged
is lost (issue 24). A real PostgreSQL stopped under load and started again under a real `driftlock serve`, and a
SQLite database locked by another writer past the busy timeout."""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from driftlock.server.app import create_app
from driftlock.service.api import DetectionService
from driftlock.service.sqlite import SqliteStore
from tests.postgres import running_postgres
from tests.support import ServerProcess, wait_for

STREAMS = 8


class Load:
    """Detect batches sent one after another, each event marked; which were acknowledged, and every status."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.statuses: Counter[int] = Counter()
        self.retry_after: list[str] = []
        self.acknowledged: dict[str, list[str]] = {f"load-{i}": [] for i in range(STREAMS)}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._lock = threading.Lock()

    def start(self) -> Load:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(120)
        assert not self._thread.is_alive()

    def count(self, status: int) -> int:
        with self._lock:
            return self.statuses[status]

    def _run(self) -> None:
        with httpx.Client(base_url=self.server.url, timeout=60) as client:
            for n in range(100_000):  # bounded: the test stops it long before
                if self._stop.is_set():
                    return
                stream = f"load-{n % STREAMS}"
                marks = [f"m{n}-{i}" for i in range(3)]
                body = {
                    "stream_id": stream,
                    "events": [{"route": "/load", "mark": m} for m in marks],
                    "config_override": {"tokenizer": False},  # the marks are kept as sent
                }
                try:
                    response = client.post("/v1/detect", json=body)
                except httpx.HTTPError as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                with self._lock:
                    self.statuses[response.status_code] += 1
                    if response.status_code == 200:
                        self.acknowledged[stream] += marks
                    elif response.status_code == 503:
                        self.retry_after.append(response.headers.get("retry-after", ""))
                        if response.json()["error"]["code"] != "service_unavailable":
                            self.errors.append(f"503 without the envelope's code: {response.text[:200]}")


def test_postgres_stopped_under_load_is_a_503_then_serve_recovers_and_keeps_every_acknowledged_event() -> None:
    with running_postgres() as postgres:
        server = ServerProcess(postgres.new_database("outage")).start()
        try:
            load = Load(server).start()
            try:
                wait_for(lambda: load.count(200) >= 30, timeout=60, message="the load to be answered")
                postgres.stop()
                wait_for(lambda: load.count(503) >= 3, timeout=90, message="503s while PostgreSQL is down")
                assert server.get("/readyz").status_code == 503
                postgres.start()  # the same port and data
                answered = load.count(200)
                wait_for(lambda: load.count(200) >= answered + 30, timeout=90, message="200s again, without a restart")
            finally:
                load.stop()
            print("statuses:", dict(load.statuses), "client errors:", load.errors[:3])
            assert load.statuses[500] == 0, load.statuses
            assert set(load.statuses) <= {200, 503}, load.statuses
            assert not load.errors, load.errors[:3]  # no connection failed, every 503 was the envelope
            assert load.retry_after and all(v.isdigit() and int(v) >= 1 for v in load.retry_after)
            for stream, marks in load.acknowledged.items():
                events = server.get(f"/v1/streams/{stream}/events", params={"limit": 2000}).json()["events"]
                kept = {e["mark"] for e in events}
                assert set(marks) <= kept, f"{stream}: {len(set(marks) - kept)} acknowledged events lost"
            assert server.get("/readyz").status_code == 200
        finally:
            server.stop()


@pytest.mark.asyncio
async def test_sqlite_locked_past_its_busy_timeout_is_a_503_with_retry_after(tmp_path: Path) -> None:
    db = tmp_path / "busy.sqlite3"
    service = DetectionService(SqliteStore(db, busy_timeout=0.2))
    transport = httpx.ASGITransport(create_app(service), raise_app_exceptions=False)
    body: dict[str, Any] = {"stream_id": "busy", "events": [{"route": "/a"}]}
    writer = sqlite3.connect(db, isolation_level=None)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        writer.execute("BEGIN EXCLUSIVE")  # another process writing, for longer than the busy timeout
        try:
            busy = await client.post("/v1/detect", json=body)
        finally:
            writer.execute("ROLLBACK")
            writer.close()
        assert busy.status_code == 503, busy.text
        assert busy.headers["retry-after"] == "2"
        error = busy.json()["error"]
        assert error["code"] == "service_unavailable" and error["retry_after_seconds"] == 2
        assert "busy" in error["message"]
        again = await client.post("/v1/detect", json=body)  # the client's retry, once the writer is done
        assert again.status_code == 200 and again.json()["total_events"] == 1
        assert (await client.get("/v1/streams/busy")).json()["events_ingested"] == 1  # the 503 stored nothing
