"""The real-site benchmark's scorer on small hand-made corpora (benchmarks/realsite/score.py)."""

from __future__ import annotations

import gzip
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks" / "realsite"))

import score as scoring  # noqa: E402

T0 = 1_800_000_000.0
PHASES = [
    {"name": "quiet", "kind": "quiet", "start": T0, "end": T0 + 100},
    {"name": "ffuf", "kind": "attack", "start": T0 + 100, "end": T0 + 110},
    {"name": "quiet", "kind": "quiet", "start": T0 + 110, "end": T0 + 200},
    {"name": "sqlmap", "kind": "attack", "start": T0 + 200, "end": T0 + 220},
    {"name": "quiet", "kind": "quiet", "start": T0 + 220, "end": T0 + 400},
]


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


def corpus(
    times: list[float], opened: dict[float, str] | None = None, resolved: dict[float, str] | None = None
) -> tuple[list[dict[str, Any]], list[Any]]:
    """One batch of 10 events a second at each time; answers open/resolve the named incidents there."""
    records, answers = [], []
    for at in times:
        events = [{"type": "trace", "timestamp": iso(at - 1 + k / 10), "body": {"route": "/"}} for k in range(10)]
        records.append({"t": at, "phase": "?", "body": {"stream_id": "s", "events": events}})
        changes = []
        if opened and at in opened:
            changes.append({"id": opened[at], "change": "opened"})
        if resolved and at in resolved:
            changes.append({"id": resolved[at], "change": "resolved"})
        anomalies = [{"index": 0}] if changes and changes[0]["change"] == "opened" else []
        answers.append({"success": True, "anomalies": anomalies, "incidents": changes})
    return records, answers


def every_second(start: float = 1, stop: float = 400) -> list[float]:
    return [T0 + s for s in range(int(start), int(stop))]


def test_a_false_incident_in_quiet_is_counted_per_quiet_requests_and_hour() -> None:
    records, answers = corpus(every_second(), opened={T0 + 50: "a"})
    s = scoring.score(records, answers, PHASES, None)
    assert s.false_incidents == 1
    # attacks and their 30 s tails cover [100, 140] and [200, 250]: 91 s; events carry their own times
    busy = sum(
        1
        for r in records
        for e in r["body"]["events"]
        if scoring._attack_of(
            scoring._timestamp(e, 0), [p for p in PHASES if p["kind"] == "attack"], scoring.ATTRIBUTION
        )
        is not None
    )
    assert 900 <= busy <= 904  # events stamped in [100, 140] and [200, 250]: 401 + 501, give or take an end
    assert s.quiet_events == 3990 - busy
    assert s.per_10k() == pytest.approx(10_000 / s.quiet_events)
    assert s.quiet_hours == pytest.approx((398.9 - 90) / 3600, rel=1e-4)
    assert all(not a.told for a in s.attacks)


def test_an_incident_just_past_the_attribution_window_is_false() -> None:
    inside = scoring.score(*corpus(every_second(), opened={T0 + 140: "a"}), PHASES, None)
    outside = scoring.score(*corpus(every_second(), opened={T0 + 141: "a"}), PHASES, None)
    assert (inside.false_incidents, inside.attacks[0].incidents) == (0, 1)
    assert (outside.false_incidents, outside.attacks[0].incidents) == (1, 0)


def test_an_attack_told_twice_is_counted_twice_and_first_alarm_is_from_the_tool_start() -> None:
    records, answers = corpus(every_second(), opened={T0 + 104: "a", T0 + 115: "b"}, resolved={T0 + 112: "a"})
    s = scoring.score(records, answers, PHASES, None)
    ffuf, sqlmap = s.attacks
    assert (ffuf.told, ffuf.incidents, ffuf.first_alarm) == (True, 2, pytest.approx(4.0))
    assert ffuf.anomalies == 2
    assert (sqlmap.told, sqlmap.incidents, sqlmap.first_alarm) == (False, 0, None)  # missed
    assert s.false_incidents == 0
    table = scoring.table([("r", "b", s)])
    assert "| r | b | ffuf | 2 | 4.0 | 2 |" in table
    assert "| 1/2 | 0/2 |" in table  # one attack told, none told exactly once


def test_an_attack_that_starts_while_an_earlier_incident_is_open_is_swallowed() -> None:
    records, answers = corpus(every_second(), opened={T0 + 99: "early"}, resolved={T0 + 130: "early"})
    s = scoring.score(records, answers, PHASES, None)
    assert s.false_incidents == 1
    assert s.attacks[0].swallowed_by == "early" and not s.attacks[0].told
    assert s.attacks[1].swallowed_by is None


