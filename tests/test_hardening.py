"""`driftlock serve` under hostile input (issue #14): no 500s, bounded memory, answers in about a millisecond,
nothing open that should not be. Each test drives a real server process over loopback."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from driftlock.engine.tokenize import event_bytes
from driftlock.service.detection import DetectionService
from driftlock.service.errors import ApiError
from driftlock.service.sqlite import SqliteStore
from driftlock.service.store import MemoryStore, RecordCache
from tests import traffic
from tests.openapi import component, validate
from tests.support import ServerProcess, clean_env, running_server, wait_for

DEEP = b"[" * 100_000 + b"]" * 100_000
"""Nested far past any parser's recursion limit."""


def deep_event(levels: int) -> bytes:
    """A detect body whose one event nests ``levels`` arrays: parseable, but deeper than the engine should walk."""
    return b'{"events":[{"a":' + b"[" * levels + b"]" * levels + b"}]}"


def envelope_schema() -> dict[str, Any]:
    """The contract's ErrorResponse, with the codes of the statuses it does not describe (413 payload_too_large,
    415, 412: listed in the README) added to its enum."""
    schema = component("ErrorResponse")
    codes = schema["properties"]["error"]["properties"]["code"]
    codes["enum"] = sorted({*codes["enum"], *ApiError.CODES.values()})
    return schema


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    """The error envelope of a response that must have ``status``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    validate(body, envelope_schema() if status == 413 else component("ErrorResponse"))
    return body["error"]  # type: ignore[no-any-return]


def post_raw(server: ServerProcess, path: str, content: bytes, **headers: str) -> httpx.Response:
    return server.post(path, content=content, headers={"content-type": "application/json", **headers})


def judged(event: Any) -> Any:
    """An event as the engine keeps it (canonical and tokenized), which is what the events listing shows."""
    return json.loads(event_bytes(event))


def anomalous_batch(seed: int = 1) -> list[dict[str, object]]:
    rng = random.Random(seed)
    return [traffic.normal(rng) for _ in range(460)] + [traffic.scanner(rng) for _ in range(20)]


# -- one error path: every failure answers the JSON envelope with a code that names it ----------------------


@pytest.mark.parametrize("path", ["/v1/detect", "/v1/demo/detect", "/v1/traces"])
@pytest.mark.parametrize("body", [DEEP, deep_event(990)], ids=["100000-levels", "990-levels"])
def test_deep_nesting_is_a_400(server: ServerProcess, path: str, body: bytes) -> None:
    error = error_of(post_raw(server, path, body), 400)
    assert error["code"] == "invalid_argument" and "nested deeper than 64 levels" in error["message"]


def _nested(depth: int, kind: str) -> bytes:
    opens = [b"[" if kind == "list" or (kind == "mixed" and i % 2) else b'{"k":' for i in range(depth)]
    return b"".join(opens) + b"1" + b"".join(b"]" if o == b"[" else b"}" for o in reversed(opens))


@pytest.mark.parametrize("kind", ["list", "object", "mixed"])
def test_the_depth_limit_is_exact(kind: str) -> None:
    from driftlock.service.validation import MAX_DEPTH, parse_json

    assert parse_json(_nested(MAX_DEPTH, kind)) is not None
    with pytest.raises(ApiError, match="nested deeper than 64 levels"):
        parse_json(_nested(MAX_DEPTH + 1, kind))


def test_nesting_within_the_limit_is_accepted_and_read_back(server: ServerProcess) -> None:
    response = post_raw(
        server, "/v1/detect", b'{"stream_id":"nest-ok","events":[{"a":' + b"[" * 60 + b"]" * 60 + b"}]}"
    )
    assert response.status_code == 200, response.text
    events = server.get("/v1/streams/nest-ok/events").json()["events"]
    depth, value = 0, events[0]["a"]
    while isinstance(value, list) and value:
        depth, value = depth + 1, value[0]
    assert depth == 59  # the innermost list is empty


def test_demo_body_limits_answer_the_envelope(server: ServerProcess) -> None:
    big = json.dumps({"events": [{"blob": "x" * (11 * 1024 * 1024)}]}).encode()
    assert "larger than 10 MB" in error_of(post_raw(server, "/v1/demo/detect", big), 413)["message"]
    bomb = gzip.compress(b"[" + b"0," * (6 * 1024 * 1024) + b"0]")
    error = error_of(post_raw(server, "/v1/demo/detect", bomb, **{"content-encoding": "gzip"}), 413)
    assert "decompressed body is larger than 10 MB" in error["message"]
    error = error_of(post_raw(server, "/v1/demo/detect", b"not gzip", **{"content-encoding": "gzip"}), 400)
    assert "invalid gzip body" in error["message"]


@pytest.mark.parametrize(
    "body",
    [
        b'{"stream_id":"sur-value","events":[{"a":"\\ud800"}]}',
        b'{"stream_id":"sur-key","events":[{"\\udfff":1}]}',
        b'{"stream_id":"s\\ud800","events":[{"a":1}]}',
    ],
    ids=["value", "key", "stream-id"],
)
def test_a_lone_surrogate_is_a_400_and_metrics_keep_working(server: ServerProcess, body: bytes) -> None:
    error = error_of(post_raw(server, "/v1/detect", body), 400)
    assert "lone UTF-16 surrogate" in error["message"]
    assert server.get("/metrics").status_code == 200
    assert server.get("/v1/streams", params={"limit": 1000}).status_code == 200


def test_surrogate_pairs_are_text(server: ServerProcess) -> None:
    response = post_raw(server, "/v1/detect", b'{"stream_id":"pair","events":[{"a":"\\ud83d\\ude00"}]}')
    assert response.status_code == 200, response.text
    assert server.get("/v1/streams/pair/events").json()["events"] == [{"a": "\U0001f600"}]


def test_a_lone_surrogate_on_the_demo_is_a_400(server: ServerProcess) -> None:
    assert "surrogate" in error_of(post_raw(server, "/v1/demo/detect", b'{"events":[{"a":"\\ud800"}]}'), 400)["message"]


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
@pytest.mark.parametrize("path", ["/v1/detect", "/v1/demo/detect"])
def test_numbers_json_cannot_carry_are_refused_and_nothing_is_stored(
    server: ServerProcess, path: str, number: bytes
) -> None:
    stream = f"nonfinite-{number.decode().strip('-')}"
    body = b'{"stream_id":"' + stream.encode() + b'","events":[{"a":1},{"a":' + number + b"}]}"
    if path == "/v1/demo/detect":
        body = b'{"events":[{"a":1},{"a":' + number + b"}]}"
    error = error_of(post_raw(server, path, body), 400)
    assert "send null or a string" in error["message"] or "send it as a string" in error["message"]
    if path == "/v1/detect":
        assert server.get(f"/v1/streams/{stream}").status_code == 404


def test_an_anomalous_batch_reads_back_everywhere(server: ServerProcess) -> None:
    batch = anomalous_batch(5)
    for event in batch[-20:]:
        event["body"]["bytes"] = 123456  # type: ignore[index]  # a number of 4+ digits in every flagged event
    body = server.post("/v1/detect", json={"stream_id": "readback", "events": batch}).json()
    assert body["anomaly_count"] >= 1
    for anomaly in body["anomalies"]:
        detail = server.get(f"/v1/anomalies/{anomaly['id']}")
        assert detail.status_code == 200 and detail.json()["event"] == anomaly["event"]
    events = server.get("/v1/streams/readback/events", params={"limit": 2000})
    assert events.status_code == 200 and events.json()["events"][-1] == judged(batch[-1])
    assert server.get("/v1/anomalies", params={"stream_id": "readback"}).json()["total"] == body["anomaly_count"]


def test_feedback_with_a_lone_surrogate_is_a_400_and_the_anomaly_stays_readable(server: ServerProcess) -> None:
    body = server.post("/v1/detect", json={"stream_id": "fb-surrogate", "events": anomalous_batch(4)}).json()
    anomaly = body["anomalies"][0]["id"]
    payload = b'{"feedback_type":"confirmed","reason":"\\ud800"}'
    assert "surrogate" in error_of(post_raw(server, f"/v1/anomalies/{anomaly}/feedback", payload), 400)["message"]
    incident = next((a["incident"]["id"] for a in body["anomalies"] if a.get("incident")), None)
    if incident is not None:
        error_of(post_raw(server, f"/v1/incidents/{incident}/feedback", payload), 400)
    detail = server.get(f"/v1/anomalies/{anomaly}")
    assert detail.status_code == 200 and detail.json()["feedback"] == []


def test_numbers_of_four_or_more_digits_read_back(server: ServerProcess) -> None:
    events = [{"a": 12345, "b": 1.5, "c": -99999, "d": 999, "e": 10**30}]
    assert server.post("/v1/detect", json={"stream_id": "digits", "events": events}).status_code == 200
    listed = server.get("/v1/streams/digits/events")
    assert listed.status_code == 200 and listed.json()["events"] == [judged(events[0])]


@pytest.mark.parametrize("body", [b"1", b"null", b"[]", b'"spans"', b"true"])
def test_an_otlp_json_body_that_is_not_an_object_is_a_400(server: ServerProcess, body: bytes) -> None:
    error = error_of(post_raw(server, "/v1/traces", body), 400)
    assert "must be an object (an ExportTraceServiceRequest)" in error["message"]


def test_an_otlp_json_surrogate_is_a_400(server: ServerProcess) -> None:
    body = b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"\\ud800","kind":2}]}]}]}'
    assert "surrogate" in error_of(post_raw(server, "/v1/traces", body), 400)["message"]


def _otlp_span(i: int, **extra: Any) -> Any:
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    attrs = {"http.method": AnyValue(string_value="GET"), "http.route": AnyValue(string_value="items/")}
    attrs["driftlock.stream_id"] = AnyValue(string_value="otlp-nan")
    attrs.update(extra)
    return Span(
        trace_id=bytes([i + 1]) * 16,
        span_id=bytes([i + 1]) * 8,
        name="GET",
        kind=Span.SPAN_KIND_SERVER,
        start_time_unix_nano=1_700_000_000_000_000_000,
        end_time_unix_nano=1_700_000_000_030_000_000,
        attributes=[KeyValue(key=k, value=v) for k, v in attrs.items()],
    )


def test_an_otlp_span_json_cannot_carry_is_rejected_alone_and_the_rest_reads_back(server: ServerProcess) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans

    spans = [_otlp_span(i) for i in range(4)]
    spans.insert(2, _otlp_span(9, **{"driftlock.context": AnyValue(string_value='{"ratio": NaN}')}))
    spans.append(_otlp_span(10, **{"http.status_code": AnyValue(double_value=float("nan"))}))
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])])
    response = server.post(
        "/v1/traces", content=request.SerializeToString(), headers={"content-type": "application/x-protobuf"}
    )
    assert response.status_code == 200, response.text
    answer = ExportTraceServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_spans == 1
    assert "holds NaN or Infinity" in answer.partial_success.error_message
    assert "the span of trace 0a0a0a0a" in answer.partial_success.error_message  # named by its trace id
    events = server.get("/v1/streams/otlp-nan/events")
    assert events.status_code == 200 and len(events.json()["events"]) == 5


def test_an_unknown_content_encoding_is_a_415(server: ServerProcess) -> None:
    response = post_raw(server, "/v1/detect", b'{"events":[{"a":1}]}', **{"content-encoding": "br"})
    assert response.status_code == 415 and response.json()["error"]["code"] == "unsupported_media_type"
    validate(response.json(), envelope_schema())
    assert "send gzip, deflate or none" in response.json()["error"]["message"]


def test_a_body_that_is_not_utf8_is_a_400(server: ServerProcess) -> None:
    error = error_of(post_raw(server, "/v1/detect", b'{"events":[{"a":"\xff"}]}'), 400)
    assert "not UTF-8" in error["message"]


@pytest.mark.parametrize(
    "request_bytes",
    [b"GARBAGE\r\n\r\n", b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"],
    ids=["not-http", "bad-content-length"],
)
def test_a_request_http_cannot_parse_answers_the_envelope(server: ServerProcess, request_bytes: bytes) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request_bytes)
        data = b""
        for _ in range(100):  # bounded: the server closes the connection after answering
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"content-type: application/json" in head.lower()
    error = json.loads(body)["error"]
    validate(json.loads(body), component("ErrorResponse"))
    assert error["code"] == "invalid_argument" and "invalid HTTP request" in error["message"]


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/healthz", "GET"),
        ("DELETE", "/v1/detect", "POST"),
        ("GET", "/v1/detect", "POST"),
        ("POST", "/metrics", "GET"),
        ("PATCH", "/v1/anomalies", "GET"),
        ("GET", "/v1/traces", "POST"),
    ],
)
def test_unsupported_methods_are_405_with_allow(server: ServerProcess, method: str, path: str, allow: str) -> None:
    response = httpx.request(method, server.url + path, timeout=30)
    error = error_of(response, 405)
    assert error["code"] == "method_not_allowed" and allow in response.headers["allow"]


class _BrokenStore(MemoryStore):
    def stream(self, stream_id: str) -> dict[str, Any] | None:
        raise RuntimeError("the disk is on fire")


async def test_an_unexpected_error_answers_the_envelope_and_is_logged_under_its_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from driftlock.server.app import create_app

    transport = httpx.ASGITransport(create_app(DetectionService(_BrokenStore())), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        response = await client.get("/v1/streams/anything", headers={"X-Request-Id": "req-42"})
    error = error_of(response, 500)
    assert error["code"] == "internal" and error["request_id"] == "req-42" and "RuntimeError" in error["message"]
    assert "the disk is on fire" not in response.text  # the details are the log's
    assert any("req-42" in r.getMessage() and r.exc_info for r in caplog.records)


# -- no silent answers -------------------------------------------------------------------------------------


def test_an_event_over_64_kib_is_a_413_naming_it(server: ServerProcess) -> None:
    events = [{"a": 1}, {"blob": "y" * (1 << 20)}]
    error = error_of(server.post("/v1/detect", json={"stream_id": "huge", "events": events}), 413)
    assert "event 1 is" in error["message"] and "65536 bytes (64 KiB)" in error["message"]  # --max-event-bytes
    assert server.get("/v1/streams/huge").status_code == 404  # nothing of the batch is stored


@pytest.mark.parametrize("stream_id", [0, False, [], {}, "", "   ", "a\x00b", "x" * 201])
def test_stream_ids_that_are_not_ids_are_a_400_saying_what_one_is(server: ServerProcess, stream_id: Any) -> None:
    error = error_of(server.post("/v1/detect", json={"stream_id": stream_id, "events": [{"a": 1}]}), 400)
    assert "stream_id must be a string of 1 to 200 printable characters" in error["message"]


@pytest.mark.parametrize("body", [{"events": [{"a": 1}]}, {"stream_id": None, "events": [{"a": 1}]}])
def test_a_null_or_absent_stream_id_is_the_default_stream(server: ServerProcess, body: dict[str, Any]) -> None:
    response = server.post("/v1/detect", json=body)
    assert response.status_code == 200 and response.json()["stream_id"] == "default"


def test_anomaly_list_filters_and_limits(server: ServerProcess) -> None:
    body = server.post("/v1/detect", json={"stream_id": "filters", "events": anomalous_batch(2)}).json()
    found = body["anomaly_count"]
    assert found >= 2
    listed = lambda **q: server.get("/v1/anomalies", params={"stream_id": "filters", **q})
    assert listed(status="open").json()["total"] == found
    first = body["anomalies"][0]["id"]
    assert server.post(f"/v1/anomalies/{first}/feedback", json={"feedback_type": "false_positive"}).status_code == 200
    resolved = listed(status="resolved").json()
    assert resolved["total"] == 1 and resolved["anomalies"][0]["id"] == first
    assert listed(status="open").json()["total"] == found - 1
    assert listed(**{"from": "2999-01-01T00:00:00Z"}).json()["total"] == 0
    assert listed(to="2000-01-01T00:00:00Z").json()["total"] == 0
    assert listed(**{"from": "2000-01-01T00:00:00Z", "to": "2999-01-01T00:00:00+00:00"}).json()["total"] == found
    assert len(listed(limit=1).json()["anomalies"]) == 1 and listed(limit=100).status_code == 200
    for query, fragment in [
        ({"limit": 101}, "limit must be between 1 and 100"),
        ({"limit": 0}, "limit must be between 1 and 100"),
        ({"status": "bogus"}, "status must be one of open, acknowledged, resolved"),
        ({"from": "yesterday"}, "from must be an ISO-8601 date-time"),
        ({"to": "soon"}, "to must be an ISO-8601 date-time"),
    ]:
        assert fragment in error_of(listed(**query), 400)["message"]


def test_stream_listing_is_paginated(server: ServerProcess) -> None:
    for name in ("page-a", "page-b", "page-c"):
        assert server.post("/v1/detect", json={"stream_id": name, "events": [{"a": 1}]}).status_code == 200
    page = server.get("/v1/streams", params={"limit": 2}).json()
    assert len(page["streams"]) == 2 and page["total"] >= 3 and page["limit"] == 2
    assert (
        "limit must be between 1 and 1000"
        in error_of(server.get("/v1/streams", params={"limit": 5000}), 400)["message"]
    )


def _deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (float("nan"), "holds NaN or Infinity"),
        (float("-inf"), "holds NaN or Infinity"),
        ("\ud800", "lone UTF-16 surrogate"),
        (_deep(5000), "nested deeper than 64 levels"),
    ],
    ids=["nan", "-inf", "surrogate", "deep"],
)
def test_the_service_refuses_what_it_could_not_read_back_from_every_entrance(value: Any, fragment: str) -> None:
    """The embedded transport and the OTLP receiver call the service without the HTTP edge's parser."""
    service = DetectionService(MemoryStore())
    for call in (
        lambda body: service.detect(body, request_id="t"),
        lambda body: service.demo_detect(body, request_id="t", remaining_calls=1, limit=10),
    ):
        with pytest.raises(ApiError, match=fragment) as raised:
            call({"stream_id": "entrance", "events": [{"a": 1}, {"a": value}]})
        assert raised.value.status == 400 and raised.value.message.startswith("event 1 ")
    assert service.stream_info("entrance") is None


