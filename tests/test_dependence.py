"""Dependence between consecutive events: visitors come in sessions, so a window of ordinary traffic varies
more than a relabelling of the pool predicts. The engine deflates a window's statistic by the dependence it
measures in the pool (``cbad.inflation``), and the service by the dependence of the stream's own ordinary
statistics (``calibration.dependence``); traffic of independent events keeps the plain permutation test."""

from __future__ import annotations

import random
import statistics
import sys
from pathlib import Path

from driftlock.engine.cbad import inflation
from driftlock.service import DetectionService, calibration

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import families as F  # noqa: E402

from tests import traffic  # noqa: E402


def test_independent_scores_keep_about_the_plain_test() -> None:
    found = [inflation([random.Random(seed).randint(-2000, 2000) for _ in range(200)]) for seed in range(60)]
    assert sum(1 for f in found if f == 1.0) >= 20, found  # the estimate scatters around 1, and is never below
    assert statistics.mean(f**-0.5 for f in found) > 0.93 and max(found) < 2.0, found


def test_scores_in_runs_are_measured_as_dependent() -> None:
    rng = random.Random(7)
    scores: list[int] = []
    while len(scores) < 200:  # a visit: several alike events in a row
        scores += [rng.randint(-2000, 2000)] * rng.randint(4, 10)
    assert inflation(scores[:200]) > 3.0


def test_dependence_of_the_streams_statistics_and_attacks_among_them() -> None:
    rng = random.Random(3)
    honest = [max(rng.gauss(0, 1) for _ in range(3)) for _ in range(250)]  # a max of three rows, ~2.0 at q90
    assert calibration.dependence({"statistics": honest}) < 1.15
    assert calibration.dependence({"statistics": honest[:20]}) == 1.0  # too few to measure: the plain test
    untold = honest[:230] + [12.0] * 20  # an attack no incident held: its windows stayed among the ordinary
    assert calibration.dependence({"statistics": untold}) < 1.25
    sessions = [2.5 * z for z in honest]
    assert 1.6 < calibration.dependence({"statistics": sessions}) < 2.4  # 2.5 times as wide, over the plain q90


def test_the_streams_statistics_wait_a_while_and_are_bounded() -> None:
    waiting = [(10 * i, 1.0) for i in range(1000)]  # detections every 10 events, up to event 9,990
    kept = calibration.observe(None, [0.5] * 1000, waiting, position=10_000, window=50)
    assert len(kept["statistics"]) == calibration.STATISTICS
    assert [at for at, _ in calibration.held(kept)] == [9_910 + 10 * i for i in range(9)]  # the last two windows
    kept = calibration.observe(kept, [0.5], [*calibration.held(kept), (10_000, 9.0)], position=10_200, window=50)
    assert len(kept["statistics"]) == calibration.STATISTICS and kept["statistics"][-1] == 9.0
    assert calibration.held(kept) == []


def test_the_windows_that_open_an_incident_are_not_counted_as_ordinary() -> None:
    service = DetectionService()
    events = [traffic.normal(random.Random(i)) for i in range(1500)]
    events += [traffic.scanner(random.Random(i)) for i in range(60)] + events[:200]
    answers = [
        service.detect({"stream_id": "s", "events": events[i : i + 100]}, request_id="t")
        for i in range(0, len(events), 100)
    ]
    opened = [a for answer in answers for a in answer["anomalies"] if (a.get("incident") or {}).get("opened")]
    assert len(opened) == 1
    kept = service.cache.get("s")
    assert kept is not None
    recorded = kept.meta["calibration"]["statistics"] + [z for _, z in calibration.held(kept.meta["calibration"])]
    assert max(recorded) < 5.0, sorted(recorded)[-10:]  # the scan's windows were far above every ordinary one


def test_ordinary_sessions_are_calibrated() -> None:
    """Quiet runs of the session-shaped CMS family (visitors who browse, search and page through results):
    before the dependence was measured, 11.9% of ordinary detections were at p = 0, 18.1% at p <= 0.01 and
    11.9 incidents per 10,000 events opened (4 seeds)."""
    p_values: list[float] = []
    incidents = events = 0
    for seed in (1, 2, 3):
        stream = F.generate("site-cms", seed, F.Knobs(quiet=True, events=4000))
        service = DetectionService()
        for offset in range(0, len(stream.events), 100):
            body = {"stream_id": "cms", "events": stream.events[offset : offset + 100]}
            found = service.detect(body, request_id="t")["anomalies"]
            incidents += sum(1 for a in found if (a.get("incident") or {}).get("opened") is True)
        p_values += [d["p_value"] for d in service.stream_timeline("cms", since_seconds=10**9)["detections"]]
        events += len(stream.events)
    assert len(p_values) > 1000
    share = {level: sum(p <= level for p in p_values) / len(p_values) for level in (0.0, 0.01, 0.05)}
    assert share[0.0] <= 0.03 and share[0.01] <= 0.06 and share[0.05] <= 0.13, share
    assert 10_000 * incidents / events <= 5.0, incidents
