"""The Driftlock Python SDK page (tests/data/python-sdk.md, a copy of seed/python-sdk.md), run as written.

Each test takes the page's code block under one heading and runs it in a fresh interpreter against a
real `driftlock serve`. What is changed, and only that: ``base_url`` is added where the page builds a
client; a fragment (a block that uses ``await`` outside a function, or a ``client`` it does not build)
runs inside an async function after ``client = DriftlockClient(api_key='dlk_your-api-key',
base_url=...)``, as the page's Configuration block makes it; the page's placeholders are real
(``known_good_events``, ``handle_data``, ``anomaly_id``, ``result``, and the ids ``'anomaly-id'``,
``'id1'``...). Then the test checks that what the snippet printed is true, against the server's state.
Every run must also leave stderr empty: no ResourceWarning, no unclosed-client noise.

"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from tests import traffic
from tests.support import ROOT, FaultServer, Reply, ServerProcess, clean_env, free_port_url, running_server

PAGE = Path(__file__).parent / "data" / "python-sdk.md"
PAGE_CLIENT = "DriftlockClient(api_key='dlk_your-api-key')"


def page_blocks() -> dict[str, str]:
    """The page's python blocks by the heading they sit under (one each on this page)."""
    blocks: dict[str, str] = {}
    heading, code = "", cast(list[str] | None, None)
    for line in PAGE.read_text().splitlines():
        if code is not None:
            if line.strip() == "```":
                blocks[heading] = "\n".join(code) + "\n"
                code = None
            else:
                code.append(line)
        elif line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif line.strip() == "```python":
            code = []
    return blocks


BLOCKS = page_blocks()

HARNESS = """\
import asyncio
import json
from driftlock import DriftlockClient
BASE_URL = {url!r}

def fact(**values):
    print("@@" + json.dumps(values, default=str))

known_good_events = {known_good!r}

async def handle_data(data):
    return {{'handled': data}}
"""


@dataclass
class Run:
    printed: list[str]
    facts: dict[str, Any]
    stderr: str


