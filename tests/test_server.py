"""`driftlock serve` over real HTTP: every endpoint, every error case, persistence, OTLP."""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import httpx
import pytest

from tests import traffic
from tests.openapi import component, response_schema, validate
from tests.support import ServerProcess, clean_env, running_server, wait_for


def anomalous_batch(seed: int = 1) -> list[dict[str, object]]:
    """460 normal requests, then a scanner burst: the first detection after the burst fires."""
    rng = random.Random(seed)
    return [traffic.normal(rng) for _ in range(460)] + [traffic.scanner(rng) for _ in range(20)]


def test_health_and_readiness(server: ServerProcess) -> None:
    health = server.get("/healthz")
    assert health.status_code == 200 and health.json()["ok"] is True
    validate(health.json(), response_schema("/healthz", "get"))
    ready = server.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {**ready.json(), "ready": True, "database": "connected"}
    validate(ready.json(), response_schema("/readyz", "get"))


def test_detect_anomalies_streams_feedback_and_metrics(server: ServerProcess) -> None:
    calibrating = server.post("/v1/detect", json={"stream_id": "srv-a", "events": traffic.events(5)}).json()
    assert calibrating["status"] == "calibrating" and calibrating["calibration"]["events_ingested"] == 5
    validate(calibrating, response_schema("/v1/detect", "post"))

    response = server.post("/v1/detect", json={"stream_id": "srv-a", "events": anomalous_batch()})
    assert response.status_code == 200
    body = response.json()
    validate(body, response_schema("/v1/detect", "post"))
    assert body["status"] == "ready" and body["detection_ready"] is True and body["anomaly_count"] >= 1
    anomaly = body["anomalies"][0]
    assert anomaly["index"] >= 460 and anomaly["event"]["body"]["status"] == 404
    assert anomaly["metrics"]["p_value"] <= 0.05 and anomaly["why"].startswith("Anomalous window")

    listed = server.get("/v1/anomalies", params={"stream_id": "srv-a", "limit": 1}).json()
    validate(listed, response_schema("/v1/anomalies", "get"))
    assert listed["total"] == body["anomaly_count"] and len(listed["anomalies"]) == 1
    assert server.get("/v1/anomalies", params={"stream_id": "nobody"}).json()["total"] == 0

    detail = server.get(f"/v1/anomalies/{anomaly['id']}").json()
    validate(detail, response_schema("/v1/anomalies/{id}", "get"))
    assert detail["event"] == anomaly["event"] and detail["metrics"]["ncd"] == anomaly["metrics"]["ncd"]

    feedback = server.post(f"/v1/anomalies/{anomaly['id']}/feedback", json={"feedback_type": "false_positive"})
    assert feedback.status_code == 200 and feedback.json()["message"] == "Feedback recorded"
    assert server.get(f"/v1/anomalies/{anomaly['id']}").json()["status"] == "resolved"

    stream = server.get("/v1/streams/srv-a").json()
    assert stream["events_ingested"] == 485 and stream["detection_ready"] is True
    assert stream["anomaly_count"] == body["anomaly_count"] and stream["last_event_at"].endswith("Z")
    assert "srv-a" in [s["stream_id"] for s in server.get("/v1/streams").json()["streams"]]

    metrics = server.get("/metrics").text  # aggregate only: stream ids are chosen by clients, without bound
    events = next(line for line in metrics.splitlines() if line.startswith("driftlock_events_processed_total"))
    assert int(float(events.split()[-1])) >= 485 and "srv-a" not in metrics


@pytest.mark.parametrize(
    ("payload", "status", "fragment"),
    [
        (b"{not json", 400, "invalid json"),
        (json.dumps({"events": []}).encode(), 400, "events required"),
        (json.dumps({"stream_id": "x"}).encode(), 400, "events required"),
        (json.dumps({"events": [{"a": 1}] * 1001}).encode(), 400, "too many events"),
        (json.dumps({"events": [{"a": 1}, None]}).encode(), 400, "event 1 is empty"),
        (json.dumps({"events": [{"a": 1}], "config_override": {"window_size": 0}}).encode(), 400, "window_size"),
        (json.dumps({"events": [{"a": 1}], "config_override": {"bogus": 1}}).encode(), 400, "unknown field"),
    ],
)
def test_detect_errors_use_the_envelope(server: ServerProcess, payload: bytes, status: int, fragment: str) -> None:
    response = server.post("/v1/detect", content=payload, headers={"content-type": "application/json"})
    assert response.status_code == status
    validate(response.json(), component("ErrorResponse"))
    assert response.json()["error"]["code"] == "invalid_argument"
    assert fragment in response.json()["error"]["message"]


