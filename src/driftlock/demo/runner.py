"""``driftlock demo``: the whole product on this machine, with no account.

It starts ``driftlock serve`` (the embedded engine, a temporary database) and the demo shop under
gunicorn on 127.0.0.1, sends a seeded plan of ordinary traffic with labelled anomaly episodes, waits
for the exporter to deliver every event, then shows what was detected and scores it.
"""

from __future__ import annotations

import bisect
import json
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from driftlock.alarms import DEFAULT_CONFIRMATIONS, raised
from driftlock.demo import scenarios
from driftlock.demo.process import ListeningProcess
from driftlock.demo.scoring import Episode, Score, score

__all__ = ["DemoResult", "run"]

WINDOW = 50  # the balanced profile's window: how long after an episode an alarm still counts for it
CONFIRMATIONS = DEFAULT_CONFIRMATIONS  # the exporter's: anomalous detections within a window before an alarm
STREAM = "demo-shop"
CONCURRENCY = 4


@dataclass
class Alarm:
    """One incident, as the exporter raises it: confirmed, once."""

    index: int  # event position of the detection that raised it
    at: str
    routes: list[str]
    why: str  # the strongest signal
    unusual: list[str]  # the requests far more frequent than, or least like, the baseline
    ncd: float
    p_value: float
    confidence: float
    kind: str | None  # the episode it covers, None for a false alarm

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class DemoResult:
    seed: int
    requests: int
    events: int
    seconds: float
    alarms: list[Alarm]
    score: Score

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "requests": self.requests,
            "events": self.events,
            "seconds": round(self.seconds, 1),
            "episodes_found": self.score.found,
            "episodes_injected": len(self.score.episodes),
            "false_alarms": self.score.false_alarms,
            "episodes": [
                {"kind": r.episode.kind, "found": r.found, "delay_events": r.delay} for r in self.score.episodes
            ],
            "alarms": [a.as_dict() for a in self.alarms],
        }