def run_page(
    *headings: str,
    url: str | None,
    prelude: str = "",
    postlude: str = "",
    placeholders: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    check: bool = True,
) -> Run:
    """Run the blocks under ``headings`` (in order, as one program) in a new interpreter."""
    code = "".join(BLOCKS[h] for h in headings)
    if url is not None:
        code = code.replace(PAGE_CLIENT, f"DriftlockClient(api_key='dlk_your-api-key', base_url={url!r})")
        code = code.replace("DriftlockClient()", f"DriftlockClient(base_url={url!r})")
    for placeholder, value in (placeholders or {}).items():
        assert placeholder in code, placeholder
        code = code.replace(placeholder, value)
    known_good = [{"body": e["body"]} for e in traffic.events(60, seed=11)]
    script = HARNESS.format(url=url, known_good=known_good)
    if "asyncio.run(" in code:  # a whole program
        script += prelude + code + postlude
    else:  # a fragment: in an async function, with the page's client
        builds_client = "client = " in code or "client = " in prelude
        client = (
            ""
            if builds_client or not url
            else f"client = DriftlockClient(api_key='dlk_your-api-key', base_url={url!r})\n"
        )
        body = client + prelude + code + postlude
        script += "async def page():\n" + textwrap.indent(body, "    ") + "\nasyncio.run(page())\n"
    proc = subprocess.run(
        [sys.executable, "-W", "default", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=clean_env(DRIFTLOCK_EMBEDDED_DB=":memory:", **(env or {})),
    )
    if check:
        assert proc.returncode == 0, f"snippet failed:\n{proc.stderr}\n--- script ---\n{script}"
        assert proc.stderr == "", proc.stderr
    out = proc.stdout.splitlines()
    facts: dict[str, Any] = {}
    for line in out:
        if line.startswith("@@"):
            facts.update(json.loads(line[2:]))
    return Run([line for line in out if not line.startswith("@@")], facts, proc.stderr)


def ingested(server: ServerProcess, stream_id: str) -> int:
    reply = server.get("/v1/streams/" + urllib.parse.quote(stream_id, safe=""))
    return int(reply.json()["events_ingested"]) if reply.status_code == 200 else 0


def seed_anomalies(server: ServerProcess, stream_id: str, seed: int) -> list[dict[str, Any]]:
    """Calibrate a stream on normal traffic, then send a scanner burst: it has anomalies afterwards."""
    rng = __import__("random").Random(seed)
    events = traffic.events(460, seed=seed) + [traffic.scanner(rng) for _ in range(40)]
    for start in range(0, len(events), 250):
        reply = server.post("/v1/detect", json={"stream_id": stream_id, "events": events[start : start + 250]})
        assert reply.status_code == 200, reply.text
    listed = server.get("/v1/anomalies", params={"stream_id": stream_id, "limit": 100}).json()["anomalies"]
    assert listed, f"seeding {stream_id} produced no anomaly"
    return list(listed)


@pytest.fixture(scope="module")
def page_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of the page's own: its stream names (app-logs, ...) are nobody else's."""
    with running_server(Path(tmp_path_factory.mktemp("page")) / "page.sqlite3") as server:
        yield server


@pytest.fixture(scope="module")
def app_logs(page_server: ServerProcess) -> list[dict[str, Any]]:
    """'app-logs' calibrated and holding anomalies (the page's list/anchor snippets use it)."""
    return seed_anomalies(page_server, "app-logs", seed=21)


@pytest.fixture(scope="module")
def payments(page_server: ServerProcess) -> list[dict[str, Any]]:
    """Anomalies that feedback snippets may change (kept apart from app-logs' list)."""
    return seed_anomalies(page_server, "payments", seed=22)


# -- Quick Start, demo, Configuration -----------------------------------------------------------


def test_quick_start(page_server: ServerProcess) -> None:
    before = ingested(page_server, "app-logs")
    run = run_page("Quick Start", url=page_server.url)
    found = re.fullmatch(r"Found (\d+) anomalies", run.printed[0])
    assert found, run.printed
    assert len(run.printed) == 1 + int(found.group(1))
    assert all(line.startswith("- ") and len(line) > 2 for line in run.printed[1:])
    assert ingested(page_server, "app-logs") == before + 2


def test_demo_endpoint(page_server: ServerProcess) -> None:
    run = run_page("Getting Your API Key", url=page_server.url)
    remaining = re.fullmatch(r"Remaining calls: (\d+)", run.printed[0])
    assert remaining and 0 <= int(remaining.group(1)) < 10, run.printed


def test_demo_endpoint_embedded() -> None:
    run = run_page("Getting Your API Key", url=None)
    assert re.fullmatch(r"Remaining calls: \d+", run.printed[0])


def test_configuration() -> None:
    run = run_page(
        "Configuration",
        url=None,
        postlude="fact(api_key=client.config.api_key == 'dlk_your-api-key', base_url=client.config.base_url, "
        "timeout=client.config.timeout, max_retries=client.config.max_retries, "
        "retry_delay=client.config.retry_delay, max_retry_delay=client.config.max_retry_delay)\n",
    )
    assert run.facts == {
        "api_key": True,
        "base_url": "https://driftlock.net/api",
        "timeout": 30.0,
        "max_retries": 3,
        "retry_delay": 1.0,
        "max_retry_delay": 30.0,
    }


# -- Detection API ----------------------------------------------------------------------------------

EVENTS = "events = [{'message': 'Normal log entry'}, {'message': 'Unusual event occurred'}, {'message': 'x'}]\n"
RESULT_FACTS = "fact(total=result.total_events, stream=result.stream_id, success=result.success)\n"


@pytest.mark.parametrize(
    ("heading", "stream", "total"),
    [
        ("Simple Detection", "default", 2),
        ("With Stream ID", "production-logs", 3),
        ("With Configuration Override", "sensitive-data", 3),
    ],
)
def test_detection_api(page_server: ServerProcess, heading: str, stream: str, total: int) -> None:
    before = ingested(page_server, stream)
    run = run_page(heading, url=page_server.url, prelude=EVENTS, postlude=RESULT_FACTS)
    assert run.facts == {"total": total, "stream": stream, "success": True}
    assert ingested(page_server, stream) == before + total


@pytest.mark.parametrize(
    ("heading", "variable", "stream"),
    [
        ("Application Logs", "log_events", "app-logs"),
        ("API Metrics", "metrics", "api-metrics"),
        ("Security Events", "security_events", "security"),
        ("Transaction Monitoring", "transactions", "transactions"),
    ],
)
def test_common_use_cases(page_server: ServerProcess, heading: str, variable: str, stream: str) -> None:
    before = ingested(page_server, stream)
    run = run_page(heading, url=page_server.url, postlude=RESULT_FACTS)
    assert run.facts == {"total": 3, "stream": stream, "success": True}
    assert ingested(page_server, stream) == before + 3


def test_calibration_status_while_calibrating(page_server: ServerProcess) -> None:
    run = run_page("Transaction Monitoring", "Calibration Status", url=page_server.url)
    info = page_server.get("/v1/streams/transactions").json()
    events = info["events_ingested"]
    assert events < 50
    assert run.printed == [f"Calibrating: {100 * events // 50}%", f"Need {info['detection_events_needed']} more events"]


def test_calibration_status_when_ready(page_server: ServerProcess, app_logs: list[dict[str, Any]]) -> None:
    run = run_page("Application Logs", "Calibration Status", url=page_server.url)
    assert run.printed == ["Detection is active"]


def test_anomaly_metrics(page_server: ServerProcess, app_logs: list[dict[str, Any]]) -> None:
    burst = [traffic.scanner(__import__("random").Random(i)) for i in range(30)]
    run = run_page(
        "Anomaly Metrics",
        url=page_server.url,
        prelude=f"result = await client.detect({burst!r}, stream_id='app-logs')\n",
        postlude="fact(detected=[(a.metrics.ncd, a.metrics.p_value, a.metrics.confidence_level, "
        "a.metrics.is_statistically_significant) for a in result.anomalies if a.detected])\n",
    )
    detected = run.facts["detected"]
    assert detected, "the scanner burst found nothing: the snippet printed nothing to check"
    expected = []
    for ncd, p, confidence, significant in detected:
        assert isinstance(significant, bool)
        expected += [
            f"NCD: {ncd:.4f}",
            f"P-value: {p:.6f}",
            f"Confidence: {confidence * 100:.2f}%",
            f"Statistically significant: {significant}",
        ]
    assert run.printed == expected


# -- Streaming, context manager, decorator ---------------------------------------------------------


def test_streaming_detection(page_server: ServerProcess) -> None:
    before = ingested(page_server, "app-logs")
    run = run_page("Streaming Detection", url=page_server.url)
    assert "Processed 2 events" in run.printed
    assert not any(line.startswith("Detection error") for line in run.printed)
    assert ingested(page_server, "app-logs") == before + 2


def test_context_manager_flushes_on_exit(page_server: ServerProcess) -> None:
    # The page's block uses asyncio without importing it (an earlier block on the page does).
    before = ingested(page_server, "app-logs")
    run = run_page("Context Manager Support", url=page_server.url)
    assert run.printed == []
    assert ingested(page_server, "app-logs") == before + 2


def test_decorator_monitors_each_call(page_server: ServerProcess) -> None:
    before = ingested(page_server, "api-calls")
    run = run_page("Decorator-Based Integration", url=page_server.url, postlude="fact(result=result)\n")
    assert run.facts == {"result": {"handled": {"key": "value"}}}
    # Never closed by the snippet: what the monitor held was sent when the interpreter exited.
    assert ingested(page_server, "api-calls") == before + 1
    events = page_server.get("/v1/streams/api-calls/events", params={"limit": 1}).json()["events"]
    body = events[-1]["body"]
    assert body["function"].endswith("process_request") and body["outcome"] == "ok"
    assert "error_type" not in body


# -- Anomaly management ------------------------------------------------------------------------------


def test_list_anomalies_as_written(page_server: ServerProcess, app_logs: list[dict[str, Any]]) -> None:
    # Every anomaly of app-logs was detected just now, none in January 2025.
    run = run_page("List Anomalies", url=page_server.url)
    assert run.printed == ["Found 0 anomalies"]


def test_list_anomalies_prints_explanation_and_ncd(page_server: ServerProcess, app_logs: list[dict[str, Any]]) -> None:
    run = run_page(
        "List Anomalies",
        url=page_server.url,
        placeholders={"2025-01-01T00:00:00Z": "2000-01-01T00:00:00Z", "2025-01-31T23:59:59Z": "2999-12-31T23:59:59Z"},
    )
    listed = page_server.get("/v1/anomalies", params={"stream_id": "app-logs", "limit": 50}).json()
    opened = [a for a in listed["anomalies"] if a["status"] == "open"]
    assert run.printed[0] == f"Found {listed['total']} anomalies"
    assert run.printed[1:] == [f"- {a['explanation']} (NCD: {a['ncd']})" for a in opened]
    assert all(a["explanation"] for a in opened)


def test_get_anomaly_details(page_server: ServerProcess, payments: list[dict[str, Any]]) -> None:
    target = payments[0]
    run = run_page("Get Anomaly Details", url=page_server.url, placeholders={"'anomaly-id'": repr(target["id"])})
    stored = page_server.get(f"/v1/anomalies/{target['id']}").json()
    assert run.printed[0].startswith(f"AnomalyMetrics(ncd={stored['metrics']['ncd']}, p_value=")
    assert run.printed[1] == repr(stored["event"])


def test_submit_feedback(page_server: ServerProcess, payments: list[dict[str, Any]]) -> None:
    target = payments[1]
    run = run_page("Submit Feedback", url=page_server.url, placeholders={"'anomaly-id'": repr(target["id"])})
    assert run.printed == []
    feedback = [
        {"feedback_type": f["feedback_type"], "reason": f["reason"]}
        for f in page_server.get(f"/v1/anomalies/{target['id']}").json()["feedback"]
    ]
    assert feedback[-2:] == [
        {"feedback_type": "false_positive", "reason": "Planned maintenance window"},
        {"feedback_type": "confirmed", "reason": None},
    ]


def test_export_anomalies(page_server: ServerProcess, payments: list[dict[str, Any]]) -> None:
    ids = [a["id"] for a in payments[:3]]
    run = run_page(
        "Export Anomalies",
        url=page_server.url,
        placeholders={
            "'anomaly-id'": repr(ids[0]),
            "'id1'": repr(ids[0]),
            "'id2'": repr(ids[1]),
            "'id3'": repr(ids[2]),
        },
        postlude="fact(bulk=bulk_job.job_id, done=(await client.anomalies.get_export(job.job_id)).status)\n",
    )
    single = re.fullmatch(r"Export job: (\S+)", run.printed[0])
    assert single and run.facts["bulk"] and run.facts["bulk"] != single.group(1)


# -- Stream profiles, tuning, anchors ---------------------------------------------------------------

PROFILE = (
    "GET and PATCH /v1/streams/{id}/profile ({profile, auto_tune_enabled, adaptive_window_enabled, current_thresholds})"
)


def test_get_detection_profile(page_server: ServerProcess, app_logs: list[dict[str, Any]]) -> None:
    run = run_page("Get Detection Profile", url=page_server.url)
    assert re.fullmatch(r"Profile: (sensitive|balanced|strict|custom)", run.printed[0])
    assert re.fullmatch(r"Auto-tune: (True|False)", run.printed[1])
    assert re.fullmatch(r"NCD threshold: 0\.\d+", run.printed[2])


def test_update_profile(page_server: ServerProcess, app_logs: list[dict[str, Any]]) -> None:
    run_page("Update Profile", url=page_server.url)
    profile = page_server.get("/v1/streams/app-logs/profile").json()
    assert (profile["profile"], profile["auto_tune_enabled"], profile["adaptive_window_enabled"]) == (
        "sensitive",
        True,
        True,
    )


def test_get_tuning_history(page_server: ServerProcess, payments: list[dict[str, Any]]) -> None:
    run = run_page(
        "Get Tuning History",
        url=page_server.url,
        placeholders={"'app-logs'": "'payments'"},
        postlude="fact(history=len(tuning.tune_history))\n",
    )
    assert re.fullmatch(r"False positive rate: [0-9.]+", run.printed[0])
    assert len(run.printed) == 1 + 2 * run.facts["history"]


def test_anchor_management(page_server: ServerProcess, app_logs: list[dict[str, Any]]) -> None:
    run = run_page(
        "Anchor Management",
        url=page_server.url,
        postlude="fact(after=(await client.streams.get_anchor('app-logs')).has_active_anchor)\n",
    )
    assert re.fullmatch(r"Has anchor: (True|False)", run.printed[0])
    assert run.facts == {"after": False}


def test_detection_profiles(page_server: ServerProcess) -> None:
    page_server.post("/v1/detect", json={"stream_id": "logs", "events": [{"body": {"m": 1}}]})
    run_page("Detection Profiles", url=page_server.url)
    assert page_server.get("/v1/streams/logs/profile").json()["profile"] == "strict"


def test_auto_tuning(page_server: ServerProcess, payments: list[dict[str, Any]]) -> None:
    page_server.post("/v1/detect", json={"stream_id": "logs", "events": [{"body": {"m": 1}}]})
    target = payments[2]
    run_page("Auto-Tuning", url=page_server.url, prelude=f"anomaly_id = {target['id']!r}\n")
    assert page_server.get("/v1/streams/logs/profile").json()["auto_tune_enabled"] is True
    feedback = page_server.get(f"/v1/anomalies/{target['id']}").json()["feedback"]
    assert (feedback[-1]["feedback_type"], feedback[-1]["reason"]) == ("false_positive", "Planned maintenance")


# -- Errors and health -----------------------------------------------------------------------------


def test_error_handling_invalid_key() -> None:
    with running_server(":memory:", "--api-key", "the-right-key-0123456789") as guarded:
        run = run_page("Error Handling", url=guarded.url, prelude=EVENTS)
    assert run.printed == ["Invalid API key"]


def test_error_handling_invalid_request(page_server: ServerProcess) -> None:
    # CONFIG_OVERRIDE (sent with every request) the server refuses: a 400 from the real server.
    run = run_page(
        "Error Handling", url=page_server.url, prelude=EVENTS, env={"DRIFTLOCK_CONFIG_OVERRIDE": '{"window_size": 0}'}
    )
    assert len(run.printed) == 1 and run.printed[0].startswith("Invalid request: invalid config_override")


def test_error_handling_rate_limit_network_and_api_errors() -> None:
    limited = Reply(429, {"error": {"code": "rate_limit_exceeded", "message": "slow down"}}, {"Retry-After": "30"})
    with FaultServer(default=limited) as fs:
        assert run_page("Error Handling", url=fs.url, prelude=EVENTS).printed == ["Rate limited. Retry after 30.0s"]
    failing = Reply(500, {"error": {"code": "internal", "message": "boom", "request_id": "req-9"}})
    with FaultServer(default=failing) as fs:
        printed = run_page("Error Handling", url=fs.url, prelude=EVENTS).printed
    assert printed == ["API error [internal]: boom", "Request ID: req-9"]
    printed = run_page("Error Handling", url=free_port_url(), prelude=EVENTS).printed
    assert len(printed) == 1 and printed[0].startswith("Network error: Could not reach Driftlock at http://127.0.0.1:")


def test_health_checks(page_server: ServerProcess) -> None:
    run = run_page("Health Checks", url=page_server.url)
    assert run.printed == ["Healthy: True", "Ready: True", "Database: connected"]


def test_health_checks_embedded() -> None:
    run = run_page("Health Checks", url=None, prelude="client = DriftlockClient()\n")
    assert run.printed == ["Healthy: True", "Ready: True", "Database: connected"]


# -- the examples, with no key: the embedded engine ----------------------------------------------------


def test_examples_quickstart_embedded() -> None:
    proc = subprocess.run(
        [sys.executable, "-W", "default", str(ROOT / "examples" / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=clean_env(DRIFTLOCK_EMBEDDED_DB=":memory:"),
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    lines = proc.stdout.splitlines()
    assert re.fullmatch(r"normal traffic: 460 events, \d+ anomalies", lines[0])
    probes = re.fullmatch(r"with injection probes: (\d+) anomalies", lines[1])
    assert probes and int(probes.group(1)) > 0
    assert len(lines) == 2 + min(3, int(probes.group(1)))


@pytest.mark.parametrize("where", ["embedded", "serve"])
def test_examples_streams_and_monitor(where: str, page_server: ServerProcess) -> None:
    env = clean_env(DRIFTLOCK_EMBEDDED_DB=":memory:")
    if where == "serve":
        env["DRIFTLOCK_BASE_URL"] = page_server.url
    proc = subprocess.run(
        [sys.executable, "-W", "default", str(ROOT / "examples" / "streams_and_monitor.py")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    lines = proc.stdout.splitlines()
    heard = re.fullmatch(r"pushed 500 events, 0 dropped, (\d+) anomalies heard by the handler", lines[0])
    listed = re.fullmatch(r"the API lists (\d+) anomalies for example-web", lines[1])
    assert heard and listed and int(heard.group(1)) > 0
    shown = min(3, int(listed.group(1)))
    assert all(line.startswith("- NCD ") for line in lines[2 : 2 + shown])
    assert lines[2 + shown :] == [
        "feedback recorded for the newest",
        "paid",
        "checkout raised, as it should: amount must be positive",
    ]
    if where == "serve":
        assert int(listed.group(1)) == int(heard.group(1))  # a fresh stream: what the handler heard is all there is
        calls = page_server.get("/v1/streams/example-calls/events").json()["events"]
        assert [e["body"]["outcome"] for e in calls] == ["ok", "error"]


def test_every_page_block_has_a_test() -> None:
    source = Path(__file__).read_text()
    untested = [h for h in BLOCKS if f'"{h}"' not in source]
    assert untested == []
