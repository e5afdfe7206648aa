"""The earlier Python SDK page (tests/data/python-sdk-2025-11.md, a copy of seed/python-sdk-2025-11.md), run as written.

Each test takes the page's code block under one heading and runs it in a fresh interpreter. What is
changed, and only that: ``base_url`` is added where the page builds a client that talks to a server
(a real `driftlock serve`, or the fault server for a 429 or a 500 the real one does not give); a
fragment (a block with ``await`` outside a function) runs inside an async function after the page's
own client line with ``base_url`` added; the page's placeholders (``[...]``, ``...``) are also run as
written, where the error must name them, and then replaced by real events.
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
from typing import Any

import pytest

from tests import traffic
from tests.support import ROOT, FaultServer, Reply, ServerProcess, clean_env, running_server

PAGE = Path(__file__).parent / "data" / "python-sdk-2025-11.md"


def page_blocks() -> dict[str, str]:
    """The page's python blocks by the heading they sit under (one each on this page)."""
    blocks: dict[str, str] = {}
    heading, code = "", None
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
CLIENT_LINE = 'client = DriftlockClient(api_key=os.getenv("DRIFTLOCK_API_KEY"))'
EVENTS = "[{'type': 'temperature', 'body': {'value': 21.5, 'unit': 'C'}}, {'type': 'temperature', 'body': {'value': 22.0, 'unit': 'C'}}]"


@dataclass
class Run:
    returncode: int
    printed: list[str]
    facts: dict[str, Any]
    stderr: str


def run(code: str, *, check: bool = True, env: dict[str, str] | None = None) -> Run:
    script = "import json\ndef fact(**values):\n    print('@@' + json.dumps(values, default=str))\n" + code
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
    lines = proc.stdout.splitlines()
    facts: dict[str, Any] = {}
    for line in lines:
        if line.startswith("@@"):
            facts.update(json.loads(line[2:]))
    return Run(proc.returncode, [x for x in lines if not x.startswith("@@")], facts, proc.stderr)


def fragment(block: str, url: str, *, replace: dict[str, str] | None = None, postlude: str = "") -> str:
    """A block that awaits outside a function, run after the page's client line (``base_url`` added)."""
    for old, new in (replace or {}).items():
        assert old in block, old
        block = block.replace(old, new)
    client = f"client = DriftlockClient(api_key=os.getenv('DRIFTLOCK_API_KEY'), base_url={url!r})\n"
    body = client + block + postlude
    return (
        "import os, asyncio\nfrom driftlock import DriftlockClient\nasync def page():\n"
        + textwrap.indent(body, "    ")
        + "\nasyncio.run(page())\n"
    )


def ingested(server: ServerProcess, stream_id: str) -> int:
    reply = server.get("/v1/streams/" + urllib.parse.quote(stream_id, safe=""))
    return int(reply.json()["events_ingested"]) if reply.status_code == 200 else 0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(Path(tmp_path_factory.mktemp("page2025")) / "page.sqlite3") as server:
        yield server


# -- Quick Start ---------------------------------------------------------------------------------


def quick_start(url: str) -> str:
    block = BLOCKS["Quick Start"]
    assert CLIENT_LINE in block
    return block.replace(CLIENT_LINE, CLIENT_LINE[:-1] + f", base_url={url!r})")


def test_quick_start_on_a_new_stream(server: ServerProcess) -> None:
    before = ingested(server, "sensor-data")
    assert run(quick_start(server.url)).printed == ["No anomalies detected."]
    assert ingested(server, "sensor-data") == before + 1


def test_quick_start_prints_why_and_metrics_confidence(tmp_path: Path) -> None:
    """On a stream whose baseline is web traffic, the page's temperature reading, sent again and again,
    becomes an anomaly: the snippet prints its why and ``anomaly.metrics.confidence``."""
    with running_server(tmp_path / "qs.sqlite3") as server:
        events = traffic.events(460, seed=3)
        for start in range(0, len(events), 230):
            server.post("/v1/detect", json={"stream_id": "sensor-data", "events": events[start : start + 230]})
        for _ in range(12):  # deterministic engine: the same run finds it every time; bounded anyway
            printed = run(quick_start(server.url)).printed
            if printed != ["No anomalies detected."]:
                break
        listed = server.get("/v1/anomalies", params={"stream_id": "sensor-data", "limit": 1}).json()["anomalies"]
    assert printed[0] == "Detected 1 anomalies:", printed
    newest = listed[0]
    stored = newest["metrics"] if isinstance(newest.get("metrics"), dict) else newest
    confidence = stored.get("confidence_level", stored.get("confidence"))
    assert confidence is not None and 0 < float(confidence) <= 1
    assert printed[1] == f"- {newest['explanation']} (Confidence: {confidence})"


# -- Synchronous Usage ----------------------------------------------------------------------------


def sync_usage(url: str) -> str:
    block = BLOCKS["Synchronous Usage"]
    line = 'DriftlockSyncClient(api_key="your-api-key")'
    assert line in block
    return block.replace(line, line[:-1] + f", base_url={url!r})")


def test_synchronous_usage_with_the_placeholder_names_it(server: ServerProcess) -> None:
    result = run(sync_usage(server.url), check=False)
    assert result.returncode == 1
    assert (
        "DriftlockValidationError: event 0 is ... (the documentation's placeholder): pass your events" in result.stderr
    )


def test_synchronous_usage(server: ServerProcess) -> None:
    before = ingested(server, "sync-stream")
    code = sync_usage(server.url).replace("events=[...]", f"events={EVENTS}")
    result = run(code + "fact(total=result.total_events, stream=result.stream_id)\n")
    assert result.facts == {"total": 2, "stream": "sync-stream"}
    assert ingested(server, "sync-stream") == before + 2