def test_ordinary_detections_exclude_windows_with_an_attack_event_and_shares_are_right() -> None:
    records, answers = corpus(every_second())
    # event k (from 0) is stamped T0 + k/10: positions 1000..1100 are inside the ffuf's [100, 110]
    marks = [e.position for e in scoring.events_of(records, answers) if T0 + 100 <= e.at <= T0 + 110]
    assert marks[0] in (1000, 1001) and marks[-1] in (1099, 1100)
    detections: list[scoring.Detection] = [
        ("s", 100, 0.0, True),  # ordinary, p = 0
        ("s", 200, 0.004, True),  # ordinary, p <= 0.01
        ("s", 300, 0.03, False),  # ordinary, p <= 0.05
        ("s", 400, 0.5, False),  # ordinary
        ("s", 990, 0.0, True),  # window ends just before the attack: ordinary
        ("s", 1010, 0.0, True),  # holds attack events
        ("s", 1140, 0.0, True),  # window 1091..1140 still holds the last ones
        ("s", 1160, 0.2, False),  # ordinary again
    ]
    s = scoring.score(records, answers, PHASES, detections)
    assert s.ordinary == 6
    assert (s.ordinary_p0, s.ordinary_p01, s.ordinary_p05) == (2, 3, 4)
    assert s.share(s.ordinary_p01) == pytest.approx(0.5)
    first, last, w = marks[0], marks[-1], scoring.WINDOW
    edges: list[scoring.Detection] = [
        ("s", first - 1, 0.01, True),  # ordinary, p = 0.01 exactly counts at p <= 0.01
        ("s", first, 0.0, True),  # its last event is the attack's first
        ("s", last + w - 1, 0.0, True),  # its first event is the attack's last
        ("s", last + w, 0.05, False),  # ordinary, p = 0.05 exactly counts at p <= 0.05
    ]
    e = scoring.score(records, answers, PHASES, edges)
    assert (e.ordinary, e.ordinary_p0, e.ordinary_p01, e.ordinary_p05) == (2, 0, 1, 2)
    other_stream = scoring.score(records, answers, PHASES, [("x", 1000, 0.0, True)])
    assert other_stream.ordinary == 1  # another stream's positions are its own


def test_rejected_batches_take_no_stream_positions() -> None:
    records, answers = corpus([T0 + 1, T0 + 2, T0 + 3])
    answers[1] = None
    events = scoring.events_of(records, answers)
    assert [e.position for e in events] == list(range(20))
    assert {e.record for e in events} == {0, 2}


def test_live_scoring_reads_the_corpus_manifest_and_live_detections(tmp_path: Path) -> None:
    records, answers = corpus(every_second(1, 150), opened={T0 + 105: "a"})
    with gzip.open(tmp_path / "app-r1.jsonl.gz", "wt") as f:
        for record, answer in zip(records, answers, strict=True):
            f.write(json.dumps({**record, "status": 200, "answer": answer}) + "\n")
    (tmp_path / "app-r1.manifest.json").write_text(json.dumps({"phases": PHASES[:3], "held_out": False}))
    with gzip.open(tmp_path / "app-r1.live.json.gz", "wt") as f:
        json.dump({"detections": [["s", 100, 0.1, 0.0, 1], ["s", 200, 0.1, 0.5, 0]], "incidents": []}, f)
    loaded, manifest = scoring.load_corpus(tmp_path / "app-r1.jsonl.gz")
    live = [r["answer"] for r in loaded]
    s = scoring.score(loaded, live, manifest["phases"], scoring.live_detections(tmp_path / "app-r1.jsonl.gz"))
    assert (s.attacks[0].incidents, s.false_incidents, s.ordinary, s.ordinary_p0) == (1, 0, 2, 1)
    assert s.to_json()["attacks"][0]["first_alarm_s"] == 5.0


def test_replay_sends_every_batch_in_order_to_a_fresh_server_and_reads_its_detections() -> None:
    import replay

    records = []
    for n in range(80):  # 80 batches of 10 ordinary events, one second apart: detection starts at 450
        events = [
            {"type": "trace", "timestamp": iso(T0 + n + k / 10), "body": {"route": f"/p/{(n * 10 + k) % 7}/"}}
            for k in range(10)
        ]
        records.append({"t": T0 + n, "phase": "quiet", "status": 200, "body": {"stream_id": "r", "events": events}})
    result = replay.replay(records, ROOT / "src", sys.executable)
    assert len(result["answers"]) == 80 and all(a and a["success"] for a in result["answers"])
    assert sum(a["total_events"] for a in result["answers"]) == 800
    detections = result["detections"]
    assert detections, "a stream of 800 events is judged"
    positions = [d[1] for d in detections]
    assert (
        positions == sorted(positions)
        and min(positions) >= 449
        and max(positions) < 800
        and {d[0] for d in detections} == {"r"}
    )
    s = scoring.score(
        records, result["answers"], [{"name": "quiet", "kind": "quiet", "start": T0, "end": T0 + 80}], detections
    )
    assert s.ordinary == len(detections) and s.quiet_events == 800