def test_the_record_cache_bounds_memory_across_streams() -> None:
    service = DetectionService(MemoryStore(), cache=RecordCache(max_events=100))
    for i in range(200):
        service.detect({"stream_id": f"bounded-{i}", "events": traffic.events(10, seed=i)}, request_id="t")
    assert len(service.cache) <= 10 and service.cache._events <= 100
    assert service.stream_info("bounded-0") is not None  # evicted from memory, kept by the store


def test_the_record_cache_bounds_the_records_of_tiny_streams() -> None:
    service = DetectionService(MemoryStore(), cache=RecordCache(max_records=50))
    for i in range(300):
        service.detect({"stream_id": f"tiny-{i}", "events": [{"a": i}]}, request_id="t")
    assert len(service.cache) == 50


def test_the_record_cache_stays_bounded_while_cached_streams_grow(tmp_path: Path) -> None:
    """Over SQLite the cached record itself grows (reused while its version is the stored one): counted as it grows."""
    service = DetectionService(SqliteStore(tmp_path / "grow.sqlite3"), cache=RecordCache(max_events=1000))
    for round_ in range(4):
        for i in range(6):
            events = traffic.events(100, seed=10 * i + round_)
            service.detect({"stream_id": f"grow-{i}", "events": events}, request_id="t")
    held = sum(r.events_in_memory() for r in service.cache._records.values())
    assert held <= 1000 and held == service.cache._events