@contextmanager
def _services(workdir: Path, faults: Path) -> Iterator[tuple[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIFTLOCK_", "OTEL_"))}
    with ExitStack() as stack:
        server = ListeningProcess(
            [sys.executable, "-m", "driftlock", "serve", "--port", "0", "--db", str(workdir / "demo.sqlite3")],
            env,
            "driftlock serve",
        )
        stack.callback(server.stop)
        server_url = server.wait_for_url()
        shop_env = {
            **env,
            "DJANGO_SETTINGS_MODULE": "driftlock.demo.shop.settings",
            "DRIFTLOCK_BASE_URL": server_url,
            "DRIFTLOCK_DEMO_FAULTS": str(faults),
            "OTEL_SERVICE_NAME": "demo-shop",
        }
        shop = ListeningProcess(
            [sys.executable, "-m", "gunicorn", "driftlock.demo.shop.wsgi:application", "--bind", "127.0.0.1:0",
             "--workers", "2", "--threads", str(CONCURRENCY), "--graceful-timeout", "10", "--log-level", "info"],
            shop_env,
            "gunicorn",
        )  # fmt: skip
        stack.callback(shop.stop)
        yield server_url, shop.wait_for_url()


class _Pacer:
    """Request ``i`` leaves no earlier than ``start + i * interval``: steady traffic, whatever the pool."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.start = time.monotonic()
        self.count = 0
        self.lock = threading.Lock()

    def wait(self) -> None:
        with self.lock:
            slot = self.start + self.count * self.interval
            self.count += 1
        delay = slot - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def _send(http: httpx.Client, pacer: _Pacer, request: scenarios.Request) -> float:
    pacer.wait()
    sent = time.time()
    try:
        if request.method == "POST":
            http.post(request.path, data=request.data)
        else:
            http.get(request.path)
    except httpx.HTTPError:
        pass  # a failing shop is part of some episodes; the span records it
    return sent


def _set_fault(path: Path, fault: str | None) -> None:
    path.write_text(fault or "")
    stamp = time.time() + len(fault or "")  # a distinct mtime even within the filesystem's resolution
    os.utime(path, (stamp, stamp))


def _timestamp(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


_FIELD = {
    "method": re.compile(r'"method":"([A-Z]+)"'),
    "route": re.compile(r'"route":"([^"…]+)"'),
    "status": re.compile(r'"status":(\d+)'),
    "duration": re.compile(r'"duration":"([^"]+)"'),
    "error": re.compile(r'"error":"([^"…]+)"'),
    "query": re.compile(r'"query":\{"[^"]+":"((?:[^"\\]|\\.)*)'),  # a JSON string, escapes and all
}


_COUNTS = re.compile(r"\((\d+) of (\d+) events, (\d+) of (\d+) before\)")


def _unescape(text: str) -> str:
    try:
        value = json.loads(f'"{text}"')
    except ValueError:  # cut inside an escape by describe()'s width
        return text
    return value if isinstance(value, str) else text


def _compact(snippet: str) -> str | None:
    """One described event as ``GET search/ 200 <10ms q=...``; None when it names no route."""
    found = {k: m.group(1) for k, rx in _FIELD.items() if (m := rx.search(snippet))}
    if "route" not in found:
        return None
    words = [found.get("method", ""), found["route"], found.get("status", ""), found.get("duration", "")]
    words += [found["error"]] if "error" in found else []
    words += [f"q={_unescape(found['query'])[:30]}"] if "query" in found else []
    return " ".join(w for w in words if w)


def unusual(why: str) -> list[str]:
    """The events a ``why`` names: first those far more frequent than in the baseline, with their
    counts (``POST login/ 401 <10ms: 20 of 50, was 1 of 400``), then those least like the baseline."""
    rest, _, least = why.partition("; least like the baseline: ")
    _, _, frequent = rest.partition("far more frequent than in the baseline: ")
    out = []
    for snippet in frequent.split("; {") if frequent else []:
        event, counts = _compact(snippet), _COUNTS.search(snippet)
        if event and counts:
            out.append(f"{event}: {counts[1]} of {counts[2]}, was {counts[3]} of {counts[4]}")
    for snippet in least.split("; {") if least else []:
        if event := _compact(snippet):
            out.append(event)
    return out


def run(seed: int = 1, duration: float = 60.0, progress: Any = None) -> DemoResult:
    """Run the demo; ``progress(done, total, label)`` is called as requests go out."""
    phases = scenarios.plan(seed)
    total = sum(len(p.requests) for p in phases)
    events_expected = sum(1 for p in phases for r in p.requests if scenarios.is_event(r))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="driftlock-demo-") as tmp:
        workdir = Path(tmp)
        faults = workdir / "faults"
        _set_fault(faults, None)
        with _services(workdir, faults) as (server_url, shop_url):
            pacer = _Pacer(duration / total)
            event_times: list[float] = []
            done = 0
            limits = httpx.Limits(max_connections=CONCURRENCY)
            with (
                httpx.Client(base_url=shop_url, timeout=30, limits=limits, follow_redirects=False) as http,
                ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="demo-traffic") as pool,
            ):
                for phase in phases:
                    label = f"episode: {phase.kind.replace('_', ' ')}" if phase.kind else "ordinary traffic"
                    _set_fault(faults, phase.fault)
                    sent = list(pool.map(lambda r: _send(http, pacer, r), phase.requests))
                    _set_fault(faults, None)
                    event_times += [t for t, r in zip(sent, phase.requests, strict=True) if scenarios.is_event(r)]
                    done += len(phase.requests)
                    if progress is not None:
                        progress(done, total, label)
            with httpx.Client(base_url=server_url, timeout=30) as api:
                _wait_for_events(api, events_expected, progress)
                details = _anomalies(api)
    return _result(seed, total, phases, event_times, details, time.monotonic() - started)


def _wait_for_events(api: httpx.Client, expected: int, progress: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = api.get(f"/v1/streams/{STREAM}")
        got = response.json().get("events_ingested", 0) if response.status_code == 200 else 0
        if progress is not None:
            progress(None, None, f"exporting: {got} of {expected} events at the server")
        if got >= expected:
            return
        time.sleep(0.2)


def _anomalies(api: httpx.Client, most: int = 5000) -> list[dict[str, Any]]:
    """Every anomaly of the demo stream, in detail, 200 to a page (bounded)."""
    summaries: list[dict[str, Any]] = []
    while len(summaries) < most:
        response = api.get("/v1/anomalies", params={"stream_id": STREAM, "limit": 200, "offset": len(summaries)})
        response.raise_for_status()
        page = response.json()
        summaries += page["anomalies"]
        if not page["anomalies"] or len(summaries) >= page["total"]:
            break
    return [api.get(f"/v1/anomalies/{a['id']}").raise_for_status().json() for a in summaries]


def _result(
    seed: int,
    requests: int,
    phases: Sequence[scenarios.Phase],
    event_times: list[float],
    details: list[dict[str, Any]],
    seconds: float,
) -> DemoResult:
    episodes = [Episode(kind, start, end) for kind, start, end in scenarios.episodes(list(phases))]
    order = sorted(event_times)
    located = sorted(
        ((max(0, bisect.bisect_right(order, _timestamp(d["event"]["timestamp"])) - 1), d) for d in details),
        key=lambda pair: pair[0],
    )
    normal = len(order) - sum(e.end - e.start + 1 for e in episodes)
    detections = [(i, d["metrics"]["p_value"]) for i, d in located]
    positions = raised(detections, confirmations=CONFIRMATIONS, window=WINDOW)
    result = score(episodes, positions, window=WINDOW, normal_events=normal)
    alarms = []
    by_index = dict(located)
    for position in positions:
        detail = by_index[position]
        incident = [d for i, d in located if position - WINDOW <= i <= position + WINDOW]
        described = list(dict.fromkeys(u for d in incident for u in unusual(d.get("why") or "")))
        m = detail["metrics"]
        alarms.append(
            Alarm(
                index=position,
                at=detail["event"]["timestamp"],
                routes=list(dict.fromkeys(u.split()[1] for u in described))[:4],
                why=detail["why"].split(", p=")[0].removeprefix("Anomalous window: "),
                unusual=described[:3],
                ncd=m["ncd"],
                p_value=m["p_value"],
                confidence=m["confidence_level"],
                kind=next((e.kind for e in episodes if e.covers(position, WINDOW)), None),
            )
        )
    return DemoResult(seed, requests, len(order), seconds, alarms, result)


def render(result: DemoResult) -> None:
    """The table of detections and the score line, with rich."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"Driftlock detections in stream {STREAM!r}", show_lines=True)
    for column in ("time", "stream", "episode", "routes involved", "why", "NCD", "p", "conf."):
        table.add_column(column, overflow="fold")
    for alarm in result.alarms:
        table.add_row(
            alarm.at[11:19],
            STREAM,
            alarm.kind.replace("_", " ") if alarm.kind else "[red]false alarm[/red]",
            "\n".join(alarm.routes),
            f"{alarm.why}:\n" + "\n".join(alarm.unusual),
            f"{alarm.ncd:.2f}",
            f"{alarm.p_value:.3f}",
            f"{alarm.confidence:.0%}",
        )
    console.print(table)
    s = result.score
    missed = [r.episode.kind.replace("_", " ") for r in s.episodes if not r.found]
    colour = "green" if not missed and not s.false_alarms else "yellow"
    console.print(
        f"[bold {colour}]Found {s.found} of {len(s.episodes)} anomaly episodes, {s.false_alarms} false alarm"
        f"{'' if s.false_alarms == 1 else 's'}[/] in {result.events} events from {result.requests} requests "
        f"({result.seconds:.0f} s)." + (f" Missed: {', '.join(missed)}." if missed else "")
    )


def main(seed: int, duration: float, as_json: bool) -> int:
    if as_json:
        print(json.dumps(run(seed, duration).as_dict(), indent=2))
        return 0
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description:<40}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn()) as bar:  # fmt: skip
        task = bar.add_task("starting driftlock serve and the shop", total=None)

        def progress(done: int | None, total: int | None, label: str) -> None:
            if done is None:
                bar.update(task, description=label)
            else:
                bar.update(task, completed=done, total=total, description=label)

        result = run(seed, duration, progress)
    render(result)
    return 0
