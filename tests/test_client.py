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
            client.detect({"body": 1})  # type: ignore[arg-type]
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