# -- answers in about a millisecond --------------------------------------------------------------------------


def _raw_get(port: int, path: str, sock: socket.socket | None = None) -> bytes:
    """One HTTP/1.1 GET on ``sock`` (kept open) or on a new connection (closed)."""
    own = sock is None
    conn = sock or socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        close = "Connection: close\r\n" if own else ""
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{close}\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            assert chunk, f"the server closed the connection after {data!r}"
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(
            next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
        )
        while len(rest) < length:
            chunk = conn.recv(65536)
            assert chunk, "the server closed the connection mid-body"
            rest += chunk
        return rest
    finally:
        if own:
            conn.close()


def test_healthz_answers_in_milliseconds_on_kept_and_new_connections(server: ServerProcess) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    kept = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        times = {"kept": [], "new": []}  # type: dict[str, list[float]]
        for _ in range(40):
            for kind in ("kept", "new"):
                started = time.perf_counter()
                assert b'"ok":true' in _raw_get(port, "/healthz", kept if kind == "kept" else None)
                times[kind].append(time.perf_counter() - started)
    finally:
        kept.close()
    medians = {kind: statistics.median(t) * 1000 for kind, t in times.items()}
    assert medians["kept"] < 15 and medians["new"] < 15, medians  # 44 ms each before (Nagle + delayed ACK)


