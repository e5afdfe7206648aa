from __future__ import annotations

import math
import random
import time
from collections import Counter
from typing import Any

import pytest

from driftlock.engine import analyse, event_bytes, resolve_settings, tokenize
from driftlock.engine.cbad import _slice_figures, event_scores, pool_scores
from driftlock.engine.explain import explain, log_poisson_tail, surging
from driftlock.engine.stream import StreamState, ingest
from driftlock.service import DetectionService
from tests import traffic

BALANCED = resolve_settings(None)


def encoded(items: list[dict[str, object]]) -> list[bytes]:
    return [event_bytes(e) for e in items]


def window_with(kind: str, count: int, seed: int = 7) -> tuple[list[bytes], list[bytes]]:
    rng = random.Random(seed)
    baseline = encoded([traffic.normal(rng) for _ in range(400)])
    make = {"scanner": traffic.scanner, "injection": traffic.injection}[kind]
    window = [traffic.normal(rng) for _ in range(50 - count)] + [make(rng) for _ in range(count)]
    rng.shuffle(window)
    return baseline, encoded(window)


def test_equal_input_gives_equal_results() -> None:
    baseline, window = window_with("scanner", 15)
    assert analyse(baseline, window, BALANCED) == analyse(baseline, window, BALANCED)
    events = traffic.events(600, seed=3) + [traffic.scanner(random.Random(1)) for _ in range(30)]
    first = DetectionService().detect({"stream_id": "a", "events": events}, request_id="1")
    second = DetectionService().detect({"stream_id": "a", "events": events}, request_id="1")
    strip = lambda r: [(a["index"], a["metrics"], a["why"]) for a in r["anomalies"]]
    assert strip(first) == strip(second) and first["anomaly_count"] >= 1


def test_normal_windows_rarely_alarm() -> None:
    alarms = 0
    for seed in range(20):
        rng = random.Random(seed)
        baseline = encoded([traffic.normal(rng) for _ in range(400)])
        window = encoded([traffic.normal(rng) for _ in range(50)])
        alarms += analyse(baseline, window, BALANCED).is_anomaly
    assert alarms <= 2  # a test at p <= 0.05 alarms on about 1 in 20 alike windows by construction


def test_one_normal_window_gives_no_anomaly() -> None:
    rng = random.Random(11)
    baseline = encoded([traffic.normal(rng) for _ in range(400)])
    detection = analyse(baseline, encoded([traffic.normal(rng) for _ in range(50)]), BALANCED)
    assert not detection.is_anomaly
    assert abs(detection.compression_ratio_change) < 0.15 and abs(detection.entropy_change) < 0.2


@pytest.mark.parametrize(("kind", "needle"), [("scanner", "wp-"), ("injection", "UNION SELECT")])
def test_structurally_new_events_are_anomalous_and_named(kind: str, needle: str) -> None:
    baseline, window = window_with(kind, 20)
    state = StreamState("t")
    state.events.extend(baseline)
    results = ingest(state, window, BALANCED)
    assert len(results) == 1
    found = results[0]
    assert found.detection.is_anomaly and found.detection.p_value <= 0.05
    assert found.index == 49
    assert "Anomalous window" in found.why
    names = [path for path in traffic.SCANNER_PATHS + traffic.INJECTIONS if path.split("/")[-1][:6] in found.why]
    assert names, found.why
    assert kind != "scanner" or needle in found.why or ".php" in found.why or ".env" in found.why


def shop_event(rng: random.Random) -> dict[str, object]:
    """A small site's ordinary request: a route takes about as long every time."""
    event = traffic.normal(rng)
    event["body"] = {k: v for k, v in event["body"].items() if k != "user"} | {"duration": "<25ms"}  # type: ignore[attr-defined]
    return event


def test_a_burst_of_events_the_baseline_has_seen_rarely_is_anomalous_and_named() -> None:
    """Credential stuffing: every failed login looks like the few the baseline holds, only far more
    of them. Compressed against the baseline, each costs what one rare event costs; the rarity and
    frequency-gain scores of the test are what see the burst."""
    rng = random.Random(0)
    login = {"type": "trace", "attributes": {"service": "shop"},
             "body": {"kind": "http", "method": "POST", "route": "login/", "status": 401, "duration": "<25ms"}}  # fmt: skip
    baseline = [shop_event(rng) for _ in range(400)]
    for position in (40, 260, 390):
        baseline[position] = login
    window = [shop_event(rng) for _ in range(38)] + [login] * 12
    rng.shuffle(window)
    state = StreamState("stuffing")
    state.events.extend(encoded(baseline))
    [found] = ingest(state, encoded(window), BALANCED)
    assert found.detection.is_anomaly and found.detection.p_value <= 0.02
    assert found.why.startswith("Anomalous window: events the baseline saw rarely are far more frequent, p=")
    assert "far more frequent than in the baseline" in found.why, found.why
    assert '"route":"login/","status":401} (12 of 50 events, 3 of 400 before)' in found.why, found.why


