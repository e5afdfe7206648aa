"""Incidents: decided once per stream by the detection service, told once, whoever sends the stream."""

from __future__ import annotations

import json
import logging
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from driftlock.demo import scenarios
from driftlock.demo.runner import run as run_demo
from driftlock.service import DetectionService
from driftlock.service.incidents import IncidentRule, IncidentState, merge_explanation, route_of
from tests import traffic
from tests.support import FaultServer, Reply, ServerProcess, clean_env, running_server


def ordinary(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [traffic.normal(rng) for _ in range(n)]


def attack(n: int, seed: int, share: float = 0.5) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [traffic.scanner(rng) if rng.random() < share else traffic.normal(rng) for _ in range(n)]


def feed(detect: Any, events: list[dict[str, Any]], batch: int = 50) -> list[dict[str, Any]]:
    """Send ``events`` in batches; every detect answer, in order."""
    return [detect(events[i : i + batch]) for i in range(0, len(events), batch)]


def opened(answers: list[dict[str, Any]]) -> list[str]:
    return [
        a["incident"]["id"] for r in answers for a in r["anomalies"] if a.get("incident") and a["incident"]["opened"]
    ]


# -- the rule ----------------------------------------------------------------------------------------


def test_confirmations_within_a_window_open_an_incident_once() -> None:
    rule = IncidentRule(confirmations=3, window=50)
    state = IncidentState()
    assert state.confirm(rule, 100, "a") is None and state.confirm(rule, 110, "b") is None
    assert state.confirm(rule, 120, "c") == ["a", "b", "c"] and state.pending == []
    assert state.confirm(rule, 300, "d") is None and state.confirm(rule, 400, "e") is None  # too far apart
    assert state.pending == [(400, "e")]
    assert IncidentRule(confirmations=1).confirms(0.04) and not IncidentRule(confirmations=3).confirms(0.04)
    assert IncidentState.from_json(json.loads(json.dumps(state.to_json()))) == state


def test_an_incident_names_the_routes_of_its_evidence_not_of_the_request_that_triggered_it() -> None:
    login = {"body": {"method": "POST", "route": "login/", "status": 401}}
    probe = {"body": {"method": "GET", "route": "/.env", "status": 404}}
    first = {"summary": "s", "signal": "frequency", "surges": [{"event": login, "count": 9}], "least_like": []}
    later = {"surges": [{"event": login, "count": 16}], "least_like": [{"event": probe}]}
    merged = merge_explanation(merge_explanation(None, first), later)
    assert merged["routes"] == ["POST login/", "GET /.env"] and merged["surges"][0]["count"] == 16
    assert route_of({"endpoint": "/api/users", "method": "GET"}) == "GET /api/users" and route_of("text") is None


# -- the service --------------------------------------------------------------------------------------


def test_a_long_attack_is_one_incident_and_ordinary_traffic_after_it_opens_none() -> None:
    service = DetectionService()
    detect = lambda events: service.detect({"stream_id": "long", "events": events}, request_id="t")
    answers = feed(detect, ordinary(600, 1) + attack(1000, 2) + ordinary(800, 3))
    changes = [(c["change"], c["id"]) for r in answers for c in r["incidents"]]
    assert [kind for kind, _ in changes] == ["opened", "resolved"], changes  # told once, resolved once
    assert opened(answers) == [changes[0][1]]
    incident = service.get_incident(changes[0][1])
    assert incident["status"] == "resolved" and incident["resolution"] == "quiet"
    assert 600 <= incident["opened_position"] < 700 and incident["last_position"] >= 1500
    assert incident["anomaly_count"] >= 50 and incident["anomalies_total"] == incident["anomaly_count"]
    assert any(r.startswith("GET /") for r in incident["explanation"]["routes"]), incident["explanation"]


def test_one_confirmation_makes_every_anomaly_outside_an_incident_open_one() -> None:
    service = DetectionService()
    body = {"stream_id": "one", "config_override": {"confirmations": 1}}
    answers = feed(
        lambda e: service.detect({**body, "events": e}, request_id="t"), ordinary(460, 4) + attack(40, 5, 1.0)
    )
    first = next(a for r in answers for a in r["anomalies"])
    assert first["incident"]["opened"] is True
    with pytest.raises(Exception, match="confirmations must be an integer"):
        service.detect({**body, "events": [{"a": 1}], "config_override": {"confirmations": 0}}, request_id="t")


def test_false_positive_feedback_resolves_and_muting_tells_nothing() -> None:
    service = DetectionService()
    told: list[tuple[str, str]] = []
    service.add_listener(lambda kind, incident: told.append((kind, incident["id"])))
    detect = lambda events: service.detect({"stream_id": "fb", "events": events}, request_id="t")
    answers = feed(detect, ordinary(500, 6) + attack(120, 7))
    incident_id = opened(answers)[0]
    assert told == [("opened", incident_id)]
    result = service.incident_feedback(incident_id, {"feedback_type": "false_positive", "reason": "deploy"})
    assert result["incident"]["status"] == "resolved" and told[-1] == ("resolved", incident_id)
    members = service.get_incident(incident_id)["anomalies"]
    assert members and all(a["status"] == "resolved" for a in members)
    service.mute_stream("fb", 3600)
    muted = feed(detect, attack(200, 8, 1.0))
    assert opened(muted) == [] and told[-1] == ("resolved", incident_id)
    assert service.list_incidents("fb", "muted")["total"] == 1


# -- several processes, one stream --------------------------------------------------------------------

SENDER = textwrap.dedent(
    """
    import json, os, random, sys
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    import driftlock
    from driftlock import DriftlockSpanExporter

    url, me, processes, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    provider = TracerProvider(resource=Resource.create({"service.name": "shared"}))
    provider.add_span_processor(SimpleSpanProcessor(DriftlockSpanExporter(base_url=url, stream_id="shared")))
    tracer = provider.get_tracer("t")

    def told(anomaly, span):
        with open(out, "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "incident": anomaly.incident.id,
                                "opened": anomaly.incident.opened}) + "\\n")

    driftlock.add_anomaly_handler(told)
    rng = random.Random(7)
    plan = [("GET", rng.choice(["", "products/", "search/", "cart/"]), 200) for _ in range(600)]
    plan += [("GET", rng.choice(["/.env", "/wp-login.php", "/.git/config"]), 404) if rng.random() < 0.5
             else ("GET", "products/", 200) for _ in range(150)]
    plan += [("GET", rng.choice(["", "products/", "search/", "cart/"]), 200) for _ in range(150)]
    for i, (method, route, status) in enumerate(plan):
        if i % processes != me:
            continue
        with tracer.start_as_current_span("GET", kind=trace.SpanKind.SERVER) as span:
            span.set_attributes({"http.request.method": method, "http.route": route,
                                 "http.response.status_code": status})
    provider.shutdown()
    """
)


def test_several_processes_sending_one_stream_are_told_of_each_incident_once(
    server: ServerProcess, tmp_path: Path
) -> None:
    out = tmp_path / "told.jsonl"
    script = tmp_path / "sender.py"
    script.write_text(SENDER)
    senders = [
        subprocess.Popen([sys.executable, str(script), server.url, str(i), "3", str(out)], env=clean_env())
        for i in range(3)
    ]
    assert [p.wait(120) for p in senders] == [0, 0, 0]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    at_server = server.get("/v1/incidents", params={"stream_id": "shared"}).json()["incidents"]
    assert at_server, "the scanner burst opened no incident"
    # each told exactly once as it opens (an update of its evidence is told too, marked so)
    assert sorted(li["incident"] for li in lines if li["opened"]) == sorted(i["id"] for i in at_server)
    assert all(li["incident"] in {i["id"] for i in at_server} for li in lines)
    assert server.get("/v1/streams/shared").json()["events_ingested"] == 900


def test_two_servers_over_one_sqlite_file_answer_as_one(tmp_path: Path) -> None:
    events = ordinary(500, 11) + attack(200, 12) + ordinary(300, 13)
    batches = [events[i : i + 50] for i in range(0, len(events), 50)]

    def outcome(urls: list[str]) -> tuple[list[Any], list[Any]]:
        with httpx.Client(timeout=60) as http:
            for n, batch in enumerate(batches):
                http.post(
                    urls[n % len(urls)] + "/v1/detect", json={"stream_id": "s", "events": batch}
                ).raise_for_status()
            listed = http.get(urls[-1] + "/v1/anomalies", params={"stream_id": "s", "limit": 100}).json()
            details = [http.get(f"{urls[0]}/v1/anomalies/{a['id']}").json() for a in listed["anomalies"]]
            incidents = http.get(urls[0] + "/v1/incidents", params={"stream_id": "s"}).json()["incidents"]
        return (
            sorted((d["position"], d["metrics"]["ncd"], d["metrics"]["p_value"]) for d in details),
            [(i["opened_position"], i["last_position"], i["status"], i["anomaly_count"]) for i in incidents],
        )

    with running_server(tmp_path / "one.sqlite3") as single:
        expected = outcome([single.url])
    with running_server(tmp_path / "shared.sqlite3") as a, running_server(tmp_path / "shared.sqlite3") as b:
        assert outcome([a.url, b.url]) == expected
    assert expected[0] and len(expected[1]) == 1


def test_a_kill_9_mid_incident_keeps_it_and_opens_no_second_one(tmp_path: Path) -> None:
    db = tmp_path / "kill.sqlite3"
    srv = ServerProcess(db).start()
    try:
        detect = lambda events: srv.post("/v1/detect", json={"stream_id": "k", "events": events}).json()
        first = feed(detect, ordinary(500, 21) + attack(100, 22, 0.7))
        assert len(opened(first)) == 1
        srv.kill9()
        srv.start()
        after = feed(detect, attack(150, 23, 0.7))
        assert opened(after) == [] and all(c["change"] != "opened" for r in after for c in r["incidents"])
        incidents = srv.get("/v1/incidents", params={"stream_id": "k"}).json()["incidents"]
        assert len(incidents) == 1 and incidents[0]["id"] == opened(first)[0]
        assert incidents[0]["last_position"] >= 600  # the anomalies after the restart joined it
    finally:
        srv.stop()


# -- the exporter ---------------------------------------------------------------------------------------


def test_against_an_api_that_marks_no_incidents_alarms_are_per_process_and_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import SpanKind

    import driftlock
    from driftlock import DriftlockSpanExporter

    anomaly = {"id": "a", "index": 0, "metrics": {"ncd": 0.9, "p_value": 0.0}, "why": "w", "detected": True}
    hosted = Reply(body={"success": True, "total_events": 1, "anomalies": [anomaly]})  # no "incidents" key
    told: list[str] = []
    handler = lambda a, span: told.append(a.id)
    driftlock.add_anomaly_handler(handler)
    try:
        with FaultServer(default=hosted) as api, caplog.at_level(logging.WARNING, "driftlock"):
            exporter = DriftlockSpanExporter(base_url=api.url, stream_id="hosted", confirmations=1)
            tracer = TracerProvider().get_tracer("t")
            for _ in range(3):
                span = tracer.start_span("GET", kind=SpanKind.SERVER, attributes={"http.request.method": "GET"})
                span.end()
                exporter.export([span])  # type: ignore[list-item]
            exporter.shutdown()
    finally:
        driftlock.remove_anomaly_handler(handler)
    assert told == ["a"]  # this process's own rule: one confirmation, then none within the window
    assert sum("marks no incidents" in r.getMessage() for r in caplog.records) == 1
    assert api.seen[0].body["config_override"] == {"confirmations": 1}


# -- the embedded engine under gunicorn -------------------------------------------------------------------


def test_the_embedded_engine_under_four_workers_tells_what_one_worker_tells() -> None:
    kinds = ("scanner", "sql_injection", "new_endpoint")
    phases = scenarios.plan(3, kinds=kinds, warmup=500)
    # one after the other: side by side, six processes on two cores made the four workers' durations noise
    one, four = (run_demo(3, 24, workers=workers, embedded=True, phases=phases) for workers in (1, 4))
    assert one.workers == 1 and four.workers == 4
    assert len({a.pid for a in four.alarms}) >= 1
    for result in (one, four):
        assert result.told_twice == 0 and result.opened_untold == 0
        assert {r.episode.kind for r in result.score.episodes if r.found} == set(kinds), result.as_dict()
        assert result.score.false_alarms == 0, result.as_dict()