def test_the_answering_process_is_named(server: ServerProcess) -> None:
    assert server.process is not None
    assert server.get("/healthz").headers["x-driftlock-pid"] == str(server.process.proc.pid)
    assert server.get("/v1/streams/nobody").headers["x-driftlock-pid"] == str(server.process.proc.pid)  # errors too


# -- nothing open that should not be -------------------------------------------------------------------------


def test_metrics_need_the_key_when_keys_are_set_and_keys_are_never_printed() -> None:
    with running_server(
        ":memory:", "--api-key", "dlk_secretvalue.abc", "--api-key", "second-key-xyz-0123456789"
    ) as srv:
        assert error_of(srv.get("/metrics"), 401)["code"] == "unauthorized"
        ok = srv.get("/metrics", headers={"X-Api-Key": "second-key-xyz-0123456789"})
        assert ok.status_code == 200 and "driftlock_events_processed_total" in ok.text
        output = "".join(srv.output)
    assert "API keys: 2 accepted" in output
    assert "secretvalue" not in output and "second-key-xyz-0123456789" not in output and "abc" not in output


def test_serve_warns_when_the_clients_key_is_set_but_no_server_key() -> None:
    with running_server(":memory:", env=clean_env(DRIFTLOCK_API_KEY="dlk_client.secretpart")) as srv:
        assert srv.post("/v1/detect", json={"events": [{"a": 1}]}).status_code == 200
        output = "".join(srv.output)
    assert "API keys: none; every request is accepted" in output
    assert "warning: DRIFTLOCK_API_KEY is set" in output and "secretpart" not in output


