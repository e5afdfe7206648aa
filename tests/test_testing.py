"""driftlock.testing: the testing page's Python example as written, and FakeDriftlock with its pytest fixture.

The application code here builds its own clients (one at import time, as applications do), so the
tests show what a user's tests see: no server, the real clients unchanged, scripted anomalies in.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export import SpanExportResult

from driftlock import (
    DriftlockAuthenticationError,
    DriftlockClient,
    DriftlockError,
    DriftlockNetworkError,
    DriftlockRateLimitError,
    DriftlockSyncClient,
)
from driftlock.exporter import DriftlockSpanExporter
from driftlock.testing import FakeDriftlock
from tests.support import clean_env
from tests.test_exporter import make_spans

PAGE = Path(__file__).parent / "data" / "testing.md"


def page_python_block() -> str:
    text = PAGE.read_text()
    start = text.index("### Python (Pytest)")
    code = text[text.index("```python", start) + len("```python\n") :]
    return code[: code.index("```")]


def run_pytest(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=directory,
        env=clean_env(PYTHONPATH=str(directory)),
    )


# -- the testing page's example -------------------------------------------------------------------

PAGE_APP = '''
"""Application code as the page's example presumes it: it looks up driftlock.DriftlockClient when it
runs and calls detect() from synchronous code (the page's Mock is not awaitable)."""
import driftlock

def process_data():
    client = driftlock.DriftlockClient(api_key="dlk_app")
    result = client.detect([{"body": {"value": 1}}], stream_id="sensors")
    return len(result["anomalies"])
'''


def test_the_testing_page_python_example_as_written(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(PAGE_APP)
    (tmp_path / "test_page.py").write_text("from app import process_data\n\n" + page_python_block())
    proc = run_pytest(tmp_path, "test_page.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout


def test_the_page_example_with_async_application_code_needs_asyncmock(tmp_path: Path) -> None:
    """What the README says: for ``await client.detect(...)`` the mock must be awaitable."""
    (tmp_path / "app.py").write_text(
        "import asyncio, driftlock\n"
        "def process_data():\n"
        "    async def go():\n"
        "        client = driftlock.DriftlockClient(api_key='dlk_app')\n"
        "        return (await client.detect([{'body': {'value': 1}}])).anomalies\n"
        "    return asyncio.run(go())\n"
    )
    block = page_python_block()
    (tmp_path / "test_as_written.py").write_text("from app import process_data\n\n" + block)
    adapted = block.replace("from unittest.mock import Mock, patch", "from unittest.mock import AsyncMock, Mock, patch")
    adapted = adapted.replace(
        "client.detect.return_value = {'anomalies': []}",
        "client.detect = AsyncMock(return_value=Mock(anomalies=[]))",
    )
    (tmp_path / "test_adapted.py").write_text("from app import process_data\n\n" + adapted)
    proc = run_pytest(tmp_path, "test_as_written.py")
    assert proc.returncode == 1 and "can't be used in 'await' expression" in proc.stdout
    proc = run_pytest(tmp_path, "test_adapted.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- an application under test ----------------------------------------------------------------------

APP_CLIENT = DriftlockSyncClient(api_key="dlk_app")  # built at import, before any fixture, as apps do
ALERTS: list[str] = []


def handle_readings(values: list[float]) -> int:
    """The application's code: send readings, page someone for each anomaly, never fail the caller."""
    try:
        result = APP_CLIENT.detect([{"body": {"value": v}} for v in values], stream_id="sensors")
    except DriftlockError as exc:
        ALERTS.append(f"driftlock unavailable: {exc.code}")
        return 0
    for anomaly in result.anomalies:
        ALERTS.append(f"value {values[anomaly.index]}: {anomaly.why} ({anomaly.metrics.confidence:.0%})")
    return len(result.anomalies)


async def handle_readings_async(client: DriftlockClient, values: list[float]) -> list[int]:
    result = await client.detect([{"body": {"value": v}} for v in values], stream_id="sensors")
    return [a.index for a in result.anomalies]


@pytest.fixture(autouse=True)
def no_alerts() -> None:
    ALERTS.clear()


def spike(event: Any) -> str | None:
    return "a spike" if event["body"]["value"] > 50 else None


def test_the_fixture_answers_a_client_the_application_built_itself(driftlock_fake: FakeDriftlock) -> None:
    driftlock_fake.flag(spike)
    assert handle_readings([10, 12, 100, 11]) == 1
    assert ALERTS == ["value 100: a spike (100%)"]
    (call,) = driftlock_fake.detect_calls
    assert (call.stream_id, call.anomalies) == ("sensors", [2])
    assert driftlock_fake.events("sensors") == [{"body": {"value": v}} for v in [10, 12, 100, 11]]
    assert driftlock_fake.calls[0].api_key == "dlk_app"


def test_the_same_client_follows_the_next_test_s_fake(driftlock_fake: FakeDriftlock) -> None:
    """APP_CLIENT already sent through the previous test's fake; this one's answers now."""
    assert handle_readings([100]) == 0  # this fake flags nothing
    assert len(driftlock_fake.detect_calls) == 1


async def test_async_clients_the_same_way(driftlock_fake: FakeDriftlock) -> None:
    driftlock_fake.next_detect(0, {"index": 2, "why": "odd", "confidence": 0.9})
    async with DriftlockClient(api_key="dlk_app") as client:
        assert await handle_readings_async(client, [1, 2, 3]) == [0, 2]
        result = await client.detect([{"body": {"value": 1}}])  # the script was for one call
        assert result.anomalies == ()
        page = await client.anomalies.list(stream_id="sensors")
        assert [a.why for a in page.anomalies] == [
            "odd",
            "the event is unlike the stream's baseline (scripted by a test)",
        ]
        assert page.anomalies[0].metrics.confidence == 0.9
        await client.anomalies.feedback(page.anomalies[0].id or "", "false_positive", reason="calibration run")
    assert [(f.target, f.feedback_type, f.reason) for f in driftlock_fake.feedback] == [
        ("anomaly", "false_positive", "calibration run")
    ]


def test_chaos_errors_rate_limits_outages_and_slowness(driftlock_fake: FakeDriftlock) -> None:
    driftlock_fake.fail(500)
    assert handle_readings([1]) == 0 and ALERTS[-1] == "driftlock unavailable: unavailable"  # 500 is not retried
    driftlock_fake.fail(429, times=2, retry_after=0)
    assert handle_readings([1]) == 0 and len(ALERTS) == 1  # retried twice, then answered
    assert [c.status for c in driftlock_fake.calls[-3:]] == [429, 429, 200]
    with driftlock_fake.sync_client(max_retries=0) as client:
        driftlock_fake.fail(429, retry_after=7)
        with pytest.raises(DriftlockRateLimitError) as info:
            client.detect([1])
        assert info.value.retry_after == 7
        driftlock_fake.disconnect(times=None)
        with pytest.raises(DriftlockNetworkError, match="connection refused"):
            client.detect([1])
        driftlock_fake.heal()
        driftlock_fake.slow(5)
        started = time.monotonic()
        with pytest.raises(DriftlockNetworkError, match="ReadTimeout"):
            client.detect([1], timeout=0.3)
        assert time.monotonic() - started < 1.5
        driftlock_fake.heal()
        assert client.detect([1]).total_events == 1


def test_a_key_the_fake_does_not_know_is_refused() -> None:
    with FakeDriftlock(api_key="dlk_right") as fake:
        with DriftlockSyncClient(api_key="dlk_wrong") as wrong, pytest.raises(DriftlockAuthenticationError):
            wrong.verify()
        with fake.sync_client() as right:
            assert right.verify().restricted is False
            assert right.health().ok


def test_an_explicit_transport_without_installing(tmp_path: Path) -> None:
    fake = FakeDriftlock(flag=lambda e: True)
    with DriftlockSyncClient(api_key="k", transport=fake.transport) as client:
        assert [a.index for a in client.detect([1, 2]).anomalies] == [0, 1]
    with DriftlockSyncClient(base_url="http://127.0.0.1:9", max_retries=0, timeout=0.5) as elsewhere:
        with pytest.raises(DriftlockNetworkError):  # not installed: this client is not answered by the fake
            elsewhere.detect([1])
    assert len(fake.calls) == 1
    assert isinstance(fake.client(), DriftlockClient) and isinstance(fake.sync_client(), DriftlockSyncClient)


def test_a_script_that_names_an_event_not_in_the_batch_says_so(driftlock_fake: FakeDriftlock) -> None:
    driftlock_fake.next_detect(5)
    with pytest.raises(ValueError, match="index 5 is not an event of a batch of 2"):
        handle_readings([1, 2])


def test_the_exporter_s_handlers_hear_of_a_scripted_incident_once(driftlock_fake: FakeDriftlock) -> None:
    heard: list[Any] = []
    driftlock_fake.flag(lambda e: e["body"]["status"] >= 500)
    exporter = DriftlockSpanExporter(api_key="dlk_app", on_anomaly=lambda anomaly, span: heard.append((anomaly, span)))
    spans = make_spans([{"method": "GET", "route": "x/", "status": s} for s in (200, 500, 503, 200)])
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    exporter.shutdown()
    assert len(heard) == 1 and heard[0][0].index == 1
    assert exporter.exported_events == 4


def test_the_plugin_needs_no_conftest(tmp_path: Path) -> None:
    (tmp_path / "test_plugin.py").write_text(
        textwrap.dedent(
            """
            import asyncio
            from driftlock import DriftlockClient

            def test_fixture(driftlock_fake):
                driftlock_fake.flag(lambda event: True)
                async def go():
                    async with DriftlockClient() as client:  # no key: would be the embedded engine
                        return await client.detect([{"body": {"x": 1}}])
                assert len(asyncio.run(go()).anomalies) == 1
                assert len(driftlock_fake.detect_calls) == 1
            """
        )
    )
    proc = run_pytest(tmp_path, "test_plugin.py")
    assert proc.returncode == 0 and "1 passed" in proc.stdout, proc.stdout + proc.stderr


def test_outside_a_fake_clients_are_untouched() -> None:
    async def go() -> int:
        async with DriftlockClient() as client:  # the embedded engine
            return (await client.detect([{"body": {"x": 1}}])).total_events

    assert asyncio.run(go()) == 1
