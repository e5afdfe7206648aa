"""Several `driftlock serve` replicas over one PostgreSQL answer as one: real processes, a real server.

A load balancer may hand any batch of a stream to any replica. The stream's lock and its record live
in the database, so two replicas fed one stream alternately detect exactly what one replica detects
from the same events, open each incident once, and list the same anomalies; a replica killed mid-batch
loses no event the API acknowledged; a replica started later serves what the others stored.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests import traffic
from tests.postgres import PostgresServer, postgres_fixture
from tests.support import ServerProcess

postgres_server = postgres_fixture(scope="module", name="postgres_server")

BATCH = 100
STREAM = "shop"


def shop(n: int, seed: int) -> list[dict[str, Any]]:
    """Ordinary shop traffic with a scanner episode every 600 events (incidents open and resolve)."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    while len(out) < n:
        out += [traffic.normal(rng) for _ in range(560)]
        out += [traffic.scanner(rng) for _ in range(40)]
    return out[:n]


def detect(server: ServerProcess, events: list[dict[str, Any]], stream_id: str = STREAM) -> dict[str, Any]:
    response = server.post("/v1/detect", json={"stream_id": stream_id, "events": events})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def decisions(answer: dict[str, Any], offset: int) -> dict[str, Any]:
    """What a detect answer decided, without the ids and times that differ between runs."""
    return {
        "anomalies": [
            (offset + a["index"], a["metrics"], a["incident"]["opened"] if a["incident"] else None)
            for a in answer["anomalies"]
        ],
        "incidents": [
            (i["change"], i["opened_position"], i["last_position"], i["resolution"], i["anomaly_count"])
            for i in answer["incidents"]
        ],
    }


def every(server: ServerProcess, path: str, key: str, **query: Any) -> list[dict[str, Any]]:
    """All rows of a paginated listing, page by page."""
    rows: list[dict[str, Any]] = []
    for page in range(100):
        answer = server.get(path, params={**query, "limit": 100, "offset": page * 100}).json()
        rows += answer[key]
        if len(rows) >= answer["total"]:
            assert len(rows) == answer["total"]
            return rows
    raise AssertionError(f"{path} did not end after 100 pages")


def without(answer: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if k not in keys}


@dataclass
class Fed:
    database: str
    events: list[dict[str, Any]]
    alone: list[dict[str, Any]] = field(default_factory=list)  # one replica's decisions per batch
    together: list[dict[str, Any]] = field(default_factory=list)  # two replicas', alternately
    opened_ids: list[str] = field(default_factory=list)
    single: ServerProcess | None = None
    replicas: list[ServerProcess] = field(default_factory=list)


@pytest.fixture(scope="module")
def fed(postgres_server: PostgresServer) -> Iterator[Fed]:
    """One replica over one database, two over another, fed the same batches (the two alternately)."""
    run = Fed(postgres_server.new_database("replicas_fed"), shop(2600, 11))
    single = ServerProcess(postgres_server.new_database("replicas_alone")).start()
    replicas = [ServerProcess(run.database).start() for _ in range(2)]
    run.single, run.replicas = single, replicas
    try:
        for n, offset in enumerate(range(0, len(run.events), BATCH)):
            batch = run.events[offset : offset + BATCH]
            run.alone.append(decisions(detect(single, batch), offset))
            answer = detect(replicas[n % 2], batch)
            run.together.append(decisions(answer, offset))
            run.opened_ids += [i["id"] for i in answer["incidents"] if i["change"] == "opened"]
        yield run
    finally:
        for server in (single, *replicas):
            server.stop()


def test_two_replicas_fed_one_stream_alternately_decide_what_one_replica_decides(fed: Fed) -> None:
    assert fed.together == fed.alone
    opened = [i for batch in fed.alone for i in batch["incidents"] if i[0] == "opened"]
    resolved = [i for batch in fed.alone for i in batch["incidents"] if i[0] == "resolved"]
    assert len(opened) >= 4 and len(resolved) >= 4  # the episodes opened incidents and they resolved
    assert sum(len(batch["anomalies"]) for batch in fed.alone) >= 20
    # each incident was opened once, by one replica's answer, and is stored once
    assert len(set(fed.opened_ids)) == len(fed.opened_ids) == len(opened)
    first = fed.replicas[0]
    incidents = every(first, "/v1/incidents", "incidents", stream_id=STREAM)
    assert sorted(i["id"] for i in incidents) == sorted(fed.opened_ids)
    assert sorted((i["opened_position"], i["status"]) for i in incidents) == sorted(
        (i[1], "resolved") for i in resolved
    )


