"""The CLI page (tests/data/cli.md, a copy of seed/cli.md), its shell commands run as written against a
real `driftlock serve`; only DRIFTLOCK_BASE_URL (and a private XDG_CONFIG_HOME) is added to the
environment. Then what the page does not show: exit statuses, errors that name the line, the stored
key's file mode, the embedded engine, and ``stream``'s bounded memory and flush on Ctrl-C.

The page's npm lines (``npm install -g @driftlock/cli``, ``npx``) install Driftlock's Node CLI, not this
one: ``pip install driftlock`` is our installation, so those two lines are not run.
"""

from __future__ import annotations

import array
import fcntl
import json
import os
import pty
import random
import re
import select
import signal
import subprocess
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import BIN, FaultServer, Reply, ServerProcess, clean_env, free_port_url, running_server, wait_for

PAGE = Path(__file__).parent / "data" / "cli.md"
KEY = "dlk_cli-test-key-0123456789"


def page_blocks(page: Path = PAGE) -> dict[str, list[tuple[str, str]]]:
    """The page's fenced blocks, (language, text), by the heading they sit under."""
    blocks: dict[str, list[tuple[str, str]]] = {}
    heading, lang, code = "", "", None
    for line in page.read_text().splitlines():
        stripped = line.strip()
        if code is None and line.startswith("#"):
            heading = line.lstrip("#").strip().strip("`")
        elif stripped.startswith("```"):
            if code is None:
                lang, code = stripped[3:], []
            else:
                blocks.setdefault(heading, []).append((lang, "\n".join(code)))
                code = None
        elif code is not None:
            code.append(line[3:] if line.startswith("   ") else line)
    return blocks


BLOCKS = page_blocks()


def commands(heading: str, index: int = 0) -> list[str]:
    """The shell commands of one bash block: its lines that are not comments."""
    _lang, text = [b for b in BLOCKS[heading] if b[0] == "bash"][index]
    return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def cli_env(tmp_path: Path, url: str | None, **extra: str) -> dict[str, str]:
    env = clean_env(
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        DRIFTLOCK_EMBEDDED_DB=str(tmp_path / "embedded.sqlite3"),
        **extra,
    )
    if url:
        env["DRIFTLOCK_BASE_URL"] = url
    return env


def sh(
    command: str, cwd: Path, env: dict[str, str], stdin: str = "", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=timeout
    )


def ingested(server: ServerProcess, stream_id: str) -> int:
    streams = server.get("/v1/streams", params={"limit": 1000}).json()["streams"]
    return next((int(s["events_ingested"]) for s in streams if s["stream_id"] == stream_id), 0)


def latencies(count: int, seed: int, around: int = 100) -> str:
    rng = random.Random(seed)
    return "".join(json.dumps({"latency": rng.randint(around - 10, around + 10)}) + "\n" for _ in range(count))


# -- the page, block by block ---------------------------------------------------------------------


