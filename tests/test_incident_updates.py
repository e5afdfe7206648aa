"""An open incident does not swallow what comes next: an attack that starts while another incident is open
updates it, and the application is told of the attack as itself (once, across processes), while one attack
alone never updates its own incident."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from driftlock.service import DetectionService
from tests import traffic
from tests.support import ServerProcess, clean_env


def _events(plan: list[tuple[str, int, float]], seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    make = {"scanner": traffic.scanner, "injection": traffic.injection}
    out = []
    for kind, n, share in plan:
        for _ in range(n):
            if kind == "both" and rng.random() < share:
                out.append(traffic.scanner(rng) if rng.random() < 0.5 else traffic.injection(rng))
            elif kind in make and rng.random() < share:
                out.append(make[kind](rng))
            else:
                out.append(traffic.normal(rng))
    return out


def _run(events: list[dict[str, Any]]) -> tuple[DetectionService, list[tuple[str, dict[str, Any]]], list[Any]]:
    service = DetectionService()
    told: list[tuple[str, dict[str, Any]]] = []
    service.add_listener(lambda kind, incident: told.append((kind, incident)))
    answers = [
        service.detect({"stream_id": "s", "events": events[i : i + 50]}, request_id="t")
        for i in range(0, len(events), 50)
    ]
    return service, told, answers


@pytest.mark.parametrize("seed", range(3))
def test_one_attack_alone_never_updates_its_incident(seed: int) -> None:
    for kind in ("scanner", "injection"):
        _, told, _ = _run(_events([("normal", 600, 0), (kind, 400, 0.5), ("normal", 300, 0)], seed))
        assert [k for k, _ in told] == ["opened", "resolved"], (kind, told)


@pytest.mark.parametrize("seed", range(3))
def test_an_attack_during_an_open_incident_updates_it_once_and_says_what_changed(seed: int) -> None:
    events = _events([("normal", 600, 0), ("scanner", 200, 0.5), ("both", 250, 0.8), ("normal", 300, 0)], seed)
    service, told, answers = _run(events)
    assert [k for k, _ in told] == ["opened", "updated", "resolved"], told
    incident_id = told[0][1]["id"]
    assert {i["id"] for _, i in told} == {incident_id}  # the same incident, told of the change
    marks = [a["incident"] for r in answers for a in r["anomalies"] if a["incident"] and a["incident"].get("updated")]
    assert marks == [{"id": incident_id, "opened": False, "updated": True}]  # one anomaly carries the news
    changes = [c["change"] for r in answers for c in r["incidents"]]
    assert changes == ["opened", "updated", "resolved"]
    updates = service.get_incident(incident_id)["updates"]
    assert len(updates) == 1 and "GET search/" in updates[0]["change"]


SENDER = textwrap.dedent(
    """
    import json, random, sys
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    import driftlock
    from driftlock import DriftlockSpanExporter

    url, out = sys.argv[1], sys.argv[2]
    provider = TracerProvider(resource=Resource.create({"service.name": "updates"}))
    provider.add_span_processor(SimpleSpanProcessor(DriftlockSpanExporter(base_url=url, stream_id="updates")))
    tracer = provider.get_tracer("t")

    def told(anomaly, span):
        with open(out, "a") as f:
            mark = anomaly.incident
            f.write(json.dumps({"incident": mark.id, "opened": mark.opened, "updated": mark.updated,
                                "route": span.route}) + "\\n")

    driftlock.add_anomaly_handler(told)
    rng = random.Random(5)
    ordinary = lambda: ("GET", rng.choice(["", "products/", "search/", "cart/", "checkout/"]), 200)
    scanner = lambda: ("GET", rng.choice(["/.env", "/wp-login.php", "/.git/config"]), 404)
    plan = [ordinary() for _ in range(600)]
    plan += [scanner() if rng.random() < 0.5 else ordinary() for _ in range(150)]
    plan += [("POST", "login/", 401) if rng.random() < 0.5 else scanner() if rng.random() < 0.5 else ordinary()
             for _ in range(200)]
    plan += [ordinary() for _ in range(150)]
    for method, route, status in plan:
        with tracer.start_as_current_span(method, kind=trace.SpanKind.SERVER) as span:
            span.set_attributes({"http.request.method": method, "http.route": route,
                                 "http.response.status_code": status})
    provider.shutdown()
    """
)


def test_the_application_is_told_of_an_attack_that_starts_during_an_open_incident(
    server: ServerProcess, tmp_path: Path
) -> None:
    """A real exporter against a real `driftlock serve`: a scanner opens an incident, then credential stuffing
    starts while it is open; the application's handler hears of both, the second as an update."""
    out = tmp_path / "told.jsonl"
    script = tmp_path / "sender.py"
    script.write_text(SENDER)
    subprocess.run([sys.executable, str(script), server.url, str(out)], env=clean_env(), check=True, timeout=300)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(li["opened"], li["updated"]) for li in lines] == [(True, False), (False, True)], lines
    assert lines[0]["incident"] == lines[1]["incident"] and lines[1]["route"] == "login/"
    incident = server.get(f"/v1/incidents/{lines[0]['incident']}").json()
    assert [u["change"] for u in incident["updates"]] == ["new surging route(s): POST login/"]