def _demo(srv: ServerProcess, forwarded: str) -> int:
    return srv.post("/v1/demo/detect", json={"events": [{"a": 1}]}, headers={"X-Forwarded-For": forwarded}).status_code


def test_x_forwarded_for_does_not_reset_the_demo_limit() -> None:
    with running_server() as srv:
        assert [_demo(srv, f"203.0.113.{i}") for i in range(10)] == [200] * 10
        assert _demo(srv, "198.51.100.7") == 429  # a new header is the same client


def test_x_forwarded_for_is_believed_from_allowed_proxies() -> None:
    with running_server(":memory:", "--forwarded-allow-ips", "127.0.0.1") as srv:
        assert [_demo(srv, f"203.0.113.{i}") for i in range(12)] == [200] * 12


def _serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "driftlock", "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        cwd=tmp_path,
    )


def test_db_schemes_it_cannot_serve_are_refused(tmp_path: Path) -> None:
    result = _serve(tmp_path, "--db", "mysql://user@localhost/x")
    assert result.returncode == 2 and "--db mysql://... is not a store driftlock serve knows" in result.stderr
    assert list(tmp_path.iterdir()) == []  # no directory named "mysql:"


@pytest.mark.skipif(
    importlib.util.find_spec("driftlock.service.postgres") is not None, reason="the PostgreSQL store is installed"
)
def test_postgresql_without_its_store_names_the_extra(tmp_path: Path) -> None:
    result = _serve(tmp_path, "--db", "postgresql://user:pw@localhost/x")
    assert result.returncode == 2 and 'pip install "driftlock[postgres]"' in result.stderr
    assert "pw" not in result.stderr and list(tmp_path.iterdir()) == []