def test_every_replica_lists_the_same_anomalies_and_incidents(fed: Fed) -> None:
    assert fed.single is not None
    first, second = fed.replicas
    mine = every(first, "/v1/anomalies", "anomalies")
    assert mine == every(second, "/v1/anomalies", "anomalies")
    assert len(mine) == sum(len(batch["anomalies"]) for batch in fed.alone)
    alone = every(fed.single, "/v1/anomalies", "anomalies")
    assert [(a["ncd"], a["p_value"], a["explanation"]) for a in mine] == [
        (a["ncd"], a["p_value"], a["explanation"]) for a in alone
    ]
    assert every(first, "/v1/incidents", "incidents") == every(second, "/v1/incidents", "incidents")
    page = first.get("/v1/anomalies", params={"stream_id": STREAM, "limit": 5, "offset": 5}).json()
    assert without(page, "request_id") == without(
        second.get("/v1/anomalies", params={"stream_id": STREAM, "limit": 5, "offset": 5}).json(), "request_id"
    )
    assert [a["id"] for a in page["anomalies"]] == [a["id"] for a in mine[5:10]]
    detail = first.get(f"/v1/anomalies/{mine[0]['id']}").json()
    assert without(detail, "request_id") == without(second.get(f"/v1/anomalies/{mine[0]['id']}").json(), "request_id")


def test_a_replica_started_later_serves_what_the_others_stored_and_carries_the_stream_on(
    fed: Fed, postgres_server: PostgresServer
) -> None:
    assert fed.single is not None
    first = fed.replicas[0]
    later = ServerProcess(fed.database).start()
    try:
        assert every(later, "/v1/anomalies", "anomalies") == every(first, "/v1/anomalies", "anomalies")
        assert every(later, "/v1/incidents", "incidents") == every(first, "/v1/incidents", "incidents")
        some = every(first, "/v1/anomalies", "anomalies")[3]["id"]
        assert without(later.get(f"/v1/anomalies/{some}").json(), "request_id") == without(
            first.get(f"/v1/anomalies/{some}").json(), "request_id"
        )
        assert without(later.get(f"/v1/streams/{STREAM}").json(), "request_id") == without(
            first.get(f"/v1/streams/{STREAM}").json(), "request_id"
        )
        # the stream goes on from the stored record, on the new replica, as it does on the single one
        more = shop(3200, 11)[len(fed.events) :]
        for offset in range(0, len(more), BATCH):
            batch = more[offset : offset + BATCH]
            position = len(fed.events) + offset
            assert decisions(detect(later, batch), position) == decisions(detect(fed.single, batch), position)
        feedback = later.post(f"/v1/anomalies/{some}/feedback", json={"feedback_type": "confirmed"})
        assert feedback.status_code == 200
        assert first.get(f"/v1/anomalies/{some}").json()["status"] == "acknowledged"
    finally:
        later.stop()


def tagged(batch: int, size: int) -> list[dict[str, Any]]:
    return [{"type": "trace", "body": {"route": "cart/", "tag": f"b{batch}e{i}"}} for i in range(size)]


def test_a_replica_killed_mid_batch_loses_no_acknowledged_event(postgres_server: PostgresServer) -> None:
    database = postgres_server.new_database("replicas_kill")
    victim, survivor = ServerProcess(database).start(), ServerProcess(database).start()
    size = 100
    acknowledged: list[int] = []
    unanswered: list[int] = []  # sent, and the replica died before answering
    counter = iter(range(10_000))
    lock = threading.Lock()
    enough = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=victim.url, timeout=30) as http:
            for _ in range(100):
                with lock:
                    batch = next(counter)
                body = {"stream_id": "k", "events": tagged(batch, size), "config_override": {"confirmations": 100}}
                try:
                    response = http.post("/v1/detect", json=body)
                except httpx.ConnectError:
                    return  # the replica is gone: nothing was sent
                except httpx.TransportError:
                    with lock:
                        unanswered.append(batch)
                    return
                assert response.status_code == 200, response.text
                with lock:
                    acknowledged.append(batch)
                    if len(acknowledged) >= 8:
                        enough.set()

    try:
        threads = [threading.Thread(target=client) for _ in range(3)]
        for t in threads:
            t.start()
        assert enough.wait(60), "the victim acknowledged too little"
        victim.kill9()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads)
        assert unanswered, "the kill landed between batches: no batch was in flight"
        info = survivor.get("/v1/streams/k").json()
        stored = {
            e["body"]["tag"] for e in survivor.get("/v1/streams/k/events", params={"limit": 2000}).json()["events"]
        }
        for batch in acknowledged:  # every acknowledged event is stored
            assert {f"b{batch}e{i}" for i in range(size)} <= stored
        for batch in unanswered:  # a batch in flight is stored whole or not at all
            assert len({f"b{batch}e{i}" for i in range(size)} & stored) in (0, size)
        assert info["events_ingested"] == len(stored) and len(stored) % size == 0
        assert len(acknowledged) * size <= info["events_ingested"] <= (len(acknowledged) + len(unanswered)) * size
        # the dead replica's lock went with its connection: the survivor carries the stream on
        answer = survivor.post("/v1/detect", json={"stream_id": "k", "events": tagged(9999, size)})
        assert answer.status_code == 200
        assert survivor.get("/v1/streams/k").json()["events_ingested"] == info["events_ingested"] + size
    finally:
        victim.stop()
        survivor.stop()