def test_detect_block(server: ServerProcess, tmp_path: Path) -> None:
    """``driftlock detect --stream my-stream --json '{"value": 100}'`` and ``--file ./logs.jsonl``."""
    (tmp_path / "logs.jsonl").write_text(latencies(40, 1))
    single, from_file = commands("detect")
    env = cli_env(tmp_path, server.url)
    first = sh(single, tmp_path, env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("No anomalies in 1 event (stream my-stream).")
    assert "Calibrating: Collecting a baseline: detection starts after 450 events." in first.stdout
    second = sh(from_file, tmp_path, env)
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith("No anomalies in 40 events (stream logs).")
    assert (ingested(server, "my-stream"), ingested(server, "logs")) == (1, 40)


def test_testing_a_new_stream_as_the_page_walks_through_it(server: ServerProcess, tmp_path: Path) -> None:
    """Steps 1-4: three events then one anomaly is still the baseline (the engine needs 450 events) and
    the CLI says so; after a baseline, the same kind of anomaly prints the page's block."""
    events = next(b for b in BLOCKS["Testing a New Stream"] if b[0] == "json")[1]
    (tmp_path / "test-events.json").write_text(events + "\n")
    (feed,) = commands("Testing a New Stream", 0)
    (anomaly,) = commands("Testing a New Stream", 1)
    env = cli_env(tmp_path, server.url)
    fed = sh(feed, tmp_path, env)
    assert fed.returncode == 0 and fed.stdout.startswith("No anomalies in 3 events (stream test-stream).")
    sent = sh(anomaly, tmp_path, env)
    assert sent.returncode == 0, sent.stderr
    assert "Calibrating: Collecting a baseline: detection starts after 450 events. (4 so far)" in sent.stdout
    assert ingested(server, "test-stream") == 4

    (tmp_path / "baseline.jsonl").write_text(latencies(600, 2))
    (tmp_path / "spike.jsonl").write_text('{"latency": 5000}\n' * 30)
    assert sh("driftlock detect --stream test-stream --file baseline.jsonl", tmp_path, env).stdout.startswith(
        "No anomalies in 600 events"
    )
    found = sh("driftlock detect --stream test-stream --file spike.jsonl", tmp_path, env)
    assert found.returncode == 0, found.stderr
    verify = next(b for b in BLOCKS["Testing a New Stream"] if b[0] == "")[1].splitlines()
    assert verify[0] == "[ANOMALY DETECTED]" and found.stdout.startswith(verify[0] + "\nConfidence: 1.00\nWhy: ")
    assert '"latency":"<10000"' in found.stdout  # the why names the event unlike the baseline
    assert "[INCIDENT OPENED]" in found.stdout
    listed = server.get("/v1/anomalies", params={"stream_id": "test-stream"}).json()
    assert listed["total"] == found.stdout.count("[ANOMALY DETECTED]")


def test_ci_block_fails_the_job_on_a_regression(server: ServerProcess, tmp_path: Path) -> None:
    """The CI step's ``driftlock detect ... --fail-on-anomaly``: 0 while metrics look as before, 1 on a regression."""
    step = next(b for b in BLOCKS["CI/CD Integration"] if b[0] == "yaml")[1]
    (command,) = [line.strip() for line in step.splitlines() if line.strip().startswith("driftlock detect")]
    assert command == "driftlock detect --stream ci-performance --file metrics.jsonl --fail-on-anomaly"
    env = cli_env(tmp_path, server.url)
    (tmp_path / "metrics.jsonl").write_text(latencies(600, 3))
    assert sh(command, tmp_path, env).returncode == 0
    (tmp_path / "metrics.jsonl").write_text(latencies(40, 4))
    assert sh(command, tmp_path, env).returncode == 0
    (tmp_path / "metrics.jsonl").write_text(latencies(60, 5, around=2000))
    failed = sh(command, tmp_path, env)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "[ANOMALY DETECTED]" in failed.stdout


def test_history_block(server: ServerProcess, tmp_path: Path) -> None:
    """``driftlock history --stream payment-service --limit 10``: the stream's newest anomalies, as the API lists them."""
    env = cli_env(tmp_path, server.url)
    (tmp_path / "baseline.jsonl").write_text(latencies(600, 6))
    (tmp_path / "spike.jsonl").write_text('{"latency": 9000, "error": "card declined"}\n' * 150)
    for name in ("baseline", "spike"):
        assert sh(f"driftlock detect --stream payment-service --file {name}.jsonl", tmp_path, env).returncode == 0
    (command,) = commands("history")
    shown = sh(command, tmp_path, env)
    assert shown.returncode == 0, shown.stderr
    expected = server.get("/v1/anomalies", params={"stream_id": "payment-service", "limit": 10}).json()["anomalies"]
    assert len(expected) == 10
    rows = shown.stdout.splitlines()
    assert rows[0].split() == ["DETECTED", "AT", "STREAM", "CONFIDENCE", "P-VALUE", "WHY"]
    assert [row.split()[0] for row in rows[1:]] == [a["detected_at"] for a in expected]
    assert all(row.split()[1] == "payment-service" for row in rows[1:])
    as_json = json.loads(sh(command + " --output json", tmp_path, env).stdout)
    assert [a["id"] for a in as_json["anomalies"]] == [a["id"] for a in expected]


def test_config_block(server: ServerProcess, tmp_path: Path) -> None:
    """``driftlock config set output json``: from then on the commands print JSON; the file is the owner's only."""
    env = cli_env(tmp_path, server.url)
    (command,) = commands("config")
    done = sh(command, tmp_path, env)
    assert done.returncode == 0 and done.stdout.strip() == "output = json"
    assert sh("driftlock config get output", tmp_path, env).stdout.strip() == "json"
    result = json.loads(sh("driftlock detect --stream cfg --json '{\"value\": 1}'", tmp_path, env).stdout)
    assert result["stream_id"] == "cfg" and result["total_events"] == 1 and result["anomalies"] == []
    file = tmp_path / "config" / "driftlock" / "cli.json"
    assert json.loads(file.read_text()) == {"output": "json"}
    assert file.stat().st_mode & 0o777 == 0o600 and file.parent.stat().st_mode & 0o777 == 0o700
    assert sh("driftlock detect --stream cfg --json 1 --output text", tmp_path, env).stdout.startswith("No anomalies")
    bad = sh("driftlock config set output yaml", tmp_path, env)
    assert bad.returncode == 2 and "output must be one of text, json, got 'yaml'" in bad.stderr
    assert sh("driftlock config set base_url ftp://x", tmp_path, env).returncode == 2


def _login_on_a_terminal(command: str, cwd: Path, env: dict[str, str], key: str) -> tuple[int, str]:
    """Run ``command`` on a pseudo-terminal, type ``key`` at the prompt; (exit status, what the terminal showed)."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        ["bash", "-c", command],
        cwd=cwd,
        env=env,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        start_new_session=True,
    )
    os.close(terminal)
    shown = b""
    typed = False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the terminal closed: the program is done
                break
            if not chunk:
                break
            shown += chunk
        if not typed and b"Enter your API key:" in shown:
            os.write(controller, key.encode() + b"\n")
            typed = True
        if proc.poll() is not None and not ready:
            break
    os.close(controller)
    return proc.wait(10), shown.decode(errors="replace")


def test_authentication_block_prompts_and_stores_the_key_for_its_owner_only(tmp_path: Path) -> None:
    """``driftlock login`` / "Enter your API key when prompted", on a real terminal, against a serve that checks keys."""
    (command,) = commands("Authentication")
    with running_server(":memory:", "--api-key", KEY) as keyed:
        env = cli_env(tmp_path, keyed.url)
        refused, shown = _login_on_a_terminal(command, tmp_path, env, "dlk_wrong")
        assert refused == 2 and "the API refused this key; nothing was stored" in shown
        assert not (tmp_path / "config" / "driftlock" / "cli.json").exists()

        status, shown = _login_on_a_terminal(command, tmp_path, env, KEY)
        assert status == 0, shown
        assert KEY not in shown  # not echoed, not printed
        file = tmp_path / "config" / "driftlock" / "cli.json"
        assert json.loads(file.read_text())["api_key"] == KEY
        assert file.stat().st_mode & 0o777 == 0o600 and file.parent.stat().st_mode & 0o777 == 0o700

        # the stored key is used; DRIFTLOCK_API_KEY, "Or set the environment variable", wins over it
        assert sh("driftlock history --limit 1", tmp_path, env).returncode == 0
        wins = sh("driftlock history --limit 1", tmp_path, {**env, "DRIFTLOCK_API_KEY": "dlk_other"})
        assert (
            wins.returncode == 2 and "driftlock history: " in wins.stderr and "authentication failed" in wins.stderr
        ), wins.stderr
        assert KEY not in wins.stderr
        assert sh("driftlock history --limit 1", tmp_path, {**env, "DRIFTLOCK_API_KEY": KEY}).returncode == 0
        piped = sh("driftlock login", tmp_path, env, stdin=KEY + "\n")
        assert piped.returncode == 0 and KEY not in piped.stdout + piped.stderr


def test_help_lists_every_command(tmp_path: Path) -> None:
    shown = sh("driftlock --help", tmp_path, cli_env(tmp_path, None))
    assert shown.returncode == 0
    for command in ("serve", "detect", "stream", "history", "login", "config", "demo"):
        assert re.search(rf"^\s+{command}\s", shown.stdout, re.M), command


# -- beyond the page ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "setup", "message"),
    [
        ("driftlock detect --json '{\"value\": '", "", "--json: not valid JSON (Expecting value, column 11)"),
        ("driftlock detect --file events.jsonl", '{"a": 1}\n\n{"a": 2\n', "events.jsonl line 3: not valid JSON"),
        (
            "driftlock detect --file events.jsonl",
            '[{"a": 1},\n {"a": }]',
            "events.jsonl line 2: not a valid JSON array",
        ),
        ("driftlock detect --file events.jsonl", "\n\n", "events.jsonl holds no events"),
        ("driftlock detect --file missing.jsonl", "", "cannot read missing.jsonl: No such file or directory"),
        (
            "driftlock detect --file events.jsonl --format nginx",
            "GET / 200\n",
            "events.jsonl line 1: not an access log",
        ),
        ("driftlock detect", "", "give the events once"),
        ("driftlock detect --json 1 --file events.jsonl", "", "give the events once"),
    ],
)
def test_bad_input_is_an_error_that_names_the_problem(tmp_path: Path, command: str, setup: str, message: str) -> None:
    (tmp_path / "events.jsonl").write_text(setup)
    done = sh(command, tmp_path, cli_env(tmp_path, None))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("driftlock detect: ") and message in done.stderr, done.stderr


def test_an_unreachable_api_is_an_error(tmp_path: Path) -> None:
    done = sh("driftlock detect --json 1", tmp_path, cli_env(tmp_path, free_port_url(), DRIFTLOCK_MAX_RETRIES="0"))
    assert done.returncode == 2 and done.stderr.startswith("driftlock detect: ") and "Traceback" not in done.stderr


def test_the_embedded_engine_keeps_a_stream_between_runs(tmp_path: Path) -> None:
    """No key and no URL: the engine in process, over the machine's store, so runs add up."""
    env = cli_env(tmp_path, None)
    (tmp_path / "events.json").write_text(json.dumps([{"value": i % 5} for i in range(10)]))
    assert "(10 so far)" in sh("driftlock detect --stream local --file events.json", tmp_path, env).stdout
    assert "(11 so far)" in sh("driftlock detect --stream local --json '{\"value\": 1}'", tmp_path, env).stdout
    assert (tmp_path / "embedded.sqlite3").exists()


def test_the_earlier_form_detect_file_stream_id_still_works(server: ServerProcess, tmp_path: Path) -> None:
    (tmp_path / "events.jsonl").write_text(latencies(5, 7))
    done = sh(
        "driftlock detect events.jsonl --stream-id earlier --output json", tmp_path, cli_env(tmp_path, server.url)
    )
    assert done.returncode == 0 and json.loads(done.stdout)["total_events"] == 5
    assert ingested(server, "earlier") == 5


# -- stream: follows its input, bounded, and flushes when stopped ----------------------------------


class Piped:
    """``driftlock stream`` reading a pipe the test writes; the test keeps the pipe's read end too, to see
    when everything written has been read (FIONREAD) and the reader is blocked waiting for more."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self._read, write = os.pipe()
        self.proc = subprocess.Popen(
            [str(BIN / "driftlock"), "stream", *args], stdin=self._read, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=env, text=True,
        )  # fmt: skip
        self.stdin = os.fdopen(write, "wb")
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=lambda s=stream, k=sink: k.extend(s), daemon=True).start()

    def write(self, data: bytes) -> None:
        self.stdin.write(data)
        self.stdin.flush()

    def waiting(self) -> bool:
        """All written input read and handled: the pipe is empty and the main thread blocks in read()."""
        unread = array.array("i", [0])
        fcntl.ioctl(self._read, termios.FIONREAD, unread)
        if unread[0]:
            return False
        task = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}")
        wchan = (task / "wchan").read_text().strip()
        if wchan not in ("", "0"):
            return "pipe_read" in wchan
        # a kernel that hides wait channels: the main thread asleep in read(2) (syscall 0 on x86-64)
        return (task / "stat").read_text().rsplit(")", 1)[1].split()[0] == "S" and (
            task / "syscall"
        ).read_text().split()[0] == "0"

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]

    def finish(self, timeout: float = 30) -> int:
        if not self.stdin.closed:
            self.stdin.close()
        status = self.proc.wait(timeout)
        os.close(self._read)
        return status


@pytest.fixture
def piped(tmp_path: Path) -> Iterator[list[Piped]]:
    started: list[Piped] = []
    yield started
    for p in started:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait(10)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_stream_flushes_what_it_holds_when_stopped(
    server: ServerProcess, tmp_path: Path, piped: list[Piped], stop: signal.Signals
) -> None:
    """Ctrl-C (or SIGTERM) while ``tail -f`` is idle: what was read is sent before the command ends."""
    stream = f"stopped-{stop.name}"
    p = Piped(["--stream", stream, "--batch-size", "1000", "--flush-interval", "1000"], cli_env(tmp_path, server.url))
    piped.append(p)
    p.write(latencies(25, 8).encode())
    wait_for(p.waiting, timeout=20, message="the lines to be read")
    assert ingested(server, stream) == 0  # nothing is due: no full batch, the interval far away
    p.proc.send_signal(stop)
    assert p.proc.wait(30) == 0
    assert ingested(server, stream) == 25
    summary = "".join(p.err)
    assert "25 lines, 25 events sent to stream" in summary and "(interrupted)" in summary


def test_stream_sends_on_the_interval_while_the_input_is_idle(
    server: ServerProcess, tmp_path: Path, piped: list[Piped]
) -> None:
    p = Piped(["--stream", "interval", "--flush-interval", "0.5"], cli_env(tmp_path, server.url))
    piped.append(p)
    p.write(latencies(5, 9).encode())
    wait_for(lambda: ingested(server, "interval") == 5, timeout=20, message="the interval flush")
    p.write(latencies(3, 10).encode())
    wait_for(lambda: ingested(server, "interval") == 8, timeout=20, message="the next interval flush")
    assert p.finish() == 0


def test_stream_memory_stays_bounded_when_the_api_is_slower_than_the_input(tmp_path: Path, piped: list[Piped]) -> None:
    """A flood on stdin against an API that takes 0.3 s a batch: the buffer holds --max-buffered events, the
    oldest are dropped and counted, and the process does not grow with the input."""
    line = json.dumps({"level": "info", "message": "request served " + "x" * 200, "n": 1}) + "\n"
    with FaultServer(default=Reply(delay=0.3)) as slow:
        p = Piped(
            ["--stream", "flood", "--batch-size", "50", "--max-buffered", "500", "--flush-interval", "0.1",
             "--shutdown-timeout", "1"],
            cli_env(tmp_path, slow.url),
        )  # fmt: skip
        piped.append(p)
        p.write(line.encode() * 10_000)
        wait_for(p.waiting, timeout=60, message="the first 10,000 lines to be read")
        before = p.rss_kib()
        p.write(line.encode() * 60_000)
        wait_for(p.waiting, timeout=120, message="60,000 more lines to be read")
        grown = p.rss_kib() - before
        status = p.finish()
        batches = [len(seen.body["events"]) for seen in slow.seen if seen.path == "/v1/detect"]
    summary = "".join(p.err)
    dropped = int(re.search(r"(\d+) dropped \(buffer full\)", summary).group(1))  # type: ignore[union-attr]
    assert grown < 8 * 1024, f"grew {grown} KiB over 60,000 lines"  # unbounded: ~40 MiB for 60,000 events
    assert dropped > 60_000 and dropped + sum(batches) <= 70_000
    assert batches and max(batches) <= 50
    assert status == 1  # events were lost, and the exit status says so
    assert summary.count("holds at most 500 unsent events") <= 2  # reported, not once per line


def test_stream_reports_unreadable_lines_and_goes_on(server: ServerProcess, tmp_path: Path, piped: list[Piped]) -> None:
    p = Piped(["--stream", "mixed", "--format", "nginx"], cli_env(tmp_path, server.url))
    piped.append(p)
    good = '127.0.0.1 - - [06/Dec/2026:22:18:28 +0000] "GET /a HTTP/1.1" 200 5 "-" "curl/8.5.0"\n'
    p.write((good + "garbage\n" + good + "x" * 100_000 + "\n" + good).encode())
    assert p.finish() == 0
    summary = "".join(p.err)
    assert "line 2: not an access log line in the combined or common format: 'garbage'" in summary
    assert "line 4: longer than 65536 bytes: skipped" in summary
    assert "5 lines, 3 events sent" in summary and "2 unreadable" in summary
    assert ingested(server, "mixed") == 3


def test_stream_bad_options_are_errors(tmp_path: Path) -> None:
    done = sh("echo '{}' | driftlock stream --batch-size 0", tmp_path, cli_env(tmp_path, None))
    assert done.returncode == 2 and "--batch-size: must be more than 0, got 0" in done.stderr
    done = sh("echo '{}' | driftlock stream --format csv", tmp_path, cli_env(tmp_path, None))
    assert done.returncode == 2 and "invalid choice: 'csv'" in done.stderr


def test_stream_tells_each_anomaly_when_the_api_marks_no_incidents(tmp_path: Path, piped: list[Piped]) -> None:
    """An API older than incidents (a fault the local server cannot produce): no incident to print, so
    each anomaly is printed, in the page's block."""
    anomaly = {
        "index": 1, "metrics": {"ncd": 0.61, "p_value": 0.0, "confidence_level": 0.99},
        "why": "Significant deviation from recent pattern", "event": {"body": {"latency": 5000}},
    }  # fmt: skip
    with FaultServer(default=Reply(body={"success": True, "anomalies": [anomaly], "total_events": 2})) as old:
        p = Piped(["--stream", "old-api"], cli_env(tmp_path, old.url))
        piped.append(p)
        p.write(b'{"latency": 100}\n{"latency": 5000}\n')
        assert p.finish() == 0
    assert "".join(p.out) == (
        "[ANOMALY DETECTED]\nConfidence: 0.99\nWhy: Significant deviation from recent pattern\n"
        'Event 1: {"latency": 5000}\n'
    )
