"""The client against real HTTP: a fault-injecting server for faults, the real `driftlock serve` otherwise."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from driftlock import (
    DriftlockAuthenticationError,
    DriftlockClient,
    DriftlockError,
    DriftlockNetworkError,
    DriftlockRateLimitError,
    DriftlockSyncClient,
    DriftlockValidationError,
)
from driftlock.models import IncidentMark
from tests.support import FaultServer, Reply, ServerProcess, free_port_url

EVENT = {"type": "payment", "body": {"amount": "10"}}


def error(status: int, code: str, message: str, **extra: Any) -> Reply:
    return Reply(status, {"error": {"code": code, "message": message, "request_id": "req-1", **extra}})


def detect(kind: str, base_url: str, events: list[Any] | None = None, **options: Any) -> Any:
    """Run one detect with the sync client or the async one (through its event loop)."""
    if kind == "sync":
        with DriftlockSyncClient(base_url=base_url, **options) as client:
            return client.detect(events or [EVENT], stream_id="s")

    async def go() -> Any:
        async with DriftlockClient(base_url=base_url, **options) as client:
            return await client.detect(events or [EVENT], stream_id="s")

    return asyncio.run(go())


KINDS = ["sync", "async"]


@pytest.mark.parametrize("kind", KINDS)
def test_429_waits_retry_after_then_succeeds(kind: str) -> None:
    with FaultServer(
        Reply(429, {"error": {"code": "rate_limit_exceeded", "message": "slow"}}, {"Retry-After": "1"})
    ) as fs:
        result = detect(kind, fs.url)
    assert result.success
    assert len(fs.seen) == 2
    assert fs.seen[1].at - fs.seen[0].at >= 0.95


@pytest.mark.parametrize("kind", KINDS)
def test_retry_after_seconds_in_body_is_honoured_without_header(kind: str) -> None:
    with FaultServer(error(429, "rate_limit_exceeded", "slow", retry_after_seconds=1)) as fs:
        detect(kind, fs.url)
    assert fs.seen[1].at - fs.seen[0].at >= 0.95


@pytest.mark.parametrize("kind", KINDS)
def test_503_waits_retry_after_then_succeeds(kind: str) -> None:
    """driftlock serve answers 503 with Retry-After while its database is unavailable: the client waits that
    long (its own backoff starts at a fraction of a second), then succeeds."""
    with FaultServer(
        Reply(503, {"error": {"code": "service_unavailable", "message": "store"}}, {"Retry-After": "1"})
    ) as fs:
        result = detect(kind, fs.url)
    assert result.success and len(fs.seen) == 2
    assert fs.seen[1].at - fs.seen[0].at >= 0.95


@pytest.mark.parametrize("kind", KINDS)
def test_503_is_retried(kind: str) -> None:
    with FaultServer(error(503, "service_unavailable", "busy"), error(502, "internal", "bad gateway")) as fs:
        result = detect(kind, fs.url)
    assert result.success
    assert len(fs.seen) == 3


@pytest.mark.parametrize("kind", KINDS)
def test_400_raises_validation_error_at_once_with_server_message(kind: str) -> None:
    with FaultServer(error(400, "invalid_argument", "event 0 is empty")) as fs:
        with pytest.raises(DriftlockValidationError) as info:
            detect(kind, fs.url)
    assert len(fs.seen) == 1
    assert info.value.message == "event 0 is empty"
    assert info.value.status == 400 and info.value.code == "invalid_argument" and info.value.request_id == "req-1"


@pytest.mark.parametrize("kind", KINDS)
def test_401_raises_authentication_error_without_leaking_the_key(kind: str) -> None:
    with FaultServer(error(401, "unauthorized", "authentication failed")) as fs:
        with pytest.raises(DriftlockAuthenticationError) as info:
            detect(kind, fs.url, api_key="dlk_secret-key")
    assert len(fs.seen) == 1
    assert fs.seen[0].headers["X-Api-Key"] == "dlk_secret-key"
    assert "dlk_secret-key" not in str(info.value) and "dlk_secret-key" not in repr(info.value.__dict__)


@pytest.mark.parametrize("kind", KINDS)
def test_refused_connection_raises_network_error_within_deadline(kind: str) -> None:
    started = time.monotonic()
    with pytest.raises(DriftlockNetworkError) as info:
        detect(kind, free_port_url(), timeout=2.0, max_retries=3)
    assert time.monotonic() - started < 2.5
    assert "Could not reach Driftlock" in str(info.value)


@pytest.mark.parametrize("kind", KINDS)
def test_slow_server_is_cut_off_at_the_deadline(kind: str) -> None:
    with FaultServer(default=Reply(delay=3)) as fs:
        started = time.monotonic()
        with pytest.raises(DriftlockNetworkError):
            detect(kind, fs.url, timeout=1.0)
        assert time.monotonic() - started < 1.6


@pytest.mark.parametrize("kind", KINDS)
def test_body_that_is_not_json_gives_a_clear_error(kind: str) -> None:
    with FaultServer(Reply(200, b"<html>gateway</html>")) as fs, pytest.raises(DriftlockError) as info:
        detect(kind, fs.url)
    assert "not JSON" in str(info.value) and "<html>gateway" in str(info.value)


def test_rate_limit_error_carries_retry_after_when_retries_run_out() -> None:
    with FaultServer(
        default=Reply(429, {"error": {"code": "rate_limit_exceeded", "message": "x"}}, {"Retry-After": "30"})
    ) as fs:
        with pytest.raises(DriftlockRateLimitError) as info:
            detect("sync", fs.url, timeout=2.0)
    assert info.value.retry_after == 30
    assert len(fs.seen) == 1  # waiting 30 s would pass the deadline: give up at once


def test_flat_402_body_is_understood() -> None:
    body = {"error": "subscription inactive", "code": "subscription_inactive", "billing_status": "canceled"}
    with FaultServer(Reply(402, body)) as fs, pytest.raises(DriftlockError) as info:
        detect("sync", fs.url)
    assert info.value.code == "subscription_inactive" and info.value.message == "subscription inactive"
    assert info.value.details["billing_status"] == "canceled"


PASCAL = {
    "NCD": 0.71,
    "PValue": 0.004,
    "ConfidenceLevel": 0.996,
    "CompressionRatioChange": -0.3,
    "BaselineEntropy": 4.1,
    "WindowEntropy": 5.0,
    "IsStatisticallySignificant": True,
}
SNAKE = {
    "ncd": 0.71,
    "p_value": 0.004,
    "confidence_level": 0.996,
    "compression_ratio_change": -0.3,
    "baseline_entropy": 4.1,
    "window_entropy": 5.0,
    "is_statistically_significant": True,
}


@pytest.mark.parametrize("metrics", [PASCAL, SNAKE], ids=["PascalCase", "snake_case"])
def test_both_metric_key_styles_parse(metrics: dict[str, Any]) -> None:
    body = {
        "success": True,
        "total_events": 1,
        "anomaly_count": 1,
        "processing_time": "1.5ms",
        "status": "ready",
        "anomalies": [{"id": "a1", "index": 0, "metrics": metrics, "why": "x", "detected": True}],
        "unknown_field": {"ignored": True},
    }
    with FaultServer(Reply(200, body)) as fs:
        result = detect("sync", fs.url)
    m = result.anomalies[0].metrics
    assert (m.ncd, m.p_value, m.confidence_level, m.confidence) == (0.71, 0.004, 0.996, 0.996)
    assert m.compression_ratio_change == -0.3 and m.baseline_entropy == 4.1 and m.is_statistically_significant
    assert result.processing_time is not None and result.processing_time.total_seconds() == pytest.approx(0.0015)


def _one_anomaly_per_chunk(body: Any) -> Reply:
    n = len(body["events"])
    return Reply(
        200,
        {
            "success": True,
            "total_events": n,
            "anomaly_count": 1,
            "anomalies": [{"id": f"a{n}", "index": 10, "metrics": {"ncd": 0.5}, "detected": True}],
        },
    )


@pytest.mark.parametrize("kind", KINDS)
def test_600_events_become_3_requests_with_indexes_into_the_caller_list(kind: str) -> None:
    events = [{"body": {"n": i}} for i in range(600)]
    with FaultServer(default=_one_anomaly_per_chunk) as fs:
        result = detect(kind, fs.url, events=events)
    assert [len(s.body["events"]) for s in fs.seen] == [256, 256, 88]
    assert [a.index for a in result.anomalies] == [10, 266, 522]
    assert result.total_events == 600 and result.anomaly_count == 3
    assert all(s.body["stream_id"] == "s" for s in fs.seen)


def test_bare_payloads_become_bodies_and_envelopes_pass_through() -> None:
    with FaultServer() as fs, DriftlockSyncClient(base_url=fs.url) as client:
        client.detect([{"amount": 5}, {"type": "log", "body": {"m": 1}, "timestamp": "2026-01-01T00:00:00Z"}, "text"])
    assert fs.seen[0].body["events"] == [
        {"body": {"amount": 5}},
        {"type": "log", "body": {"m": 1}, "timestamp": "2026-01-01T00:00:00Z"},
        {"body": "text"},
    ]


def test_bad_events_are_refused_before_sending_and_name_the_problem() -> None:
    with FaultServer() as fs, DriftlockSyncClient(base_url=fs.url) as client:
        with pytest.raises(DriftlockValidationError, match="empty"):
            client.detect([])
        with pytest.raises(DriftlockValidationError, match="event 1 cannot be sent as JSON"):
            client.detect([{"ok": 1}, {"bad": object()}])
        with pytest.raises(DriftlockValidationError, match="list of events"):
            client.detect({"body": 1})
    assert fs.seen == []


def test_close_interrupts_a_backoff_wait() -> None:
    import threading

    with FaultServer(
        default=Reply(429, {"error": {"code": "rate_limit_exceeded", "message": "x"}}, {"Retry-After": "5"})
    ) as fs:
        client = DriftlockSyncClient(base_url=fs.url, timeout=30)
        threading.Timer(0.3, client.close).start()
        started = time.monotonic()
        with pytest.raises(DriftlockRateLimitError):
            client.detect([EVENT])
        assert time.monotonic() - started < 2


# -- the integration page's snippets against the real local server -------------------------------


def test_page_snippet_detect_sync(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLOCK_BASE_URL", server.url)
    client = DriftlockClient(api_key="your-api-key")
    result = client.detect_sync(stream_id="payments-page", events=[{"type": "payment", "body": {"amount": "10"}}])
    assert result.anomalies == ()
    assert result.status == "calibrating" and result.total_events == 1


def test_page_snippet_sync_client_detect(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLOCK_BASE_URL", server.url)
    client = DriftlockSyncClient(api_key="...")
    event_data = {"timestamp": "2026-11-25T10:00:00", "type": "job_metric", "body": {"duration": 1.5}}
    result = client.detect(stream_id="background-jobs-page", events=[event_data])
    assert result.success and result.stream_id == "background-jobs-page"


async def test_async_detect_and_health_against_real_server(server: ServerProcess) -> None:
    async with DriftlockClient(base_url=server.url) as client:
        health = await client.health()
        result = await client.detect([{"body": {"n": i % 3}} for i in range(60)], stream_id="async-real")
    assert health.ok
    assert result.status == "ready" and result.detection_ready is False
    assert result.calibration is not None and result.calibration.detection_min_events == 450


def test_embedded_engine_answers_without_key_or_url() -> None:
    with DriftlockSyncClient() as client:
        result = client.detect([{"body": {"n": 1}}], stream_id="embedded-one")
        assert result.status == "calibrating"
        assert client.health().ok


# -- the SDK page's surface: construction, settings, namespaces ------------------------------------


def test_key_positionally_or_by_keyword_and_config_positionally(server: ServerProcess) -> None:
    from driftlock import Config

    for client in (
        DriftlockSyncClient("dlk_positional", base_url=server.url),
        DriftlockClient("dlk_positional", base_url=server.url),
        DriftlockSyncClient(api_key="dlk_positional", base_url=server.url),
        DriftlockSyncClient(Config.resolve(api_key="dlk_positional", base_url=server.url)),
        DriftlockSyncClient(config=Config.resolve(api_key="other"), api_key="dlk_positional", base_url=server.url),
    ):
        assert client.config.api_key == "dlk_positional" and client.config.base_url == server.url
        assert "dlk_positional" not in repr(client)
        client.close()
    with pytest.raises(TypeError, match="Config once"):
        DriftlockSyncClient(Config.resolve(), config=Config.resolve())


def test_backoff_starts_at_retry_delay_and_never_passes_max_retry_delay() -> None:
    import random

    from driftlock import _protocol

    rng = random.Random(1)
    waits = [_protocol.backoff(attempt, rng, initial=1.0, cap=30.0) for attempt in range(10)]
    assert 0.8 <= waits[0] <= 1.2 and 1.6 <= waits[1] <= 2.4
    assert all(w <= 30.0 for w in waits) and waits[-1] >= 24.0


@pytest.mark.parametrize("kind", KINDS)
def test_retry_delay_settings_drive_the_waits_between_attempts(kind: str) -> None:
    busy = error(503, "service_unavailable", "busy")
    with FaultServer(busy, busy) as fs:
        detect(kind, fs.url, retry_delay=0.3, max_retry_delay=0.4)
    first, second = fs.seen[1].at - fs.seen[0].at, fs.seen[2].at - fs.seen[1].at
    assert 0.24 <= first < 0.6  # 0.3 ±20%
    assert 0.32 <= second < 0.65  # 0.6 capped at 0.4, then -20%..0


def test_412_is_a_validation_error_with_its_status() -> None:
    reply = Reply(412, {"error": {"code": "failed_precondition", "message": "stream not calibrated"}})
    with FaultServer(reply) as fs, DriftlockSyncClient(base_url=fs.url) as client:
        with pytest.raises(DriftlockValidationError) as info:
            client.streams.reset_anchor("s", {"events": [EVENT], "force_reset": True})
    assert info.value.status == 412 and info.value.message == "stream not calibrated"


def _public(obj: object) -> dict[str, Any]:
    import inspect

    return {  # parameters only: the return types differ (Stream / SyncStream)
        name: inspect.signature(getattr(obj, name)).replace(return_annotation=inspect.Signature.empty)
        for name in dir(obj)
        if not name.startswith("_") and callable(getattr(obj, name))
    }


def test_sync_and_async_clients_expose_the_same_surface() -> None:
    sync, async_ = DriftlockSyncClient(base_url="http://127.0.0.1:1"), DriftlockClient(base_url="http://127.0.0.1:1")
    a, s = _public(async_), _public(sync)
    assert set(a) - set(s) == {"aclose", "detect_sync"}
    assert {name: str(sig) for name, sig in a.items() if name in s} == {name: str(s[name]) for name in a if name in s}
    for namespace in ("detection", "anomalies", "streams", "incidents"):
        assert {k: str(v) for k, v in _public(getattr(async_, namespace)).items()} == {
            k: str(v) for k, v in _public(getattr(sync, namespace)).items()
        }, namespace
    streams = _public(async_.create_stream("s")), _public(sync.create_stream("s"))
    assert set(streams[0]) - set(streams[1]) == {"aclose"} and set(streams[1]) - set(streams[0]) == set()
    assert {k: str(v) for k, v in streams[0].items() if k not in ("aclose", "close")} == {
        k: str(v) for k, v in streams[1].items() if k != "close"
    }
    sync.close()
    async_.close()


def _with_patch_and_delete(fs: FaultServer) -> FaultServer:
    handler = fs.httpd.RequestHandlerClass
    handler.do_PATCH = handler.do_DELETE = handler._handle  # type: ignore[attr-defined]
    return fs


def test_requests_of_every_namespace_with_ids_escaped() -> None:
    ok = Reply(200, {"success": True, "job_id": "j1", "status": "queued", "incidents": [], "anomalies": [], "total": 0})
    with _with_patch_and_delete(FaultServer(default=ok)) as fs, DriftlockSyncClient(base_url=fs.url) as client:
        stream = "team/a b?"
        client.streams.get_profile(stream)
        client.streams.update_profile(stream, {"profile": "sensitive", "auto_tune_enabled": True})
        client.streams.get_tuning(stream)
        client.streams.get_anchor(stream)
        client.streams.get_anchor_details(stream)
        client.streams.reset_anchor(stream, {"events": [{"m": 1}], "force_reset": True})
        client.streams.deactivate_anchor(stream)
        job = client.anomalies.export("a/1", "pdf")
        client.anomalies.export_bulk(["id1", "id2"], "json")
        client.anomalies.get_export(job.job_id)
        client.anomalies.list(stream_id=stream, status="open", from_date="2025-01-01T00:00:00Z", limit=5)
        client.incidents.list(stream_id=stream, status="open", limit=10, offset=20)
        client.incidents.feedback("i 1", "false_positive", reason="deploy")
        client.detection.demo([{"message": "x"}])
    escaped = "/v1/streams/team%2Fa%20b%3F"
    assert [(s.method, s.path) for s in fs.seen] == [
        ("GET", escaped + "/profile"),
        ("PATCH", escaped + "/profile"),
        ("GET", escaped + "/tuning"),
        ("GET", escaped + "/anchor"),
        ("GET", escaped + "/anchor/details"),
        ("POST", escaped + "/reset-anchor"),
        ("DELETE", escaped + "/anchor"),
        ("POST", "/v1/anomalies/a%2F1/export"),
        ("POST", "/v1/anomalies/export"),
        ("GET", "/v1/exports/j1"),
        ("GET", "/v1/anomalies?stream_id=team%2Fa+b%3F&status=open&limit=5&offset=0&from=2025-01-01T00%3A00%3A00Z"),
        ("GET", "/v1/incidents?stream_id=team%2Fa+b%3F&status=open&limit=10&offset=20"),
        ("POST", "/v1/incidents/i%201/feedback"),
        ("POST", "/v1/demo/detect"),
    ]
    bodies = [s.body for s in fs.seen]
    assert bodies[1] == {"profile": "sensitive", "auto_tune_enabled": True}
    assert bodies[5] == {"events": [{"body": {"m": 1}}], "force_reset": True}
    assert bodies[7] == {"format": "pdf"} and bodies[8] == {"format": "json", "anomaly_ids": ["id1", "id2"]}
    assert bodies[12] == {"feedback_type": "false_positive", "reason": "deploy"}
    assert bodies[13] == {"events": [{"body": {"message": "x"}}]}
    assert job.job_id == "j1" and job.status == "queued"


def test_bad_arguments_are_refused_before_sending() -> None:
    with FaultServer() as fs, DriftlockSyncClient(base_url=fs.url) as client:
        with pytest.raises(DriftlockValidationError, match="feedback_type must be one of"):
            client.anomalies.feedback("a", "wrong")
        with pytest.raises(DriftlockValidationError, match="unknown field"):
            client.streams.update_profile("s", {"profil": "strict"})
        with pytest.raises(DriftlockValidationError, match="profile must be one of"):
            client.streams.update_profile("s", {"profile": "loud"})
        with pytest.raises(DriftlockValidationError, match="export format"):
            client.anomalies.export("a", "docx")
        with pytest.raises(DriftlockValidationError, match="non-empty string"):
            client.anomalies.get("")
    assert fs.seen == []


@pytest.mark.parametrize("kind", KINDS)
def test_anomalies_namespace_against_real_server(kind: str, server: ServerProcess) -> None:
    from tests import traffic

    stream = f"namespace-{kind}"
    events = traffic.events(460, seed=5) + [traffic.scanner(__import__("random").Random(i)) for i in range(40)]
    with DriftlockSyncClient(base_url=server.url) as seeder:
        seeder.detect(events, stream_id=stream)

    async def go() -> tuple[Any, Any, Any, Any]:
        async with DriftlockClient(base_url=server.url) as client:
            page = await client.anomalies.list(stream_id=stream, limit=5)
            one = await client.anomalies.get(page.anomalies[0].id or "")
            ack = await client.anomalies.feedback(one.id or "", "false_positive", reason="test")
            return page, one, ack, await client.readiness()

    if kind == "sync":
        with DriftlockSyncClient(base_url=server.url) as client:
            page = client.anomalies.list(stream_id=stream, limit=5)
            one = client.anomalies.get(page.anomalies[0].id or "")
            ack = client.anomalies.feedback(one.id or "", "false_positive", reason="test")
            ready = client.readiness()
    else:
        page, one, ack, ready = asyncio.run(go())
    assert page.total >= len(page.anomalies) > 0
    listed = page.anomalies[0]
    assert listed.explanation and listed.ncd is not None and listed.status == "open" and listed.detected_at
    assert one.id == listed.id and one.event is not None and one.metrics.ncd == listed.ncd
    assert ack.success and ack.message == "Feedback recorded"
    assert ready.ready and ready.database == "connected"


# -- incidents in results ------------------------------------------------------------------------


def _incident(incident_id: str, anomaly_index: int, anomaly_id: str | None = None) -> dict[str, Any]:
    return {
        "id": incident_id,
        "stream_id": "s",
        "status": "open",
        "opened_at": "2026-12-01T00:00:00.000Z",
        "last_seen_at": "2026-12-01T00:00:01.000Z",
        "anomaly_count": 1,
        "explanation": {
            "summary": "scanner paths",
            "signal": "routes",
            "routes": ["/.env"],
            "surges": [],
            "least_like": [],
        },
        "anomalies": [{"id": anomaly_id or f"a-{incident_id}", "index": anomaly_index, "metrics": {"ncd": 0.6}}],
        "feedback": [],
    }


def _chunk_with_incident(body: Any) -> Reply:
    n, first = len(body["events"]), body["events"][0]["body"]["n"]
    anomaly = {
        "id": f"a{first}",
        "index": 10,
        "metrics": {"ncd": 0.5},
        "incident": {"id": "inc-1", "opened": first == 0},
    }
    return Reply(
        200,
        {
            "success": True,
            "total_events": n,
            "anomaly_count": 1,
            "anomalies": [anomaly],
            "incidents": [_incident("inc-1", 10, f"a{first}")],
        },
    )


def test_incidents_are_parsed_and_merged_across_chunks() -> None:
    events = [{"body": {"n": i}} for i in range(600)]
    with FaultServer(default=_chunk_with_incident) as fs:
        result = detect("sync", fs.url, events=events)
    assert [a.incident for a in result.anomalies] == [
        IncidentMark("inc-1", True),
        IncidentMark("inc-1", False),
        IncidentMark("inc-1", False),
    ]
    assert result.incidents is not None and len(result.incidents) == 1
    incident = result.incidents[0]
    assert incident.explanation is not None and incident.explanation.summary == "scanner paths"
    assert incident.explanation.routes == ("/.env",)
    assert [a.index for a in incident.anomalies] == [10, 266, 522]


def test_incidents_absent_means_none_and_empty_means_none_opened() -> None:
    with FaultServer(
        Reply(200, {"success": True, "anomalies": []}), Reply(200, {"success": True, "anomalies": [], "incidents": []})
    ) as fs:
        assert detect("sync", fs.url).incidents is None
        assert detect("sync", fs.url).incidents == ()


@pytest.mark.parametrize("kind", KINDS)
def test_incidents_namespace(kind: str) -> None:
    listed = Reply(200, {"incidents": [_incident("inc-9", 3)], "total": 1})
    one = Reply(200, _incident("inc-9", 3))
    with FaultServer(listed, one, Reply(200, {"success": True, "message": "Feedback recorded"})) as fs:
        if kind == "sync":
            with DriftlockSyncClient(base_url=fs.url) as client:
                page, got, ack = (
                    client.incidents.list(),
                    client.incidents.get("inc-9"),
                    client.incidents.feedback("inc-9", "confirmed"),
                )
        else:

            async def go() -> Any:
                async with DriftlockClient(base_url=fs.url) as client:
                    return (
                        await client.incidents.list(),
                        await client.incidents.get("inc-9"),
                        await client.incidents.feedback("inc-9", "confirmed"),
                    )

            page, got, ack = asyncio.run(go())
    assert page.total == 1 and page.incidents[0].id == "inc-9" and got.anomaly_count == 1
    assert got.opened_at == "2026-12-01T00:00:00.000Z" and got.anomalies[0].id == "a-inc-9"
    assert ack.success and fs.seen[0].path == "/v1/incidents?limit=50&offset=0"


# -- buffered streams --------------------------------------------------------------------------------


class Recorder:
    """Handlers that remember what they were called with."""

    def __init__(self, stream: Any) -> None:
        self.anomalies: list[Any] = []
        self.batches: list[Any] = []
        self.errors: list[BaseException] = []
        stream.on("anomaly")(self.anomalies.append)
        stream.on("batch")(self.batches.append)
        stream.on("error")(self.errors.append)


def run_stream(kind: str, url: str, script: Any, **options: Any) -> Any:
    """Run ``script(stream, recorder)`` on a stream of the sync or the async client; the stream is closed after."""
    if kind == "sync":
        with DriftlockSyncClient(base_url=url) as client:
            stream = client.create_stream("buffered", **options)
            recorder = Recorder(stream)
            script(stream, recorder)
            stream.close()
            return stream, recorder

    async def go() -> Any:
        async with DriftlockClient(base_url=url) as client:
            stream = client.create_stream("buffered", **options)
            recorder = Recorder(stream)
            await script(stream, recorder)
            await stream.close()
            return stream, recorder

    return asyncio.run(go())


def pushes(kind: str, events: list[Any], *, flush: bool = False) -> Any:
    if kind == "sync":

        def script(stream: Any, recorder: Recorder) -> None:
            for event in events:
                stream.push(event)
            if flush:
                stream.flush()

        return script

    async def ascript(stream: Any, recorder: Recorder) -> None:
        for event in events:
            await stream.push(event)
        if flush:
            await stream.flush()

    return ascript


@pytest.mark.parametrize("kind", KINDS)
def test_stream_sends_in_batches_and_everything_at_close(kind: str) -> None:
    events = [{"n": i} for i in range(7)]
    with FaultServer() as fs:
        stream, recorder = run_stream(kind, fs.url, pushes(kind, events), batch_size=3, flush_interval=None)
    sent = [e["body"]["n"] for s in fs.seen for e in s.body["events"]]
    assert sent == list(range(7))  # in order, none twice, the last one at close
    assert all(len(s.body["events"]) <= 3 and s.body["stream_id"] == "buffered" for s in fs.seen)
    assert stream.sent == 7 and stream.buffered == 0 and len(recorder.batches) == len(fs.seen)


@pytest.mark.parametrize("kind", KINDS)
def test_a_batch_that_failed_is_sent_again_by_the_next_flush(kind: str) -> None:
    refused = error(400, "invalid_argument", "try later")
    with FaultServer(refused) as fs:
        stream, recorder = run_stream(kind, fs.url, pushes(kind, [{"n": 1}, {"n": 2}], flush=True), batch_size=10)
    assert len(recorder.errors) == 1 and isinstance(recorder.errors[0], DriftlockValidationError)
    assert [s.body["events"] for s in fs.seen] == [[{"body": {"n": 1}}, {"body": {"n": 2}}]] * 2
    assert stream.sent == 2 and stream.dropped == 0


@pytest.mark.parametrize("kind", KINDS)
def test_a_full_buffer_drops_the_oldest_counts_them_and_says_so(kind: str) -> None:
    with FaultServer(default=error(400, "invalid_argument", "down")) as fs:
        stream, recorder = run_stream(
            kind, fs.url, pushes(kind, [{"n": i} for i in range(4)]), batch_size=2, max_buffered=3, flush_interval=None
        )
    assert stream.dropped == 1 and stream.buffered == 3 and stream.sent == 0
    dropped = [e for e in recorder.errors if isinstance(e, DriftlockError) and e.code == "events_dropped"]
    assert len(dropped) == 1 and "dropped the 1 oldest" in str(dropped[0])
    assert fs.seen, "the stream tried to send"
    last = fs.seen[-1].body["events"]
    assert {"body": {"n": 0}} not in last  # the oldest went


@pytest.mark.parametrize("kind", KINDS)
def test_stream_hands_each_anomaly_and_batch_to_handlers_and_survives_a_bad_handler(kind: str) -> None:
    reply = Reply(
        200,
        {
            "success": True,
            "total_events": 2,
            "anomaly_count": 1,
            "anomalies": [{"id": "a", "index": 1, "metrics": {"ncd": 0.7}, "why": "odd"}],
        },
    )
    with FaultServer(default=reply) as fs:
        if kind == "sync":
            with DriftlockSyncClient(base_url=fs.url) as client:
                stream = client.create_stream("handlers", flush_interval=None)
                recorder = Recorder(stream)
                stream.on("anomaly")(lambda anomaly: 1 / 0)
                stream.push({"n": 1})
                stream.push({"n": 2})
                assert stream.flush() == 2
        else:

            async def go() -> Any:
                async with DriftlockClient(base_url=fs.url) as client:
                    stream = client.create_stream("handlers", flush_interval=None)
                    rec = Recorder(stream)

                    @stream.on("batch")
                    async def on_batch(response: Any) -> None:  # coroutine handlers are awaited
                        rec.batches.append(("awaited", response.total_events))

                    stream.on("anomaly")(lambda anomaly: 1 / 0)
                    await stream.push({"n": 1})
                    await stream.push({"n": 2})
                    assert await stream.flush() == 2
                    return rec

            recorder = asyncio.run(go())
    assert [(a.id, a.index, a.why, a.metrics.ncd) for a in recorder.anomalies] == [("a", 1, "odd", 0.7)]
    assert recorder.batches[0].total_events == 2 and recorder.errors == []
    if kind == "async":
        assert recorder.batches[1] == ("awaited", 2)


@pytest.mark.parametrize("kind", KINDS)
def test_stream_refuses_misuse_clearly(kind: str) -> None:
    client: Any = (
        DriftlockSyncClient(base_url="http://127.0.0.1:1")
        if kind == "sync"
        else DriftlockClient(base_url="http://127.0.0.1:1")
    )
    stream = client.create_stream("misuse")
    with pytest.raises(ValueError, match="'anomaly', 'batch', 'error'"):
        stream.on("anomalies")
    with pytest.raises(ValueError, match="batch_size"):
        client.create_stream("misuse", batch_size=0)
    if kind == "sync":

        async def handler(anomaly: Any) -> None: ...

        with pytest.raises(TypeError, match="must be plain functions"):
            stream.on("anomaly")(handler)
    client.close()


def test_sync_stream_flushes_on_interval_from_its_worker_thread(server: ServerProcess) -> None:
    from tests.support import wait_for

    with DriftlockSyncClient(base_url=server.url) as client:
        stream = client.create_stream("interval-sync", flush_interval=0.2)
        stream.push({"n": 1})
        wait_for(
            lambda: server.get("/v1/streams/interval-sync").status_code == 200, timeout=5, message="interval flush"
        )
        assert stream.sent == 1


async def test_async_stream_flushes_on_interval(server: ServerProcess) -> None:
    async with DriftlockClient(base_url=server.url) as client:
        stream = client.create_stream("interval-async", flush_interval=0.2)
        sent = asyncio.Event()
        stream.on("batch")(lambda response: sent.set())
        await stream.push({"n": 1})
        await asyncio.wait_for(sent.wait(), 5)
        await stream.close()
        with pytest.raises(RuntimeError, match="closed stream"):
            await stream.push({"n": 2})
    assert server.get("/v1/streams/interval-async").json()["events_ingested"] == 1


# -- @client.monitor --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_monitor_records_each_call_and_lets_exceptions_through(kind: str) -> None:
    boom = KeyError("missing")
    with FaultServer() as fs:
        client: DriftlockSyncClient | DriftlockClient = (
            DriftlockSyncClient(base_url=fs.url) if kind == "sync" else DriftlockClient(base_url=fs.url)
        )

        @client.monitor(stream_id="calls")
        def plain(x: int) -> int:
            return x * 2

        @client.monitor(stream_id="calls")
        async def coroutine(fail: bool) -> str:
            if fail:
                raise boom
            return "done"

        assert plain(21) == 42 and plain.__name__ == "plain"
        assert asyncio.run(coroutine(False)) == "done"
        with pytest.raises(KeyError) as info:
            asyncio.run(coroutine(True))
        assert info.value is boom
        client.close()
    bodies = [e["body"] for s in fs.seen for e in s.body["events"]]
    assert [(b["function"].rsplit(".", 1)[-1], b["outcome"], b.get("error_type")) for b in bodies] == [
        ("plain", "ok", None),
        ("coroutine", "ok", None),
        ("coroutine", "error", "KeyError"),
    ]
    assert all(b["duration"].startswith("<") for b in bodies)
    assert {s.body["stream_id"] for s in fs.seen} == {"calls"}


def test_monitor_never_waits_for_the_network_nor_fails_the_call() -> None:
    with FaultServer(default=Reply(delay=2)) as fs:
        client = DriftlockSyncClient(base_url=fs.url, timeout=3)

        @client.monitor(stream_id="slow", batch_size=1)
        def work() -> str:
            return "ok"

        started = time.monotonic()
        assert [work() for _ in range(5)] == ["ok"] * 5
        assert time.monotonic() - started < 0.5
        client.close()
    assert work() == "ok"  # the monitor's stream is closed: the call still works


# -- nothing left behind ---------------------------------------------------------------------------------

UNCLOSED = """
import asyncio, sys
from driftlock import DriftlockClient, DriftlockSyncClient
url = sys.argv[1]

