"""``client.verify()`` and the opt-in client metrics, against a real `driftlock serve` (the fault server only
for answers the real one does not give: 403, 503 in a row)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY, CollectorRegistry

from driftlock import (
    DriftlockAuthenticationError,
    DriftlockClient,
    DriftlockNetworkError,
    DriftlockSyncClient,
    DriftlockValidationError,
)
from driftlock.client._metrics import operation_label
from tests.support import ROOT, FaultServer, Reply, ServerProcess, clean_env, free_port_url, running_server

KEY = "verify-key-0123456789abcdef"


@pytest.fixture(scope="module")
def guarded() -> Iterator[ServerProcess]:
    with running_server(":memory:", "--api-key", KEY) as server:
        yield server


def verify(kind: str, **options: object) -> object:
    if kind == "sync":
        with DriftlockSyncClient(**options) as client:  # type: ignore[arg-type]
            return client.verify()

    async def go() -> object:
        async with DriftlockClient(**options) as client:  # type: ignore[arg-type]
            return await client.verify()

    return asyncio.run(go())


# -- verify ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_verify_accepts_the_right_key_and_stores_nothing(kind: str, guarded: ServerProcess) -> None:
    streams = guarded.get("/v1/streams", headers={"X-Api-Key": KEY}).json()["streams"]
    result = verify(kind, api_key=KEY, base_url=guarded.url)
    assert result.api_root == guarded.url and result.restricted is False  # type: ignore[attr-defined]
    assert guarded.get("/v1/streams", headers={"X-Api-Key": KEY}).json()["streams"] == streams


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_verify_raises_on_a_refused_key(kind: str, guarded: ServerProcess) -> None:
    with pytest.raises(DriftlockAuthenticationError) as info:
        verify(kind, api_key="not-the-key-0123456789", base_url=guarded.url)
    assert info.value.status == 401 and "API_KEY" in str(info.value)


def test_verify_raises_when_the_api_cannot_be_reached() -> None:
    with pytest.raises(DriftlockNetworkError):
        verify("sync", api_key=KEY, base_url=free_port_url(), max_retries=0, timeout=1.0)


def test_verify_is_one_cheap_read_and_a_403_means_a_restricted_key() -> None:
    forbidden = Reply(403, {"error": {"code": "forbidden", "message": "this key may only ingest", "request_id": "r-3"}})
    with FaultServer(forbidden) as fs:
        result = verify("sync", api_key=KEY, base_url=fs.url)
    assert (result.restricted, result.request_id) == (True, "r-3")  # type: ignore[attr-defined]
    assert [(s.method, s.path) for s in fs.seen] == [("GET", "/v1/anomalies?limit=1")]


def test_verify_on_the_embedded_engine() -> None:
    assert verify("sync").api_root == "embedded"  # type: ignore[attr-defined]


# -- metrics --------------------------------------------------------------------------------------


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_metrics_count_calls_and_time_them(guarded: ServerProcess) -> None:
    registry = CollectorRegistry()
    with DriftlockSyncClient(api_key=KEY, base_url=guarded.url, metrics=registry) as client:
        client.detect([{"body": {"m": 1}}], stream_id="metrics")
        client.detect([{"body": {"m": 2}}], stream_id="metrics")
        client.verify()
        with pytest.raises(DriftlockValidationError):
            client.anomalies.get("no-such-anomaly")
    detect = "POST /v1/detect"
    assert value(registry, "driftlock_client_requests_total", operation=detect) == 2
    assert value(registry, "driftlock_client_request_duration_seconds_count", operation=detect) == 2
    assert value(registry, "driftlock_client_request_duration_seconds_sum", operation=detect) > 0
    assert value(registry, "driftlock_client_requests_total", operation="GET /v1/anomalies") == 1
    one = "GET /v1/anomalies/{id}"
    assert value(registry, "driftlock_client_errors_total", operation=one, error="validation") == 1
    assert value(registry, "driftlock_client_errors_total", operation=detect, error="validation") == 0


def test_metrics_count_retries_by_cause_and_errors_by_type() -> None:
    registry = CollectorRegistry()
    unavailable = Reply(503, {"error": {"code": "unavailable", "message": "busy"}}, {"Retry-After": "0"})
    with FaultServer(unavailable, unavailable, Reply()) as fs:
        with DriftlockSyncClient(base_url=fs.url, metrics=registry) as client:
            client.detect([1])
    detect = "POST /v1/detect"
    assert value(registry, "driftlock_client_retries_total", operation=detect, reason="503") == 2
    assert value(registry, "driftlock_client_requests_total", operation=detect) == 1
    assert value(registry, "driftlock_client_errors_total", operation=detect, error="server") == 0

    async def down() -> None:
        async with DriftlockClient(
            base_url=free_port_url(), metrics=registry, max_retries=1, retry_delay=0.01, timeout=2.0
        ) as client:
            with pytest.raises(DriftlockNetworkError):
                await client.detect([1])

    asyncio.run(down())
    assert value(registry, "driftlock_client_retries_total", operation=detect, reason="network") == 1
    assert value(registry, "driftlock_client_errors_total", operation=detect, error="network") == 1
    assert value(registry, "driftlock_client_requests_total", operation=detect) == 2


def test_clients_share_one_registry_and_true_means_the_default_one() -> None:
    registry = CollectorRegistry()
    DriftlockSyncClient(base_url="http://127.0.0.1:9", metrics=registry)
    DriftlockClient(base_url="http://127.0.0.1:9", metrics=registry)  # no "Duplicated timeseries"
    DriftlockSyncClient(base_url="http://127.0.0.1:9", metrics=True)
    assert "driftlock_client_requests" in {m.name for m in REGISTRY.collect()}
    with pytest.raises(TypeError, match="CollectorRegistry"):
        DriftlockSyncClient(base_url="http://127.0.0.1:9", metrics="yes")


def test_the_operation_label_never_holds_an_id() -> None:
    assert operation_label("GET", "/v1/anomalies/3f2a-77") == "GET /v1/anomalies/{id}"
    assert operation_label("POST", "/v1/anomalies/export") == "POST /v1/anomalies/export"
    assert operation_label("POST", "/v1/anomalies/a%2F1/feedback") == "POST /v1/anomalies/{id}/feedback"
    assert operation_label("PATCH", "/v1/streams/team%2Fa/profile") == "PATCH /v1/streams/{id}/profile"
    assert operation_label("GET", "/v1/incidents") == "GET /v1/incidents"
    assert operation_label("GET", "/healthz") == "GET /healthz"


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT, env=clean_env()
    )


def test_off_by_default_and_then_prometheus_client_and_pandas_are_never_imported() -> None:
    proc = run(
        "import sys\n"
        "from driftlock import DriftlockClient, DriftlockSyncClient\n"
        "DriftlockClient(base_url='http://127.0.0.1:9'); DriftlockSyncClient(base_url='http://127.0.0.1:9')\n"
        "print('prometheus_client' in sys.modules, 'pandas' in sys.modules)\n"
    )
    assert proc.stdout.strip() == "False False", proc.stderr


def test_metrics_without_prometheus_client_name_the_extra() -> None:
    proc = run(
        "import sys\nsys.modules['prometheus_client'] = None\n"
        "from driftlock import DriftlockSyncClient\nDriftlockSyncClient(base_url='http://127.0.0.1:9', metrics=True)\n"
    )
    assert proc.returncode == 1
    assert "pip install 'driftlock[metrics]'" in proc.stderr.splitlines()[-1]