@pytest.mark.parametrize(("count", "expected"), [(0, 1.0), (1, 1.0), (3, 0.44), (5, 5.0), (16, 0.19)])
def test_log_poisson_tail_matches_the_sum_of_the_distribution(count: int, expected: float) -> None:
    tail = sum(math.exp(-expected) * expected**k / math.factorial(k) for k in range(count, 120))
    assert math.exp(log_poisson_tail(count, expected)) == pytest.approx(tail, rel=1e-6, abs=1e-300)


def test_only_events_far_beyond_their_baseline_rate_are_named_as_surging() -> None:
    page, lamp, login = b"page", b"search lamp", b"login 401"
    baseline = [page] * 394 + [lamp] * 5 + [login]
    chance = [page] * 46 + [lamp] * 4  # 4 where 0.7 are expected: p = 0.008, ordinary luck
    assert surging(baseline, chance) == []
    burst = [page] * 30 + [lamp] * 4 + [login] * 16
    assert surging(baseline, burst) == [(login, 16, 1)]


def test_event_scores_are_code_lengths_of_shares() -> None:
    reference = [b"a"] * 6 + [b"b"] * 2
    pool = Counter([b"a", b"a", b"b", b"b", b"b", b"new"])
    scores = event_scores(reference, pool)
    total = 8 + 0.5 * 3  # 8 events, 2 kinds + 1 for the unseen, half an occurrence each
    scale = 8 / 6
    assert scores[b"a"][1:] == pytest.approx((math.log2(total / 6.5), math.log2(2.5 * scale / 6.5)))
    assert scores[b"b"][1:] == pytest.approx((math.log2(total / 2.5), math.log2(3.5 * scale / 2.5)))
    assert scores[b"new"][1] == pytest.approx(math.log2(total / 0.5))
    assert scores[b"a"][2] < 0 < scores[b"b"][2]  # "a" became less common, "b" more
    assert scores[b"a"][0] < scores[b"new"][0]  # the reference explains "a", not "new"
    rows = pool_scores(reference, list(pool.elements()))
    assert len(rows) == 3  # these events are not JSON: they have no fields, and no field surprise
    assert all(isinstance(s, int) for row in rows for s in row)
    for row in rows:  # centred, whole numbers; equal events score alike; "new" the most unlike
        assert abs(sum(row)) <= len(row) and row[0] == row[1] and row[-1] == max(row)


def test_consecutive_detections_share_their_baseline_slices() -> None:
    """The size-matched effect sizes compare the window with window-sized baseline slices; they are
    aligned in the stream, so a baseline moving a hop at a time reuses their figures."""
    _slice_figures.cache_clear()
    state = StreamState("slices")
    ingest(state, encoded(traffic.events(550, seed=4)), BALANCED)
    info = _slice_figures.cache_info()
    assert state.detections == 11 and info.hits + info.misses == 44
    assert info.misses <= 4 + 2, info  # the first detection's 4, then one per 50 events


def test_detection_count_follows_baseline_window_and_hop() -> None:
    override = {"baseline_size": 40, "window_size": 10, "hop_size": 5}
    settings = resolve_settings(override)
    for n in (49, 50, 54, 55, 97, 200):
        state = StreamState("c")
        ingest(state, encoded(traffic.events(n, seed=n)), settings)
        expected = 0 if n < 50 else 1 + (n - 50) // 5
        assert state.detections == expected, n


def test_hop_is_honoured_across_requests() -> None:
    service = DetectionService()
    override = {"baseline_size": 40, "window_size": 10, "hop_size": 5}
    events = traffic.events(100, seed=2)
    for start in range(0, 100, 7):
        service.detect(
            {"stream_id": "h", "events": events[start : start + 7], "config_override": override}, request_id="r"
        )
    assert service.stream_info("h")["detections"] == 1 + (100 - 50) // 5  # type: ignore[index]


def test_window_is_the_latest_events() -> None:
    """The anomaly's index points at the event that completed the window, and that event is analysed."""
    rng = random.Random(5)
    state = StreamState("w")
    ingest(state, encoded([traffic.normal(rng) for _ in range(440)]), BALANCED)
    scans = encoded([traffic.scanner(rng) for _ in range(10)])
    results = ingest(state, scans, BALANCED)  # the 450th event triggers the first detection
    assert state.detections == 1
    assert [r.index for r in results] in ([], [9])


def test_profiles_and_overrides_change_the_decision() -> None:
    baseline, window = window_with("scanner", 3, seed=1)  # a weak signal: 3 scanner requests in 50
    decisions = {
        name: analyse(baseline, window, resolve_settings({"profile": name, "baseline_size": 400, "window_size": 50}))
        for name in ("sensitive", "balanced", "strict")
    }
    assert decisions["sensitive"].is_anomaly and decisions["balanced"].is_anomaly
    assert not decisions["strict"].is_anomaly  # p <= 0.01 is not met
    assert not analyse(baseline, window, resolve_settings({"p_value_threshold": 0.01})).is_anomaly
    baseline, window = window_with("scanner", 2, seed=13)  # weaker still: only p <= 0.10 calls it
    assert analyse(baseline, window, resolve_settings({"profile": "sensitive"} | {"baseline_size": 400})).is_anomaly
    assert not analyse(baseline, window, BALANCED).is_anomaly


