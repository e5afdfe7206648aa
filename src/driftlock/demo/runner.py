"""``driftlock demo``: the whole product on this machine, with no account.

It starts ``driftlock serve`` (the embedded engine, a temporary database) and the demo shop under
gunicorn on 127.0.0.1 with several worker processes, sends a seeded plan of ordinary traffic (visitors
in sessions, each with its cookies and CSRF token, at the plan's drifting pace) with labelled anomaly
episodes over a new connection per request (so the workers share the traffic, as they do behind a
real client mix), waits for the exporter to deliver every event, then scores what
the shop's processes were told: each worker's ON_ANOMALY writes the incidents it dispatches to a
file (:mod:`driftlock.demo.shop.alarms`), and those lines, not the server's list, are the alarms.
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
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from driftlock.demo import scenarios
from driftlock.demo.process import ListeningProcess
from driftlock.demo.scoring import Episode, Score, score
from driftlock.engine.explain import field_text
from driftlock.engine.settings import PROFILES
from driftlock.service.incidents import route_of

__all__ = ["DemoResult", "run"]

WINDOW = PROFILES["balanced"].window_size  # how long after an episode an alarm still counts for it
INTERLEAVE = 1.5
"""Seconds by which the stream at the server can be out of the order the traffic was sent in: each
worker's batch processor delivers its share once a second, so a window holds events of several
workers' seconds. An alarm counts for an episode when a worker was told of it after the episode
began, and the detection that opened it judged events sent no later than a window (plus this) after
the episode's end; otherwise it is false."""
MAX_REACH = 150
"""Never past the 200 ordinary requests between two episodes: an alarm counts for one episode."""
STREAM = "demo-shop"
CONCURRENCY = 4
WORKERS = 2


@dataclass
class Alarm:
    """One incident, as a worker of the shop was told of it."""

    index: int  # event position of the anomaly that opened it
    at: str
    routes: list[str]
    why: str  # the strongest signal
    unusual: list[str]  # the requests far more frequent than, or least like, the baseline
    ncd: float
    p_value: float
    confidence: float
    kind: str | None  # the episode it covers, None for a false alarm
    incident_id: str | None
    pid: int

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
    workers: int = WORKERS
    told_twice: int = 0  # incidents told by more than one line (should be none)
    opened_untold: int = 0  # incidents the service opened that no worker told (should be none)
    console_url: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "workers": self.workers,
            "requests": self.requests,
            "events": self.events,
            "seconds": round(self.seconds, 1),
            "episodes_found": self.score.found,
            "episodes_injected": len(self.score.episodes),
            "false_alarms": self.score.false_alarms,
            "told_twice": self.told_twice,
            "opened_untold": self.opened_untold,
            "console_url": self.console_url,
            "episodes": [
                {"kind": r.episode.kind, "found": r.found, "delay_events": r.delay} for r in self.score.episodes
            ],
            "alarms": [a.as_dict() for a in self.alarms],
        }


@contextmanager
def _services(workdir: Path, faults: Path, workers: int, embedded: bool) -> Iterator[tuple[httpx.Client, str]]:
    """(a client of the API the shop reports to, the shop's URL)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIFTLOCK_", "OTEL_"))}
    with ExitStack() as stack:
        shop_env = {
            **env,
            "DJANGO_SETTINGS_MODULE": "driftlock.demo.shop.settings",
            "DRIFTLOCK_DEMO_FAULTS": str(faults),
            "DRIFTLOCK_DEMO_ALARMS": str(workdir / "alarms.jsonl"),
            "OTEL_SERVICE_NAME": "demo-shop",
        }
        if embedded:
            from driftlock.service.embedded import EmbeddedTransport

            shop_env["DRIFTLOCK_EMBEDDED_DB"] = str(workdir / "embedded.sqlite3")
            api = httpx.Client(transport=EmbeddedTransport(workdir / "embedded.sqlite3"), base_url="http://embedded")
        else:
            server = ListeningProcess(
                [sys.executable, "-m", "driftlock", "serve", "--port", "0", "--db", str(workdir / "demo.sqlite3")],
                env,
                "driftlock serve",
            )
            stack.callback(server.stop)
            shop_env["DRIFTLOCK_BASE_URL"] = server.wait_for_url()
            api = httpx.Client(base_url=shop_env["DRIFTLOCK_BASE_URL"], timeout=30)
        stack.callback(api.close)
        shop = ListeningProcess(
            [sys.executable, "-m", "gunicorn", "driftlock.demo.shop.wsgi:application", "--bind", "127.0.0.1:0",
             "--workers", str(workers), "--threads", str(CONCURRENCY), "--graceful-timeout", "10",
             "--log-level", "info"],
            shop_env,
            "gunicorn",
        )  # fmt: skip
        stack.callback(shop.stop)
        yield api, shop.wait_for_url()


class _Pacer:
    """A request planned at ``at`` seconds leaves no earlier than ``start + at * scale``: the plan's
    ramp and its busier and quieter stretches, squeezed or stretched to the demo's duration."""

    def __init__(self, scale: float, first: float) -> None:
        self.scale = scale
        self.start = time.monotonic() - first * scale

    def wait(self, at: float) -> None:
        delay = self.start + at * self.scale - time.monotonic()
        if delay > 0:
            time.sleep(delay)


_TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@dataclass
class _Visitor:
    """One simulated visitor's session: its cookies, the CSRF token its login form gave it, and how
    many of its requests have been answered (its requests leave one after another, as a person's do)."""

    cookies: dict[str, str] = field(default_factory=dict)
    token: str = ""
    answered: int = 0
    turn: threading.Condition = field(default_factory=threading.Condition)


class _Sender:
    """Sends a plan's requests, each in its visitor's session (a fresh client's for none)."""

    def __init__(self, http: httpx.Client, pacer: _Pacer, phases: Sequence[scenarios.Phase]) -> None:
        self.http, self.pacer = http, pacer
        self.visitors: dict[int, _Visitor] = {}
        self.places: list[list[int]] = []  # per phase, each request's place among its visitor's requests
        count: Counter[int] = Counter()
        for phase in phases:
            self.places.append([])
            for request in phase.requests:
                if request.visitor is None:
                    self.places[-1].append(0)
                    continue
                self.visitors.setdefault(request.visitor, _Visitor())
                self.places[-1].append(count[request.visitor])
                count[request.visitor] += 1

    def send(self, request: scenarios.Request, place: int) -> float:
        self.pacer.wait(request.at)
        if request.visitor is None:
            return self._send(request, None)
        visitor = self.visitors[request.visitor]
        with visitor.turn:
            visitor.turn.wait_for(lambda: visitor.answered >= place, timeout=60)  # bounded: its previous request
        try:
            return self._send(request, visitor)
        finally:
            with visitor.turn:
                visitor.answered = place + 1
                visitor.turn.notify_all()

    def _send(self, request: scenarios.Request, visitor: _Visitor | None) -> float:
        sent = time.time()
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in visitor.cookies.items())} if visitor else {}
        try:
            if request.method == "POST":
                token = visitor.token if visitor else ""
                data = {k: token if v == scenarios.CSRF else v for k, v in (request.data or {}).items()}
                response = self.http.post(request.path, data=data, headers=headers)
            else:
                response = self.http.get(request.path, headers=headers)
        except httpx.HTTPError:
            return sent  # a failing shop is part of some episodes; the span records it
        if visitor is not None:
            visitor.cookies.update(response.cookies.items())
            if match := _TOKEN.search(response.text):
                visitor.token = match.group(1)
        return sent


def _set_fault(path: Path, fault: str | None) -> None:
    path.write_text(fault or "")
    stamp = time.time() + len(fault or "")  # a distinct mtime even within the filesystem's resolution
    os.utime(path, (stamp, stamp))