def test_memory_with_several_workers_is_refused(tmp_path: Path) -> None:
    result = _serve(tmp_path, "--db", ":memory:", "--workers", "2")
    assert result.returncode == 2 and "--workers 2 needs a shared store" in result.stderr


# -- no acknowledged event lost to kill -9 under load ---------------------------------------------------------


def test_kill_9_under_load_loses_no_acknowledged_event(tmp_path: Path) -> None:
    db = tmp_path / "load.sqlite3"
    srv = ServerProcess(db).start()
    streams = [f"load-{i}" for i in range(4)]
    acked = dict.fromkeys(streams, 0)
    sent = dict.fromkeys(streams, 0)
    enough = threading.Event()

    def send(stream: str, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            for _ in range(2000):  # bounded; the kill ends it long before
                batch = [traffic.normal(rng) for _ in range(5)]
                sent[stream] += len(batch)
                try:
                    response = client.post("/v1/detect", json={"stream_id": stream, "events": batch})
                except httpx.HTTPError:
                    return
                assert response.status_code == 200, response.text
                acked[stream] += len(batch)
                if sum(acked.values()) >= 600:
                    enough.set()

    threads = [threading.Thread(target=send, args=(s, i)) for i, s in enumerate(streams)]
    for t in threads:
        t.start()
    try:
        assert enough.wait(60), "the load never got going"
        srv.kill9()
    finally:
        for t in threads:
            t.join(60)
    srv = ServerProcess(db).start()
    try:
        for stream in streams:
            ingested = srv.get(f"/v1/streams/{stream}").json()["events_ingested"]
            assert acked[stream] <= ingested <= sent[stream], (stream, acked[stream], ingested, sent[stream])
    finally:
        srv.stop()


# -- --workers N -------------------------------------------------------------------------------------------


def _one_client_per_worker(url: str, workers: int) -> dict[str, httpx.Client]:
    """A kept-alive connection to each worker (the kernel picks the worker that accepts a connection)."""
    clients: dict[str, httpx.Client] = {}
    for _ in range(200):
        client = httpx.Client(base_url=url, timeout=60)
        pid = client.get("/healthz").headers["x-driftlock-pid"]
        if pid in clients:
            client.close()
        else:
            clients[pid] = client
        if len(clients) == workers:
            return clients
    for client in clients.values():
        client.close()
    raise AssertionError(f"only {len(clients)} of {workers} workers answered 200 connections")


def _pid_on_a_new_connection(url: str) -> str:
    with httpx.Client(base_url=url, timeout=30) as client:
        return client.get("/healthz").headers["x-driftlock-pid"]  # type: ignore[no-any-return]


def _detections(clients: list[httpx.Client], stream: str) -> list[Any]:
    batch = anomalous_batch(7)
    seen = []
    for i in range(0, len(batch), 20):
        body = clients[(i // 20) % len(clients)].post(
            "/v1/detect", json={"stream_id": stream, "events": batch[i : i + 20]}
        )
        assert body.status_code == 200, body.text
        data = body.json()
        seen.append(
            (
                data["status"],
                data["detection_ready"],
                [(a["index"], a["metrics"]["ncd"], a["metrics"]["p_value"]) for a in data["anomalies"]],
                [(i["change"], i["anomaly_count"]) for i in data["incidents"]],
            )
        )
    return seen


def test_two_workers_answer_and_detect_as_one_process(tmp_path: Path) -> None:
    with running_server(tmp_path / "one.sqlite3") as single:
        with httpx.Client(base_url=single.url, timeout=60) as client:
            expected = _detections([client], "shared")
    with running_server(tmp_path / "two.sqlite3", "--workers", "2") as multi:
        assert multi.process is not None
        clients = _one_client_per_worker(multi.url, 2)
        try:
            assert len(clients) == 2 and str(multi.process.proc.pid) not in clients
            assert all(pid.isdigit() and int(pid) != os.getpid() for pid in clients)
            got = _detections(list(clients.values()), "shared")
            stream = next(iter(clients.values())).get("/v1/streams/shared").json()
        finally:
            for client in clients.values():
                client.close()
    assert any(anomalies for _, _, anomalies, _ in expected)
    assert got == expected
    assert stream["events_ingested"] == 480


def test_kill_9_of_a_worker_under_load_loses_no_acknowledged_event(tmp_path: Path) -> None:
    """Two workers over one SQLite file: one is killed mid-load; the other keeps answering, the supervisor
    starts a replacement, and every acknowledged event is in the store."""
    with running_server(tmp_path / "workers.sqlite3", "--workers", "2") as srv:
        clients = _one_client_per_worker(srv.url, 2)
        victim, survivor = list(clients)
        acked = {pid: 0 for pid in clients}
        sent = {pid: 0 for pid in clients}
        enough = threading.Event()

        def send(pid: str) -> None:
            rng = random.Random(int(pid))
            for _ in range(2000):  # bounded; the kill (or the main thread's stop) ends the victim's early
                batch = [traffic.normal(rng) for _ in range(5)]
                sent[pid] += len(batch)
                try:
                    response = clients[pid].post("/v1/detect", json={"stream_id": "one-stream", "events": batch})
                except httpx.HTTPError:
                    return
                assert response.status_code == 200, response.text
                acked[pid] += len(batch)
                if sum(acked.values()) >= 400:
                    enough.set()
                if pid == survivor and acked[survivor] >= 1000:
                    return

        threads = [threading.Thread(target=send, args=(pid,)) for pid in clients]
        for t in threads:
            t.start()
        try:
            assert enough.wait(60), "the load never got going"
            os.kill(int(victim), signal.SIGKILL)
        finally:
            for t in threads:
                t.join(60)
        try:
            assert acked[survivor] >= 1000  # the survivor kept answering
            wait_for(
                lambda: _pid_on_a_new_connection(srv.url) not in (survivor, victim),
                timeout=30,
                message="a replacement worker",
            )
            ingested = srv.get("/v1/streams/one-stream").json()["events_ingested"]
            assert sum(acked.values()) <= ingested <= sum(sent.values())
        finally:
            for client in clients.values():
                client.close()