def test_body_over_10_mb_is_413(server: ServerProcess) -> None:
    big = json.dumps({"events": [{"blob": "x" * (11 * 1024 * 1024)}]}).encode()
    response = server.post("/v1/detect", content=big)
    assert response.status_code == 413
    assert "larger than 10 MB" in response.json()["error"]["message"]
    bomb = gzip.compress(b"[" + b"0," * (6 * 1024 * 1024) + b"0]")
    response = server.post("/v1/detect", content=bomb, headers={"content-encoding": "gzip"})
    assert response.status_code == 413


def test_not_found_cases(server: ServerProcess) -> None:
    for response in (
        server.get("/v1/anomalies/00000000-0000-4000-8000-000000000000"),
        server.post("/v1/anomalies/unknown/feedback", json={"feedback_type": "confirmed"}),
        server.get("/v1/streams/never-seen"),
        server.get("/v2/nothing"),
    ):
        assert response.status_code == 404
        validate(response.json(), component("ErrorResponse"))
        assert response.json()["error"]["code"] == "not_found"
    bad = server.post("/v1/anomalies/unknown/feedback", json={"feedback_type": "meh"})
    assert bad.status_code == 400 and "feedback_type must be one of" in bad.json()["error"]["message"]


def test_gzip_body_is_accepted(server: ServerProcess) -> None:
    body = gzip.compress(json.dumps({"stream_id": "gz", "events": traffic.events(3)}).encode())
    response = server.post("/v1/detect", content=body, headers={"content-encoding": "gzip"})
    assert response.status_code == 200 and response.json()["total_events"] == 3


def test_authentication_with_keys() -> None:
    with running_server(":memory:", "--api-key", "dlk_k1.secret-0123456789") as srv:
        events = {"events": [{"a": 1}]}
        missing = srv.post("/v1/detect", json=events)
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthorized"
        assert srv.post("/v1/detect", json=events, headers={"X-Api-Key": "wrong"}).status_code == 401
        assert srv.post("/v1/detect", json=events, headers={"X-Api-Key": "dlk_k1.secret-0123456789"}).status_code == 200
        assert (
            srv.post(
                "/v1/detect", json=events, headers={"Authorization": "Bearer dlk_k1.secret-0123456789"}
            ).status_code
            == 200
        )
        assert srv.get("/v1/anomalies").status_code == 401
        assert srv.post("/v1/traces", content=b"").status_code == 401
        assert srv.get("/healthz").status_code == 200
        assert srv.post("/v1/demo/detect", json={"events": traffic.events(5)}).status_code == 200


def test_demo_detect_and_its_rate_limit() -> None:
    with running_server() as srv:
        first = srv.post("/v1/demo/detect", json={"events": anomalous_batch()[420:]})
        assert first.status_code == 200
        validate(first.json(), response_schema("/v1/demo/detect", "post"))
        assert first.json()["demo"]["remaining_calls"] == 9 and first.json()["demo"]["limit_per_minute"] == 10
        for _ in range(9):
            assert srv.post("/v1/demo/detect", json={"events": [{"a": 1}]}).status_code == 200
        limited = srv.post("/v1/demo/detect", json={"events": [{"a": 1}]})
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        error = limited.json()["error"]
        assert error["code"] == "rate_limit_exceeded" and error["retry_after_seconds"] >= 1
        too_many = srv.post("/v1/detect", json={"events": [{"a": 1}] * 201})
        assert too_many.status_code == 200  # the 200-event cap is the demo's only


def test_refuses_a_public_address_without_a_key() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "driftlock", "serve", "--host", "0.0.0.0", "--port", "0", "--db", ":memory:"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    assert result.returncode == 2
    assert "Refusing to listen on 0.0.0.0 without an API key" in result.stderr