async def main():
    client = DriftlockClient(base_url=url)
    await client.detect([{"n": 1}], stream_id="unclosed-async")
    stream = client.create_stream("unclosed-async-stream", flush_interval=None)
    await stream.push({"n": 1})  # never flushed nor closed: the loop's shutdown sends it

asyncio.run(main())

def sync_use():
    client = DriftlockSyncClient(base_url=url)
    client.detect([{"n": 1}], stream_id="unclosed-sync")
    client.create_stream("unclosed-sync-stream", flush_interval=None).push({"n": 1})  # sent at exit

sync_use()
import gc; gc.collect()
kept = DriftlockSyncClient(base_url=url)
kept.health()
print("done")
"""


def test_clients_left_open_close_quietly_and_send_what_streams_hold(server: ServerProcess) -> None:
    import subprocess
    import sys

    from tests.support import ROOT, clean_env

    proc = subprocess.run(
        [sys.executable, "-X", "dev", "-c", UNCLOSED, server.url],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=clean_env(PYTHONASYNCIODEBUG="0"),
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stdout == "done\n"
    noise = [line for line in proc.stderr.splitlines() if "took" not in line or "Executing" not in line]
    assert noise == [], proc.stderr
    for stream in ("unclosed-async", "unclosed-async-stream", "unclosed-sync", "unclosed-sync-stream"):
        assert server.get(f"/v1/streams/{stream}").json()["events_ingested"] == 1, stream


def test_errors_nobody_handles_are_logged_at_most_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    with (
        FaultServer(default=error(400, "invalid_argument", "down")) as fs,
        DriftlockSyncClient(base_url=fs.url) as client,
    ):
        stream = client.create_stream("unhandled", flush_interval=None)
        for i in range(3):
            stream.push({"n": i})
            stream.flush()
        stream.close()
    warnings = [r for r in caplog.records if r.name == "driftlock.client"]
    assert len(warnings) == 1 and "register stream.on('error')" in warnings[0].getMessage()
    assert len(fs.seen) == 4 and stream.buffered == 3  # nothing lost: all three wait for the API


async def test_a_collected_async_client_releases_its_pool(server: ServerProcess) -> None:
    import gc

    from driftlock.client import _async

    before = len(_async._guards())

    async def use() -> None:
        assert (await DriftlockClient(base_url=server.url).health()).ok

    for _ in range(3):
        await use()
    gc.collect()
    for _ in range(50):  # the finalizer schedules the close on this loop: a few turns of it
        if len(_async._guards()) == before:
            break
        await asyncio.sleep(0)
    assert len(_async._guards()) == before


def test_flush_flow_keeps_a_batch_that_was_interrupted_or_refused() -> None:
    from driftlock.client._stream import CallHandler, Handlers, SendBatch, StreamBuffer, flush_flow
    from driftlock.models import DetectionResult

    buffer, handlers = StreamBuffer("s", batch_size=2, max_buffered=10), Handlers(coroutines=False)
    errors: list[BaseException] = []
    handlers.on("error")(errors.append)
    for i in range(3):
        buffer.add({"n": i})
    flow = flush_flow(buffer, handlers)
    assert next(flow) == SendBatch([{"body": {"n": 0}}, {"body": {"n": 1}}])
    with pytest.raises(KeyboardInterrupt):
        flow.throw(KeyboardInterrupt())
    assert len(buffer) == 3  # interrupted: kept, in order
    flow = flush_flow(buffer, handlers)
    next(flow)
    assert flow.send(DetectionResult(total_events=2)) == SendBatch([{"body": {"n": 2}}])
    refused = DriftlockValidationError("no")
    action = flow.send(refused)
    assert isinstance(action, CallHandler) and action.arg is refused
    with pytest.raises(StopIteration) as stop:
        flow.send(None)
    assert stop.value.value == 2 and len(buffer) == 1 and buffer.sent == 2
