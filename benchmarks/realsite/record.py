"""Record one run of a real site: gunicorn + Locust visitors + real attack tools, every detect body the
site's exporter sends kept (through the recording proxy) with the phase in force, and a manifest.

    python benchmarks/realsite/record.py wagtail --run a1
    python benchmarks/realsite/record.py spirit --run b1 --held-out

Writes benchmarks/data/realsite/<app>-<run>.jsonl.gz and <app>-<run>.manifest.json. The live server is a
real ``driftlock serve`` of this checkout; its answers are in the corpus (``answer``) and its detections
(every window's p-value) in the manifest's sibling <app>-<run>.live.json.gz, for ``score.py --live``."""

from __future__ import annotations

import argparse
import gzip
import json
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import attacks
from common import CACHE, LOCUST_VENV, REPO
from procs import Child, clean_env
from proxy import RecordingProxy

HERE = Path(__file__).resolve().parent
DATA = REPO / "benchmarks" / "data" / "realsite"
ACCESS = re.compile(r'^\[([^\]]+)\] "(\S+) (\S+)[^"]*" (\d+) "([^"]*)"')
VISITOR_AGENT = "python-requests"  # Locust's HttpUser; every tool sends its own


def _wait_ok(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer 200 within {timeout}s")


def _hold(seconds: float, children: list[Child]) -> None:
    """Wait through a quiet stretch; fail early if the site or the visitors die."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for child in children:
            if child.proc.poll() is not None:
                raise RuntimeError(f"{child.name} exited during the run:\n" + "".join(child.output[-30:]))
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def _access_counts(log: Path, phases: list[dict[str, Any]]) -> None:
    """Requests per phase from gunicorn's access log: visitors (Locust) and the tool apart."""
    for phase in phases:
        phase["requests"] = {"visitors": 0, "tool": 0}
    for line in log.read_text(errors="replace").splitlines():
        found = ACCESS.match(line)
        if not found:
            continue
        at = datetime.strptime(found.group(1), "%d/%b/%Y:%H:%M:%S %z").timestamp()
        for phase in phases:
            if phase["start"] - 1 <= at < phase["end"]:
                who = "visitors" if found.group(5).startswith(VISITOR_AGENT) else "tool"
                phase["requests"][who] += 1
                break


def _live_detections(db: Path) -> dict[str, Any]:
    """What the live server decided: every detection (position, p) and every incident it opened."""
    with sqlite3.connect(db) as conn:
        detections = conn.execute(
            "SELECT stream_id, position, ncd, p_value, anomaly, at FROM detections ORDER BY stream_id, position"
        ).fetchall()
        incidents = [json.loads(r[0]) for r in conn.execute("SELECT record FROM incidents ORDER BY opened_ts")]
    return {"detections": detections, "incidents": incidents}


def _version(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (done.stdout + done.stderr).strip().splitlines()[0][:120] if (done.stdout + done.stderr).strip() else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("app", help="an application set up by setup_<app>.py (wagtail, spirit)")
    parser.add_argument("--run", required=True, help="the recording's name, e.g. a1")
    parser.add_argument("--held-out", action="store_true", help="mark the recording as held out (never tune on it)")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--users", type=int, default=25)
    parser.add_argument("--spawn-rate", type=float, default=0.5, help="users started per second (the ramp-up)")
    parser.add_argument("--wait", type=float, default=1.2, help="a visitor's mean think time, seconds")
    parser.add_argument("--quiet-before", type=float, default=450)
    parser.add_argument("--between", type=float, default=90)
    parser.add_argument("--after", type=float, default=180)
    parser.add_argument("--tools", default="ffuf,sqlmap,hydra,hydra-csrf,wapiti")
    parser.add_argument("--serve-python", default=str(REPO / ".venv" / "bin" / "python"))
    args = parser.parse_args()
    tools = args.tools.split(",")
    unknown = [t for t in tools if t not in attacks.TOOLS]
    if unknown:
        parser.error(f"unknown tool(s) {', '.join(unknown)}: choose from {', '.join(attacks.TOOLS)}")
    site_file = CACHE / args.app / "site.json"
    site = json.loads(site_file.read_text())
    app_python = CACHE / args.app / "bin" / "python"
    name = f"{args.app}-{args.run}"
    work = CACHE / args.app / "runs" / args.run
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    DATA.mkdir(parents=True, exist_ok=True)
    raw = work / "corpus.jsonl"
    phases: list[dict[str, Any]] = []

    serve = Child(
        [args.serve_python, "-m", "driftlock", "serve", "--port", "0", "--db", str(work / "serve.sqlite3")],
        env=clean_env(PYTHONPATH=str(REPO / "src")),
        name="driftlock serve",
    )
    serve_url = serve.wait_for_url()
    proxy = RecordingProxy(raw, serve_url).__enter__()
    gunicorn = Child(
        [
            str(app_python.parent / "gunicorn"),
            site["wsgi"],
            "-w",
            str(args.workers),
            "-b",
            "127.0.0.1:0",
            "--timeout",
            "60",
            "--access-logfile",
            str(work / "access.log"),
            "--access-logformat",
            '%(t)s "%(r)s" %(s)s "%(a)s"',
        ],
        env=clean_env(DJANGO_SETTINGS_MODULE=site["settings"], REALSITE_DRIFTLOCK_URL=proxy.url),
        cwd=Path(site["project"]),
        name="gunicorn",
    )
    children = [serve, gunicorn]
    try:
        site_url = gunicorn.wait_for_url()
        _wait_ok(site_url + "/")
        started = time.time()
        locust = Child(
            [
                str(LOCUST_VENV / "bin" / "locust"),
                "-f",
                str(HERE / "locustfile.py"),
                "--headless",
                "--users",
                str(args.users),
                "--spawn-rate",
                str(args.spawn_rate),
                "--host",
                site_url,
                "--csv",
                str(work / "locust"),
                "--only-summary",
                "--stop-timeout",
                "5",
            ],
            env=clean_env(REALSITE_SITE=str(site_file), REALSITE_WAIT=str(args.wait)),
            name="locust",
        )
        children.append(locust)

        def quiet(seconds: float) -> None:
            proxy.recorder.set_phase("quiet")
            phase = {"name": "quiet", "kind": "quiet", "start": time.time()}
            _hold(seconds, children)
            phase["end"] = time.time()
            phases.append(phase)
            print(
                f"{name}: quiet {phase['end'] - phase['start']:.0f} s, {proxy.recorder.events} events so far",
                flush=True,
            )

        quiet(args.quiet_before)
        for n, tool in enumerate(tools):
            cmd = attacks.command(tool, site_url, site, work)
            proxy.recorder.set_phase(tool)
            phase = {"name": tool, "kind": "attack", "start": time.time(), "command": cmd}
            with (work / f"{tool}.log").open("w") as out:
                done = subprocess.run(
                    cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=work, timeout=150
                )
            phase.update(end=time.time(), exit=done.returncode)
            phases.append(phase)
            print(f"{name}: {tool} {phase['end'] - phase['start']:.0f} s, exit {done.returncode}", flush=True)
            quiet(args.between if n < len(tools) - 1 else args.after)
        locust.stop(timeout=30, sig=signal.SIGINT)
        ended = time.time()
    finally:
        for child in reversed(children):
            child.stop(timeout=60)
        time.sleep(1)
        proxy.__exit__(None, None, None)
        (work / "gunicorn.log").write_text("".join(gunicorn.output))
        live = _live_detections(work / "serve.sqlite3")
        serve.stop()
    _access_counts(work / "access.log", phases)
    with raw.open("rb") as src, gzip.open(DATA / f"{name}.jsonl.gz", "wb", compresslevel=9) as dst:
        shutil.copyfileobj(src, dst)
    with gzip.open(DATA / f"{name}.live.json.gz", "wt", compresslevel=9) as out:
        json.dump(live, out, separators=(",", ":"))
    locust_stats = work / "locust_stats.csv"
    manifest = {
        "name": name,
        "app": args.app,
        "held_out": args.held_out,
        "use": "held out: never tune on it" if args.held_out else "tuning",
        "workers": args.workers,
        "users": args.users,
        "spawn_rate": args.spawn_rate,
        "wait": args.wait,
        "started": started,
        "ended": ended,
        "phases": phases,
        "detect_calls": proxy.recorder.calls,
        "events": proxy.recorder.events,
        "locust_stats": locust_stats.read_text() if locust_stats.exists() else None,
        "versions": {
            "app": _version([str(app_python), "-m", "pip", "show", site.get("package", args.app)]),
            "driftlock": _version(["git", "-C", str(REPO), "rev-parse", "HEAD"]),
            **{
                t: _version(v)
                for t, v in {
                    "ffuf": ["ffuf", "-V"],
                    "sqlmap": ["sqlmap", "--version"],
                    "hydra": ["hydra", "-h"],
                    "wapiti": ["wapiti", "--version"],
                    "gobuster": ["gobuster", "version"],
                }.items()
            },
        },
    }
    (DATA / f"{name}.manifest.json").write_text(json.dumps(manifest, indent=1))
    print(f"{name}: {proxy.recorder.calls} detect calls, {proxy.recorder.events} events -> {DATA}/{name}.*")


if __name__ == "__main__":
    main()
