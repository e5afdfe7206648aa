"""Replay recorded real-site runs through fresh ``driftlock serve`` processes and score them.

    python benchmarks/realsite/replay.py benchmarks/data/realsite/wagtail-a1.jsonl.gz
    python benchmarks/realsite/replay.py CORPUS... --src main=/work/main/src --src branch=/work/wt/engine/src
    python benchmarks/realsite/replay.py --tuning            # every recording not held out
    python benchmarks/realsite/replay.py --all --live       # every recording, with the live answers beside
    python benchmarks/realsite/replay.py --tuning --in-process   # no server: the service in process, ~10x faster

Each build is a source tree put first on PYTHONPATH of its own server (on a free loopback port, over a
temporary SQLite file), so builds are compared side by side in one run. The recorded bodies go in their
recorded order and batches, as fast as the server answers, one at a time (the recording's order is the
order the live server finished them). Event timestamps are the recorded ones. The server stamps wall time
on what it stores (detected_at, opened_ts), on mutes and on auto-tuning's cooldown, none of which this
replay exercises; incidents are decided on event positions, so replaying fast decides as live did.

``--in-process`` skips the server and its HTTP: each build's ``DetectionService`` (memory store) takes the
bodies in a child process of its own (PYTHONPATH=that tree). The answers are the same as through serve
(the same core), in seconds rather than minutes: the loop for trying an engine change."""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import score as scoring
from procs import Child, clean_env

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "benchmarks" / "data" / "realsite"


def _commit(src: Path) -> str:
    done = subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--", "."], capture_output=True, text=True)
    return (done.stdout.strip() or "?") + ("+dirty" if dirty.stdout.strip() else "")


def _detections(db: Path) -> list[scoring.Detection] | None:
    """Every window the server judged, from its store (None when the schema has no such table)."""
    try:
        with sqlite3.connect(db) as conn:
            rows = conn.execute(
                "SELECT stream_id, position, p_value, anomaly FROM detections ORDER BY rowid"
            ).fetchall()
    except sqlite3.Error:
        return None
    return [(str(s), int(pos), float(p), bool(a)) for s, pos, p, a in rows]


def replay(records: list[dict[str, Any]], src: Path, python: str) -> dict[str, Any]:
    """Send every recorded body to a fresh server running ``src``; its answers and detections."""
    with tempfile.TemporaryDirectory(prefix="realsite-replay-") as tmp:
        db = Path(tmp) / "serve.sqlite3"
        server = Child(
            [python, "-m", "driftlock", "serve", "--port", "0", "--db", str(db)],
            env=clean_env(PYTHONPATH=str(src)),
            name=f"driftlock serve ({src})",
        )
        with server:
            url = server.wait_for_url()
            answers: list[Any] = []
            started = time.perf_counter()
            with httpx.Client(base_url=url, timeout=120) as client:
                for record in records:
                    response = client.post("/v1/detect", json=record["body"])
                    answers.append(response.json() if response.status_code == 200 else None)
            seconds = time.perf_counter() - started
        return {"answers": answers, "detections": _detections(db), "seconds": seconds}


def replay_in_process(path: Path, src: Path, python: str) -> dict[str, Any]:
    """The same as :func:`replay`, with the service in a child process of ``src`` instead of a server."""
    done = subprocess.run(
        [python, str(Path(__file__).resolve()), "--in-process-worker", str(path)],
        env=clean_env(PYTHONPATH=str(src)),
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"in-process replay of {path.name} through {src} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _in_process_worker(path: Path) -> None:
    """Child of :func:`replay_in_process`: replay one recording through this tree's service, print JSON."""
    from driftlock.service import DetectionService

    records, _manifest = scoring.load_corpus(path)
    service = DetectionService()
    answers: list[Any] = []
    started = time.perf_counter()
    for record in records:
        try:
            answers.append(service.detect(record["body"], request_id="replay"))
        except Exception:  # what the server would have refused: scored as not accepted
            answers.append(None)
    seconds = time.perf_counter() - started
    streams = sorted({r["body"].get("stream_id") or "default" for r in records})
    detections = [
        (stream, d["position"], d["p_value"], d["anomaly"])
        for stream in streams
        for d in service.stream_timeline(stream, since_seconds=10**9)["detections"]
    ]
    print(json.dumps({"answers": answers, "detections": detections, "seconds": seconds}, default=str))


def main() -> None:
    if sys.argv[1:2] == ["--in-process-worker"]:
        _in_process_worker(Path(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", nargs="*", type=Path)
    parser.add_argument(
        "--src",
        action="append",
        default=[],
        metavar="[NAME=]PATH",
        help="a source tree to replay through (repeatable); default: this checkout's src",
    )
    parser.add_argument("--tuning", action="store_true", help="every recording whose manifest is not held out")
    parser.add_argument("--all", action="store_true", help="every recording, held-out ones too")
    parser.add_argument("--live", action="store_true", help="also score what the live server answered")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the servers (needs the server extra)")
    parser.add_argument("--jobs", type=int, default=2, help="servers run at once")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--in-process", action="store_true", help="no server: each build's service in a child process (faster)"
    )
    args = parser.parse_args()
    corpora = list(args.corpus)
    if args.tuning or args.all:
        for path in sorted(DATA.glob("*.jsonl.gz")):
            held = json.loads(scoring.manifest_of(path).read_text()).get("held_out")
            if args.all or not held:
                corpora.append(path)
    if not corpora:
        parser.error("name corpora, or --tuning, or --all")
    builds: list[tuple[str, Path]] = []
    for given in args.src or [f"this={REPO / 'src'}"]:
        name, _, path = given.rpartition("=")
        src = Path(path).resolve()
        if not (src / "driftlock" / "__init__.py").exists():
            parser.error(f"--src {given}: {src} has no driftlock package")
        builds.append((f"{name or src.parent.name}@{_commit(src)}", src))

    loaded = {path: scoring.load_corpus(path) for path in corpora}
    for path, (_records, manifest) in loaded.items():
        if manifest.get("held_out"):
            print(f"note: {path.name} is HELD OUT: report it, never tune on it", file=sys.stderr)
    jobs = [(path, build, src) for path in corpora for build, src in builds]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        if args.in_process:
            done = list(pool.map(lambda job: replay_in_process(job[0], job[2], args.python), jobs))
        else:
            done = list(pool.map(lambda job: replay(loaded[job[0]][0], job[2], args.python), jobs))
    rows: list[tuple[str, str, scoring.Score]] = []
    timings = []
    for (path, build, _src), result in zip(jobs, done, strict=True):
        records, manifest = loaded[path]
        if args.live:
            live = [r.get("answer") if r.get("status") == 200 else None for r in records]
            if not any(row[0] == scoring.stem(path) and row[1] == "live" for row in rows):
                rows.append(
                    (
                        scoring.stem(path),
                        "live",
                        scoring.score(records, live, manifest["phases"], scoring.live_detections(path)),
                    )
                )
        rows.append(
            (
                scoring.stem(path),
                build,
                scoring.score(records, result["answers"], manifest["phases"], result["detections"]),
            )
        )
        events = sum(len(r["body"].get("events") or []) for r in records)
        timings.append(
            f"{scoring.stem(path)} through {build}: {len(records)} calls, {events:,} events in"
            f" {result['seconds']:.1f} s"
        )
    if args.json:
        print(json.dumps([{"recording": r, "build": b, **s.to_json()} for r, b, s in rows], indent=1))
    else:
        print(scoring.table(rows))
        print()
        print("\n".join(timings))


if __name__ == "__main__":
    main()