def _timestamp(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def compact(event: Any) -> str:
    """One event as ``GET search/ 200 <10ms q=...`` (its JSON when it is not a request)."""
    body = event.get("body") if isinstance(event, Mapping) else None
    if not isinstance(body, Mapping) or "route" not in body:
        return json.dumps(event, sort_keys=True, ensure_ascii=False)[:80]
    words = [str(body.get(k, "")) for k in ("method", "route", "status", "duration")]
    words += [str(body["error"])] if body.get("error") else []
    query = body.get("query")
    if isinstance(query, Mapping) and query:
        key, value = next(iter(query.items()))
        words.append(f"{key}={str(value)[:30]}")
    return " ".join(w for w in words if w)


def unusual(explanation: Mapping[str, Any]) -> list[str]:
    """What an explanation names: first the events far more frequent than in the baseline, with their
    counts (``POST login/ 401 <10ms: 20 of 50, was 1 of 400``), then field values the baseline rarely had
    (``duration <250ms: 15 of 50, was 0 of 400``), then the events least like the baseline."""
    out = [
        f"{compact(s['event'])}: {s['count']} of {s['window']}, was {s['baseline_count']} of {s['baseline']}"
        for s in explanation.get("surges", [])
    ]
    out += [
        f"{field_text(f['field'], f['value'])}: {f['count']} of {f['window']}, "
        f"was {f['baseline_count']} of {f['baseline']}"
        for f in explanation.get("fields", [])
    ]
    return out + [compact(item["event"]) for item in explanation.get("least_like", [])]


def run(
    seed: int = 1,
    duration: float = 60.0,
    progress: Any = None,
    *,
    workers: int = WORKERS,
    embedded: bool = False,
    phases: list[scenarios.Phase] | None = None,
    on_done: Callable[[DemoResult], Any] | None = None,
) -> DemoResult:
    """Run the demo; ``progress(done, total, label)`` is called as requests go out, and ``on_done``
    with the result while ``driftlock serve`` still runs on the demo's data (its console is
    ``result.console_url``)."""
    phases = phases if phases is not None else scenarios.plan(seed)
    total = sum(len(p.requests) for p in phases)
    events_expected = sum(1 for p in phases for r in p.requests if scenarios.is_event(r))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="driftlock-demo-") as tmp:
        workdir = Path(tmp)
        faults = workdir / "faults"
        _set_fault(faults, None)
        with _services(workdir, faults, workers, embedded) as (api, shop_url):
            planned = [r.at for p in phases for r in p.requests]
            pacer = _Pacer(duration / max(1e-9, max(planned) - min(planned)), min(planned))
            event_times: list[float] = []
            done = 0
            # no keep-alive: a new connection per request, so every worker takes a share
            limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=0)
            with (
                httpx.Client(base_url=shop_url, timeout=30, limits=limits, follow_redirects=False) as http,
                ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="demo-traffic") as pool,
            ):
                sender = _Sender(http, pacer, phases)
                for phase, places in zip(phases, sender.places, strict=True):
                    label = f"episode: {phase.kind.replace('_', ' ')}" if phase.kind else "ordinary traffic"
                    _set_fault(faults, phase.fault)
                    sent = list(pool.map(sender.send, phase.requests, places))
                    _set_fault(faults, None)
                    event_times += [t for t, r in zip(sent, phase.requests, strict=True) if scenarios.is_event(r)]
                    done += len(phase.requests)
                    if progress is not None:
                        progress(done, total, label)
            _wait_for_events(api, events_expected, progress)
            opened = _opened(api)
            lines = _told(workdir / "alarms.jsonl", opened, progress)
            told = dict.fromkeys(li["incident_id"] for li in lines)
            incidents = {i: api.get(f"/v1/incidents/{i}").json() for i in told}
            result = _result(seed, total, phases, event_times, lines, incidents, time.monotonic() - started)
            result.workers = workers
            result.opened_untold = len(set(opened) - {li["incident_id"] for li in lines})
            result.console_url = None if embedded else str(api.base_url.copy_with(path="/"))
            if on_done is not None:
                on_done(result)
    return result


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


def _opened(api: httpx.Client) -> list[str]:
    """The ids of the incidents the service opened (and told: muted ones are not) for the demo stream."""
    found: list[str] = []
    for _ in range(100):  # bounded: 100 pages of 100
        page = api.get("/v1/incidents", params={"stream_id": STREAM, "limit": 100, "offset": len(found)}).json()
        found += [i["id"] for i in page["incidents"] if i["status"] != "muted"]
        if not page["incidents"] or len(found) >= page["total"]:
            break
    return found