def test_override_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="window_size"):
        resolve_settings({"window_size": 0})
    with pytest.raises(ValueError, match="must not exceed baseline_size"):
        resolve_settings({"baseline_size": 20, "window_size": 30})
    with pytest.raises(ValueError, match="unknown field"):
        resolve_settings({"windw_size": 3})
    assert resolve_settings({"permutation_count": 5000}).permutation_count == 300


def test_events_that_differ_only_in_ids_and_timestamps_are_indistinguishable() -> None:
    a = {
        "timestamp": "2026-11-25T10:00:00.123Z",
        "body": {
            "order": "3f2b1c9e-8d7a-4e6f-9b0a-1c2d3e4f5a6b",
            "user": "ana@example.com",
            "ip": "10.1.2.3",
            "session": "a3f5c9e1b2d4f6a8c0e2b4d6f8a0c2e4",
            "token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.abc_DEF-123",
            "amount_cents": 129900,
        },
    }
    b = {
        "body": {
            "amount_cents": 104500,  # measurements are judged by magnitude: both "<250000"
            "user": "bo@example.org",
            "ip": "192.168.0.77",
            "session": "ffffc9e1b2d4f6a8c0e2b4d6f8a0c2e4",
            "order": "00000000-1111-4222-8333-444444444444",
            "token": "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiI5OTkifQ.xyz",
        },
        "timestamp": "2025-01-02T03:04:05Z",
    }
    assert event_bytes(a) == event_bytes(b)
    assert tokenize("GET /products/ 200") == "GET /products/ 200"
    assert tokenize("id=QmFzZTY0ZW5jb2RlZFN0cmluZzEyMw==") == "id=<B64>"


def test_calibration_fields() -> None:
    service = DetectionService()
    first = service.detect({"stream_id": "cal", "events": traffic.events(10)}, request_id="r")
    assert first["status"] == "calibrating" and "batch_id" not in first
    assert first["calibration"]["progress_percent"] == 20 and first["calibration"]["events_needed"] == 40
    second = service.detect({"stream_id": "cal", "events": traffic.events(100)}, request_id="r")
    assert second["status"] == "ready" and second["detection_ready"] is False
    assert second["detection_events_needed"] == 340
    third = service.detect({"stream_id": "cal", "events": traffic.events(340)}, request_id="r")
    assert third["detection_ready"] is True and "calibration" not in third


def test_median_detection_is_fast_enough_for_a_test_machine() -> None:
    rng = random.Random(9)
    baseline = encoded([traffic.normal(rng) for _ in range(400)])
    times = []
    for _ in range(15):
        window = encoded([traffic.normal(rng) for _ in range(50)])
        started = time.perf_counter()
        analyse(baseline, window, BALANCED)
        times.append(time.perf_counter() - started)
    assert sorted(times)[len(times) // 2] < 0.1  # generous: benchmarks/engine.py measures for real


def test_durations_are_counted_by_decade_in_whole_event_scores() -> None:
    """One scale per quantity, and a decade per kind: "<1s" is the step after "<500ms", and a page a step
    slower is the same kind of event (the field surprise score judges the step itself)."""
    from driftlock.engine.tokenize import coarse, measurement

    assert measurement("<1s") == (1000.0, "ms") and measurement("<2.5s") == (2500.0, "ms")
    assert measurement("<5KB") == (5000.0, "B") and measurement("<250") == (250.0, "")
    kinds = {coarse(b'{"duration":"%s","route":"a"}' % d.encode()) for d in ("<250ms", "<500ms", "<1s")}
    assert len(kinds) == 1
    assert coarse(b'{"duration":"<10ms"}') != coarse(b'{"duration":"<250ms"}') != coarse(b'{"duration":"<5s"}')


def test_a_latency_spike_is_found_though_durations_count_by_decade_in_whole_event_scores() -> None:
    rng = random.Random(3)
    pages = ["", "products/", "search/", "cart/", "products/{int}/"]

    def page(duration: str) -> dict[str, Any]:
        return {"body": {"kind": "http", "method": "GET", "route": rng.choice(pages), "status": 200,
                         "duration": duration}}  # fmt: skip

    baseline = encoded([page(rng.choice(["<100ms", "<250ms", "<250ms"])) for _ in range(400)])
    spike = [page(rng.choice(["<100ms", "<250ms", "<250ms"])) for _ in range(40)] + [page("<2.5s") for _ in range(10)]
    rng.shuffle(spike)
    found = analyse(baseline, encoded(spike), BALANCED)
    assert found.is_anomaly and found.p_value <= 0.01, found
    # told as what changed: the duration field, not whichever events compress worst
    told = explain(found, baseline, encoded(spike))
    assert told.signal == "field" and [(f.field, f.value, f.count) for f in told.fields] == [
        ("body.duration", "<2.5s", 10)
    ]
    assert "values the baseline rarely had: duration <2.5s (10 of 50 events, 0 of 400 before)" in told.why()
    assert told.as_dict()["fields"][0]["baseline_count"] == 0