# -- Configuration -------------------------------------------------------------------------------------


def test_configuration() -> None:
    code = "import os\nfrom driftlock import DriftlockClient\n" + BLOCKS["Configuration"]
    result = run(
        code + "fact(url=client.config.base_url, timeout=client.config.timeout, retries=client.config.max_retries, "
        "key=client.config.api_key == 'your-api-key')\n"
    )
    assert result.facts == {
        "url": "https://driftlock-api-o6kjgrsowq-uc.a.run.app",
        "timeout": 10.0,
        "retries": 3,
        "key": True,
    }


# -- Pandas Integration ----------------------------------------------------------------------------

TIMESTAMPS = "['2025-01-01T12:00:00Z', '2025-01-01T12:01:00Z', '2025-01-01T12:02:00Z', '2025-01-01T12:03:00Z', '2025-01-01T12:04:00Z']"


def test_pandas_integration(server: ServerProcess) -> None:
    before = ingested(server, "pandas-stream")
    code = fragment(
        BLOCKS["Pandas Integration"],
        server.url,
        replace={"'timestamp': [...]": f"'timestamp': {TIMESTAMPS}"},
        postlude="fact(events=events, total=result.total_events, stream=result.stream_id)\n",
    )
    result = run(code)
    assert result.facts["total"] == 5 and result.facts["stream"] == "pandas-stream"
    assert result.facts["events"] == [
        {"timestamp": f"2025-01-01T12:0{i}:00.000Z", "body": {"value": v, "category": "A"}}
        for i, v in enumerate([10, 12, 11, 100, 10])
    ]
    assert ingested(server, "pandas-stream") == before + 5
    stored = server.get("/v1/streams/pandas-stream/events", params={"limit": 5}).json()["events"]
    assert [sorted(e["body"]) for e in stored][-5:] == [["category", "value"]] * 5  # the server buckets numbers


def test_pandas_integration_without_pandas_names_the_extra(server: ServerProcess) -> None:
    code = fragment(
        "events = client.utils.from_dataframe(object(), timestamp_col='timestamp', body_cols=['value'])\n", server.url
    )
    result = run("import sys\nsys.modules['pandas'] = None\n" + code, check=False)
    assert result.returncode == 1
    assert (
        "ModuleNotFoundError: client.utils.from_dataframe needs pandas, which is not installed: "
        "pip install 'driftlock[pandas]'" in result.stderr
    )


# -- Error Handling --------------------------------------------------------------------------------


def error_handling(url: str, *, events: str | None = None) -> str:
    block = BLOCKS["Error Handling"]
    replace = {"client.detect(...)": f"client.detect({events})"} if events else {}
    return fragment(block, url, replace=replace)


def test_error_handling_as_written_names_the_placeholder(server: ServerProcess) -> None:
    result = run(error_handling(server.url))
    assert result.printed == [
        "API Error: events must be a list of events, not ellipsis (the documentation's placeholder): pass your events"
    ]


def test_error_handling_rate_limit() -> None:
    limited = Reply(429, {"error": {"code": "rate_limit_exceeded", "message": "slow down"}}, {"Retry-After": "30"})
    with FaultServer(default=limited) as fs:
        result = run(error_handling(fs.url, events=EVENTS))
    assert result.printed == ["Rate limit exceeded. Retry in 30.0 seconds."]


def test_error_handling_api_error() -> None:
    with FaultServer(default=Reply(500, {"error": {"code": "internal", "message": "boom"}})) as fs:
        result = run(error_handling(fs.url, events=EVENTS), env={"DRIFTLOCK_MAX_RETRIES": "0"})
    assert result.printed == ["API Error: boom"]


def test_error_handling_refused_key_is_an_api_error() -> None:
    with running_server(":memory:", "--api-key", "the-right-key-0123456789") as guarded:
        result = run(error_handling(guarded.url, events=EVENTS), env={"DRIFTLOCK_API_KEY": "a-wrong-key-0123456789"})
    assert result.printed == ["API Error: authentication failed. Check the API_KEY setting (DRIFTLOCK_API_KEY)."]


def test_the_page_names_are_the_same_classes() -> None:
    import driftlock.exceptions as exceptions

    assert exceptions.DriftlockAPIError is exceptions.DriftlockError
    assert exceptions.RateLimitError is exceptions.DriftlockRateLimitError


# -- Logging ------------------------------------------------------------------------------------------


def test_logging_shows_request_details_without_the_key(server: ServerProcess) -> None:
    code = BLOCKS["Logging"] + (
        "from driftlock import DriftlockSyncClient\n"
        f"with DriftlockSyncClient(api_key='dlk_secret-key-42', base_url={server.url!r}) as client:\n"
        f"    client.detect({EVENTS}, stream_id='logged')\n"
    )
    result = run(code, check=False)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("DEBUG:driftlock.client:")]
    assert len(lines) == 1, result.stderr
    assert re.fullmatch(
        rf"DEBUG:driftlock\.client:POST {re.escape(server.url)}/v1/detect -> 200 in [0-9.]+ ms \(attempt 1 of 4\)",
        lines[0],
    )
    assert "dlk_secret-key-42" not in result.stderr


def test_every_page_block_has_a_test() -> None:
    source = Path(__file__).read_text()
    assert sorted(BLOCKS) == sorted(
        ["Quick Start", "Synchronous Usage", "Configuration", "Pandas Integration", "Error Handling", "Logging"]
    )
    assert [h for h in BLOCKS if f'"{h}"' not in source] == []