def _told(path: Path, opened: Sequence[str], progress: Any, timeout: float = 15.0) -> list[dict[str, Any]]:
    """The workers' alarm lines, once every incident the service opened has reached one (bounded wait:
    a handler runs right after its batch's answer, so this is at most an export's time)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [json.loads(li) for li in path.read_text().splitlines()] if path.exists() else []
        told = {li["incident_id"] for li in lines}
        if set(opened) <= told or time.monotonic() > deadline:
            return lines
        if progress is not None:
            progress(None, None, f"waiting for the workers' handlers: {len(told)} of {len(opened)} incidents told")
        time.sleep(0.1)


def _reach(order: Sequence[float], episode: Episode) -> int:
    """The last event an alarm for ``episode`` may have judged: a window past its end, then the events
    sent within INTERLEAVE seconds after that one (the traffic's own pace, busy or quiet)."""
    if not order:
        return episode.end + WINDOW
    last = order[min(episode.end + WINDOW, len(order) - 1)]
    return min(bisect.bisect_right(order, last + INTERLEAVE) - 1, episode.end + MAX_REACH)


def _result(
    seed: int,
    requests: int,
    phases: Sequence[scenarios.Phase],
    event_times: list[float],
    lines: list[dict[str, Any]],
    incidents: Mapping[str | None, Mapping[str, Any]],
    seconds: float,
) -> DemoResult:
    episodes = [Episode(kind, start, end) for kind, start, end in scenarios.episodes(list(phases))]
    order = sorted(event_times)
    normal = len(order) - sum(e.end - e.start + 1 for e in episodes)
    reach = {e: _reach(order, e) for e in episodes}
    alarms = []
    for line in lines:
        told = max(0, bisect.bisect_right(order, float(line["told_at"])) - 1)  # events sent before it was told
        judged = max(0, bisect.bisect_right(order, _timestamp(line["at"])) - 1)  # the event that triggered it
        episode = next((e for e in reversed(episodes) if e.start <= told and judged <= reach[e]), None)
        # placed inside the episode's reach when it covers one, else where it was told
        position = max(episode.start, min(judged, episode.end + WINDOW)) if episode else told
        explanation = (incidents.get(line["incident_id"]) or {}).get("explanation") or line["explanation"]
        routes = list(explanation.get("routes") or [])
        if not routes:
            routes = [r for s in explanation.get("surges", []) if (r := route_of(s["event"]))]
        alarms.append(
            Alarm(
                index=position,
                at=line["at"],
                routes=[r.split(" ", 1)[-1] for r in routes][:4],
                why=str(explanation.get("headline") or line["why"].split(", p=")[0].removeprefix("Anomalous window: ")),
                unusual=unusual(explanation)[:3],
                ncd=float(line["ncd"]),
                p_value=float(line["p_value"]),
                confidence=float(line["confidence"]),
                kind=episode.kind if episode else None,
                incident_id=line["incident_id"],
                pid=int(line["pid"]),
            )
        )
    alarms.sort(key=lambda a: a.index)
    result = score(episodes, [a.index for a in alarms], window=WINDOW, normal_events=normal)
    counts = Counter(a.incident_id for a in alarms)
    twice = sum(1 for n in counts.values() if n > 1)
    return DemoResult(seed, requests, len(order), seconds, alarms, result, told_twice=twice)


def render(result: DemoResult) -> None:
    """The table of detections and the score line, with rich."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(
        title=f"Incidents in stream {STREAM!r}, as the shop's {result.workers} worker processes were told",
        show_lines=True,
    )
    for column in ("time", "worker", "episode", "routes involved", "why", "NCD", "p", "conf."):
        table.add_column(column, overflow="fold")
    for alarm in result.alarms:
        table.add_row(
            alarm.at[11:19],
            f"pid {alarm.pid}",
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
        f"({result.seconds:.0f} s), {result.workers} workers; "
        + ("each incident told once." if not result.told_twice else f"{result.told_twice} incidents told twice!")
        + (f" Missed: {', '.join(missed)}." if missed else "")
    )


def _keep(result: DemoResult) -> None:
    """Keep ``driftlock serve`` running on the demo's data until Ctrl-C (``--keep``)."""
    print(f"driftlock serve keeps running on the demo's data: {result.console_url} (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


def main(seed: int, duration: float, as_json: bool, workers: int = WORKERS, keep: bool = False) -> int:
    if as_json:
        result = run(seed, duration, workers=workers, on_done=_keep if keep else None)
        print(json.dumps(result.as_dict(), indent=2))
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

        shown: list[DemoResult] = []

        def done(result: DemoResult) -> None:
            bar.stop()
            render(result)
            shown.append(result)
            if keep:
                _keep(result)

        result = run(seed, duration, progress, workers=workers, on_done=done)
    if not shown:
        render(result)
    if not keep and result.console_url:
        print(f"The console showed these at {result.console_url} while the demo ran; "
              "`driftlock demo --keep` keeps it running to click through.")  # fmt: skip
    return 0
