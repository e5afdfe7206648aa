"""Raw events as SDK users send them: how the engine splits their fields and judges one field changing."""

from __future__ import annotations

import random

from driftlock.engine import analyse, event_bytes, resolve_settings
from driftlock.engine.cbad import _MaxStatistic
from driftlock.engine.leaves import leaves, shape
from driftlock.engine.surprise import FieldModel, field_surprise

BALANCED = resolve_settings(None)
PATHS = [f"/api/{r}/{{}}/{s}" for r in ("orders", "users", "carts", "files") for s in ("items", "notes", "events")]


def test_free_text_is_a_template_and_its_variable_parts() -> None:
    pairs = dict(leaves(event_bytes({"message": "Request finished GET /api/orders/12 200 in 4500ms"})))
    template = "Request finished GET * * in *"
    assert pairs["message"] == template
    assert pairs[f"message|{template}|0"] == "/api/orders/<NUM>"  # a numeric path segment is an id
    assert pairs[f"message|{template}|2"] == "<5000ms"  # numbers in text are magnitudes
    quoted = dict(leaves(event_bytes({"message": "Search for 'red shoes' returned 3 results"})))
    assert quoted["message"] == "Search for * returned * results"  # a quoted string is one part
    assert quoted["message|Search for * returned * results|0#"] == "'a a'"


def test_a_query_string_is_split_and_its_values_shaped() -> None:
    ordinary = dict(leaves(event_bytes({"endpoint": "/api/search?q=socks+lamp&page=2"})))
    assert ordinary["endpoint"] == "/api/search?page&q"
    assert ordinary["endpoint?q"] == "socks lamp" and ordinary["endpoint?q#"] == "a a"
    injected = dict(leaves(event_bytes({"endpoint": "/api/search?q=1%27%20OR%20%271%27%3D%271"})))
    assert injected["endpoint?q#"] == "9' a '9'='9"
    assert shape("<NUM>/x") == "#/a"


def _model(values: list[object], key: str = "value") -> FieldModel:
    return FieldModel([event_bytes({key: v}) for v in values])


def test_a_new_value_is_news_only_in_a_field_whose_values_repeat() -> None:
    rng = random.Random(3)
    searches = _model(["".join(rng.choice("abcdefgh") for _ in range(6)) for _ in range(200)], "q")
    statuses = _model([200] * 190 + [404] * 10, "status")
    new_search = searches.bits(("q", "zzzzzz"))
    new_status = statuses.bits(("status", "503"))
    assert new_search < 1.0 < 7.0 < new_status
    assert statuses.bits(("status", "200")) < 0.1 < statuses.bits(("status", "404")) < new_status


def test_a_magnitude_beyond_every_one_seen_is_surprising_and_one_between_is_not() -> None:
    durations = _model([20] * 60 + [40] * 80 + [200] * 60, "duration_ms")  # "<25", "<50", "<250"
    between = durations.bits(("duration_ms", "<100"))  # never seen, between two common buckets
    beyond = durations.bits(("duration_ms", "<5000"))
    assert between < 1.0 and beyond > 6.0
    assert durations.bits(("duration_ms", "-<5000")) == beyond  # both tails


def _log(rng: random.Random, ms: float) -> dict[str, object]:
    path = rng.choice(PATHS).format(rng.randrange(1, 99999))
    kind = rng.random()
    if kind < 0.3:
        message = f"Request finished GET {path} 200 in {ms:.0f}ms"
    elif kind < 0.6:
        message = f"Request started GET {path} from 10.0.{rng.randrange(256)}.{rng.randrange(256)}"
    elif kind < 0.8:
        table = rng.choice(("orders", "users", "carts", "files", "audits", "teams"))
        message = f"Slow query took {rng.randrange(250, 900)}ms on {table}"
    else:
        words = " ".join(
            rng.choice(("red", "lamp", "desk", "mug", "sofa", "chair")) for _ in range(rng.randrange(1, 4))
        )
        message = f"Search for '{words}' returned {rng.randrange(0, 120)} results"
    return {"level": "info", "host": f"web-{rng.randrange(1, 7)}", "request_id": f"{rng.getrandbits(64):016x}",
            "message": message}  # fmt: skip


def test_a_latency_spike_inside_log_messages_is_found_and_ordinary_logs_are_not() -> None:
    """Every event differs (paths, ids, addresses, searches); in the spike only one part of one
    template changes: durations of seconds in finished requests."""
    rng = random.Random(11)
    ordinary = lambda: event_bytes(_log(rng, rng.lognormvariate(3.5, 0.5)))
    baseline = [ordinary() for _ in range(400)]
    slow = []
    for _ in range(12):
        path = rng.choice(PATHS).format(rng.randrange(1, 99999))
        message = f"Request finished GET {path} 200 in {rng.uniform(2000, 9000):.0f}ms"
        slow.append(event_bytes(_log(rng, 0) | {"message": message}))
    spike = [ordinary() for _ in range(38)] + slow
    rng.shuffle(spike)
    found = analyse(baseline, spike, BALANCED)
    assert found.is_anomaly and found.p_value <= 0.01, found
    # ordinary windows: a test at p <= 0.05 flags about one in twenty by construction
    calm = [analyse(baseline, [ordinary() for _ in range(50)], BALANCED) for _ in range(40)]
    assert sum(d.is_anomaly for d in calm) <= 4, [round(d.p_value, 3) for d in calm]
    scores = field_surprise(baseline[:200], spike)
    others = sorted(scores[e] for e in spike if e not in slow)
    assert min(scores[e] for e in slow) > others[-1]  # each slow request is the most unusual


def test_the_max_statistic_sees_one_score_the_others_hide() -> None:
    """Four scores in units of their spread; in the window, one of them is 0.6 spreads higher. The
    largest centred sum finds it where their sum (the statistic before) often does not."""
    found = {"max": 0, "sum": 0}
    for seed in range(1, 11):
        rng = random.Random(seed)
        size, window = 250, 50
        rows = [[round(1000 * rng.gauss(0, 1)) for _ in range(size)] for _ in range(3)]
        rows.append([round(1000 * (rng.gauss(0, 1) + (0.6 if i >= size - window else 0))) for i in range(size)])
        test = _MaxStatistic(rows, window)
        observed = test.observed()
        found["max"] += sum(test.relabelled(rng) >= observed for _ in range(300)) <= 3  # p <= 0.01
        summed = [sum(column) for column in zip(*rows, strict=True)]
        observed = sum(summed[-window:])
        found["sum"] += sum(sum(rng.sample(summed, window)) >= observed for _ in range(300)) <= 3
    assert found["max"] >= 8 and found["sum"] <= found["max"] - 2, found