def test_restart_after_kill_9_keeps_anomalies_and_readiness(tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite3"
    srv = ServerProcess(db).start()
    try:
        body = srv.post("/v1/detect", json={"stream_id": "persist", "events": anomalous_batch(3)}).json()
        assert body["anomaly_count"] >= 1
    finally:
        srv.kill9()
    srv = ServerProcess(db).start()
    try:
        listed = srv.get("/v1/anomalies", params={"stream_id": "persist"}).json()
        assert listed["total"] == body["anomaly_count"]
        assert {a["id"] for a in listed["anomalies"]} == {a["id"] for a in body["anomalies"]}
        stream = srv.get("/v1/streams/persist").json()
        assert stream["events_ingested"] == 480 and stream["detection_ready"] is True
        more = srv.post("/v1/detect", json={"stream_id": "persist", "events": traffic.events(10, seed=9)}).json()
        assert more["status"] == "ready" and more["detection_ready"] is True and "calibration" not in more
        assert srv.get("/v1/streams/persist").json()["detections"] > stream["detections"]
    finally:
        srv.stop()


def test_streams_are_served_concurrently(server: ServerProcess) -> None:
    errors: list[BaseException] = []

    def send(i: int) -> None:
        try:
            r = httpx.post(
                server.url + "/v1/detect", json={"stream_id": f"conc-{i}", "events": traffic.events(500, i)}, timeout=60
            )
            assert r.status_code == 200 and r.json()["detection_ready"]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert {f"conc-{i}" for i in range(6)} <= {s["stream_id"] for s in server.get("/v1/streams").json()["streams"]}


OTLP_SENDER = textwrap.dedent(
    """
    import random, sys, time
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.trace import SpanKind, Status, StatusCode

    url, normal, odd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    provider = TracerProvider(resource=Resource.create({"service.name": "otlp-shop"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url + "/v1/traces")))
    tracer = provider.get_tracer("test")
    rng = random.Random(4)
    routes = ["", "products/", "products/<int:id>/", "cart/", "search/", "login/"]
    for i in range(normal + odd):
        if i < normal:
            route, path, status = rng.choice(routes), None, rng.choice([200] * 12 + [302])
        else:
            route, path, status = None, rng.choice(["/wp-login.php", "/.env", "/.git/config", "/xmlrpc.php"]), 404
        attrs = {"http.method": rng.choice(["GET", "GET", "POST"]), "http.status_code": status,
                 "http.target": path or "/" + route}
        if route is not None:
            attrs["http.route"] = route
        with tracer.start_as_current_span("GET", kind=SpanKind.SERVER, attributes=attrs):
            pass
        with tracer.start_as_current_span("internal-work"):
            pass
    provider.shutdown()
    """
)


def test_otlp_from_the_sdk_exporter_in_another_process(server: ServerProcess) -> None:
    result = subprocess.run(
        [sys.executable, "-c", OTLP_SENDER, server.url, "460", "40"],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(),
    )
    assert result.returncode == 0, result.stderr
    stream = wait_for(lambda: server.get("/v1/streams/otlp-shop").json(), message="stream otlp-shop")
    assert stream["events_ingested"] == 500  # SERVER spans only: the INTERNAL ones are not events
    anomalies = server.get("/v1/anomalies", params={"stream_id": "otlp-shop"}).json()
    assert anomalies["total"] >= 1
    detail = server.get(f"/v1/anomalies/{anomalies['anomalies'][0]['id']}").json()
    assert detail["event"]["body"]["status"] == 404 and detail["event"]["attributes"]["service"] == "otlp-shop"


def test_otlp_json_and_stream_attribute(server: ServerProcess) -> None:
    span = {
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "name": "GET /",
        "kind": 2,
        "startTimeUnixNano": "1700000000000000000",
        "endTimeUnixNano": "1700000000030000000",
        "attributes": [
            {"key": "http.request.method", "value": {"stringValue": "GET"}},
            {"key": "http.route", "value": {"stringValue": "items/<int:id>/"}},
            {"key": "http.response.status_code", "value": {"intValue": "200"}},
            {"key": "driftlock.stream_id", "value": {"stringValue": "json-stream"}},
        ],
    }
    payload = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
                "scopeSpans": [{"scope": {"name": "t"}, "spans": [span, span]}],
            }
        ]
    }
    response = server.post("/v1/traces", json=payload)
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    assert server.get("/v1/streams/json-stream").json()["events_ingested"] == 2
    garbage = server.post("/v1/traces", content=b"\xff\x00garbage", headers={"content-type": "application/x-protobuf"})
    assert garbage.status_code == 400 and "invalid OTLP protobuf" in garbage.json()["error"]["message"]
