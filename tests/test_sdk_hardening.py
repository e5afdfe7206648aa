"""The client as a hostile network sees it (#24, finding 10): credentials in a BASE_URL are never shown,
and a 200 that is not Driftlock's answer is an error, not a success.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any

import pytest
from opentelemetry.sdk.trace.export import SpanExportResult

from driftlock import DriftlockClient, DriftlockError, DriftlockNetworkError, DriftlockSyncClient
from driftlock.exporter import DriftlockSpanExporter
from tests.support import FaultServer, Reply, free_port_url
from tests.test_exporter import make_spans

SECRET = "s3cr3t-pw"
EVENT = {"type": "payment", "body": {"amount": "10"}}


def with_credentials(url: str) -> str:
    return url.replace("http://", f"http://ops:{SECRET}@")


def detect(kind: str, base_url: str, **options: Any) -> Any:
    if kind == "sync":
        with DriftlockSyncClient(base_url=base_url, **options) as client:
            return client.detect([EVENT], stream_id="s")

    async def go() -> Any:
        async with DriftlockClient(base_url=base_url, **options) as client:
            return await client.detect([EVENT], stream_id="s")

    return asyncio.run(go())


def shown(text: str) -> None:
    assert SECRET not in text and "ops:" not in text and "ops@" not in text, text


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_network_error_never_shows_the_url_credentials(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    url = with_credentials(free_port_url())
    with caplog.at_level(logging.DEBUG), pytest.raises(DriftlockNetworkError) as info:
        detect(kind, url, timeout=1.0, max_retries=1, retry_delay=0.01)
    shown(str(info.value))
    shown(repr(info.value))
    assert "Could not reach Driftlock at http://127.0.0.1:" in str(info.value)
    shown("\n".join(r.getMessage() for r in caplog.records))
    assert any("POST http://127.0.0.1:" in r.getMessage() for r in caplog.records)  # the debug line is there


def test_reprs_never_show_the_url_credentials() -> None:
    url = with_credentials("http://127.0.0.1:9")
    for client in (DriftlockSyncClient(base_url=url), DriftlockClient(base_url=url)):
        shown(repr(client))
        shown(repr(client.config))
        assert "http://127.0.0.1:9" in repr(client)
        assert client.config.base_url == url  # the setting itself is kept as given


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_url_credentials_are_sent_as_basic_authentication(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    with FaultServer() as fs, caplog.at_level(logging.DEBUG):  # httpx logs every request at INFO
        detect(kind, with_credentials(fs.url))
    (seen,) = fs.seen
    assert seen.path == "/v1/detect"
    assert seen.headers["Authorization"] == "Basic " + base64.b64encode(f"ops:{SECRET}".encode()).decode()
    shown("\n".join(r.getMessage() for r in caplog.records))


def test_the_exporter_warnings_never_show_the_url_credentials(caplog: pytest.LogCaptureFixture) -> None:
    spans = make_spans([{"method": "GET", "route": "x/", "status": 200}] * 2)
    down = DriftlockSpanExporter(base_url=with_credentials(free_port_url()), timeout=1.0, max_retries=0)
    with caplog.at_level(logging.INFO):
        assert down.export(spans) is SpanExportResult.FAILURE
        down.shutdown()
    with FaultServer() as fs, caplog.at_level(logging.INFO):  # an API that marks no incidents: warned once
        up = DriftlockSpanExporter(base_url=with_credentials(fs.url), timeout=2.0)
        assert up.export(spans) is SpanExportResult.SUCCESS
        up.shutdown()
    messages = "\n".join(r.getMessage() for r in caplog.records)
    assert "Could not reach Driftlock at http://127.0.0.1:" in messages
    assert "The Driftlock API at http://127.0.0.1:" in messages
    shown(messages)


NOT_ANSWERS = [[1, 2, 3], {"hello": "world"}, {"anomalies": "none"}, "ok"]


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("body", NOT_ANSWERS, ids=["list", "other-object", "anomalies-not-a-list", "string"])
def test_a_200_that_is_not_a_detection_result_is_an_error(kind: str, body: Any) -> None:
    with FaultServer(default=Reply(200, body)) as fs, pytest.raises(DriftlockError) as info:
        detect(kind, fs.url)
    assert info.value.code == "invalid_response"
    assert "not a detection result" in str(info.value) and "BASE_URL" in str(info.value)


def test_other_answers_that_are_not_objects_are_errors() -> None:
    with FaultServer(default=Reply(200, [1, 2, 3])) as fs, DriftlockSyncClient(base_url=fs.url) as client:
        with pytest.raises(DriftlockError, match="not a JSON object"):
            client.anomalies.list()
        with pytest.raises(DriftlockError, match="not a JSON object"):
            client.health()


def test_the_exporter_drops_and_counts_a_batch_answered_by_something_else(caplog: pytest.LogCaptureFixture) -> None:
    spans = make_spans([{"method": "GET", "route": "x/", "status": 200}] * 3)
    with FaultServer(default=Reply(200, [1, 2, 3])) as fs, caplog.at_level(logging.WARNING):
        exporter = DriftlockSpanExporter(base_url=fs.url, timeout=2.0)
        assert exporter.export(spans) is SpanExportResult.FAILURE
        exporter.shutdown()
    assert (exporter.exported_events, exporter.dropped_events) == (0, 3)
    assert any("not a detection result" in r.getMessage() for r in caplog.records)
