"""The quality benchmark's parts: scenario families (seeded, labelled, shaped like their kind) and the scorer."""

from __future__ import annotations

import itertools
import json
import re
import statistics
import subprocess
import sys
from collections import Counter
from typing import Any
from urllib.parse import unquote

import pytest
from benchmarks import families as F
from benchmarks.quality import Told, detect

from driftlock.demo import scenarios
from driftlock.demo.scoring import Episode, detection_positions, score, score_raw
from driftlock.service import DetectionService
from tests.support import ROOT, clean_env

SDK = [f for f in F.FAMILIES if f.startswith("sdk-")]
SITES = list(F.SITES)
SMALL = F.Knobs(warmup=100, gap=40, length=30, routes=20, rate=10.0, drift=0.0)


def body(event: dict[str, Any]) -> dict[str, Any]:
    assert set(event) == {"body"}, event  # a bare payload, wrapped by the client as it sends it
    inner: dict[str, Any] = event["body"]
    return inner


# -- generators ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", SDK)
def test_equal_seeds_give_equal_streams_and_other_seeds_differ(family: str) -> None:
    a, b, c = F.generate(family, 3), F.generate(family, 3), F.generate(family, 4)
    assert a.events == b.events and a.times == b.times and a.episodes == b.episodes and a.settings == b.settings
    assert a.events != c.events and a.episodes != c.episodes


def test_the_shop_plan_is_seeded_too() -> None:
    assert F.shop_plan(5, SMALL)[0] == F.shop_plan(5, SMALL)[0]
    assert F.shop_plan(5, SMALL)[0] != F.shop_plan(6, SMALL)[0]


@pytest.mark.parametrize("family", SDK)
def test_episodes_are_where_the_labels_say(family: str) -> None:
    stream = F.generate(family, 7)
    assert sorted(e.kind for e in stream.episodes) == sorted(F.KINDS)
    assert len(stream.events) == len(stream.times) == len(stream.own)
    inside = set()
    for episode in stream.episodes:
        labels = stream.own[episode.start : episode.end + 1]
        assert labels[0] == labels[-1] == episode.kind  # an episode starts and ends with its own events
        assert set(labels) <= {episode.kind, None}
        inside |= set(range(episode.start, episode.end + 1))
    assert all(k is None for i, k in enumerate(stream.own) if i not in inside)  # nothing own between episodes
    assert stream.normal_events == len(stream.events) - len(inside)
    assert stream.episodes[0].start == 600 + 200  # the default warm-up and gap


def is_probe(path: str) -> bool:
    return path in F.PROBES or path.rsplit("/", 1)[-1].split(".", 1)[-1] in F.PROBE_EXTENSIONS


INJECTED = ("'", '"', "<script>", "../", " AND ", " OR ", "--", ";")


FINISHED = re.compile(r"Request finished \S+ \S+ \d+ in (\d+)ms$")
LOOKS = {
    "sdk-logs": {
        "scanner": lambda b: b["message"].startswith("Not Found: ") and is_probe(b["message"].split()[2]),
        "sql_injection": lambda b: any(m in b["message"] for m in INJECTED),
        "error_burst": lambda b: b["level"] == "error",
        "latency_spike": lambda b: (m := FINISHED.match(b["message"])) is not None and int(m[1]) >= 1500,
        "credential_stuffing": lambda b: b["message"].startswith("Login failed for user "),
        "new_endpoint": lambda b: "/api/v2/export" in b["message"],
    },
    "sdk-api-metrics": {
        "scanner": lambda b: b["status"] == 404 and is_probe(b["endpoint"]),
        "sql_injection": lambda b: any(m in unquote(b["endpoint"]) for m in INJECTED),
        "error_burst": lambda b: b["status"] >= 500,
        "latency_spike": lambda b: b["duration_ms"] >= 1500,
        "credential_stuffing": lambda b: (b["endpoint"], b["method"], b["status"]) == ("/api/login", "POST", 401),
        "new_endpoint": lambda b: b["endpoint"].startswith("/api/v2/export"),
    },
    "sdk-security": {
        "scanner": lambda b: b["action"] == "access" and not b["success"] and is_probe(b["resource"]),
        "sql_injection": lambda b: any(m in f"{b['user']}{b.get('resource')}" for m in INJECTED),
        "error_burst": lambda b: not b["success"] and "error" in b,
        "latency_spike": lambda b: b["duration_ms"] >= 1500,
        "credential_stuffing": lambda b: b["action"] == "login" and not b["success"],
        "new_endpoint": lambda b: b["action"] == "api_token_created",
    },
    "sdk-transactions": {
        "scanner": lambda b: b["status"] == "rejected" and b["reason"] == "invalid_merchant",
        "sql_injection": lambda b: any(m in b["description"] + b["merchant"] for m in INJECTED),
        "error_burst": lambda b: b["status"] == "error",
        "latency_spike": lambda b: b["processing_ms"] >= 2000,
        "credential_stuffing": lambda b: b["status"] == "declined" and b["amount"] <= 2.0,
        "new_endpoint": lambda b: b["channel"] == "crypto_bridge",
    },
}


@pytest.mark.parametrize("family", SDK)
def test_episode_events_look_like_their_kind_and_ordinary_ones_do_not(family: str) -> None:
    stream = F.generate(family, 11)
    ordinary = [body(e) for e, k in zip(stream.events, stream.own, strict=True) if k is None]
    for kind, looks in LOOKS[family].items():
        own = [body(e) for e in F.own_events(stream, kind)]
        assert own and all(looks(b) for b in own), (kind, next(b for b in own if not looks(b)))
        share = sum(1 for b in ordinary if looks(b)) / len(ordinary)
        assert share < 0.1, (kind, share)  # ordinary traffic rarely looks like this


def _site_looks(family: str) -> dict[str, Any]:
    site = F.SITES[family]
    return {
        "scanner": lambda b: b["status"] == 404 and b["route"].lstrip("/").rstrip("/") + "/" not in F.REMOVED,
        "sql_injection": lambda b: any(m in b.get("query", {}).get("q", "") for m in INJECTED),
        "error_burst": lambda b: b["status"] == 500 and "error" in b,
        "latency_spike": lambda b: b["duration"] in ("<5s", "<10s"),
        "credential_stuffing": lambda b: (b["method"], b["route"], b["status"]) == ("POST", site.login, 200),
        "new_endpoint": lambda b: b["route"] == "api/v2/export/",
    }


@pytest.mark.parametrize("family", SITES)
def test_site_episodes_look_like_their_kind_and_ordinary_visitors_come_in_sessions(family: str) -> None:
    stream = F.generate(family, 11)
    assert all(e["type"] == "trace" and e["body"]["kind"] == "http" for e in stream.events)  # spans as mapped
    ordinary = [e["body"] for e, k in zip(stream.events, stream.own, strict=True) if k is None]
    for kind, looks in _site_looks(family).items():
        own = [e["body"] for e in F.own_events(stream, kind)]
        assert own and all(looks(b) for b in own), (kind, next(b for b in own if not looks(b)))
        assert sum(1 for b in ordinary if looks(b)) / len(ordinary) < 0.1, kind
    # sessions: a search is followed by another far more often than searches occur (paging, new words)
    search = [b["route"] == F.SITES[family].search for b in ordinary]
    after = [b for a, b in itertools.pairwise(search) if a]
    assert sum(after) / len(after) > 2 * sum(search) / len(search)
    words = [b["query"]["q"] for b in ordinary if "q" in b.get("query", {})]
    assert len(set(words)) > 0.5 * len(words)  # a long tail of queries: most are new


@pytest.mark.parametrize("family", SDK)
def test_attacks_come_from_few_addresses_and_ordinary_traffic_from_many(family: str) -> None:
    stream = F.generate(family, 12)
    key = {"sdk-api-metrics": "client_ip", "sdk-security": "ip", "sdk-transactions": "ip"}.get(family)
    if key is None:  # logs: the address is inside the message
        messages = [body(e)["message"] for e in F.own_events(stream, "credential_stuffing")]
        assert len({m.split(" from ")[1].split(":")[0] for m in messages}) <= 3
        return
    stuffing = [body(e) for e in F.own_events(stream, "credential_stuffing")]
    ordinary = [body(e) for e, k in zip(stream.events, stream.own, strict=True) if k is None]
    assert len({b[key] for b in stuffing}) <= 3 < len(stuffing)
    assert len({b[key] for b in ordinary}) > len(ordinary) * 0.9
    if family != "sdk-transactions":  # many users, few addresses
        users = {b.get("user") for b in stuffing} if family == "sdk-security" else set()
        assert family == "sdk-api-metrics" or len(users) > len(stuffing) * 0.8


@pytest.mark.parametrize("family", SDK)
@pytest.mark.parametrize("share", [1.0, 0.7, 0.3])
def test_the_interleaving_share_is_honoured(family: str, share: float) -> None:
    stream = F.generate(family, 2, F.Knobs(share=share, length=100))
    for episode in stream.episodes:
        labels = stream.own[episode.start : episode.end + 1]
        assert len(labels) == 100 and labels.count(episode.kind) == round(100 * share)


def test_episode_length_routes_rate_and_quiet_are_honoured() -> None:
    stream = F.generate("sdk-api-metrics", 3, F.Knobs(length=37, routes=5, rate=20.0, drift=0.0))
    assert all(e.end - e.start + 1 == 37 for e in stream.episodes)
    ordinary = [body(e) for e, k in zip(stream.events, stream.own, strict=True) if k is None]
    templates = {
        "/".join("{id}" if p.isdigit() else p for p in b["endpoint"].split("?")[0].split("/")) for b in ordinary
    }
    assert len(templates) == 5
    gaps = [b - a for a, b in zip(stream.times, stream.times[1:], strict=False)]
    assert statistics.mean(gaps) == pytest.approx(1 / 20, rel=0.1)
    many = F.generate("sdk-transactions", 3, F.Knobs(routes=300, drift=0.0, quiet=True, events=4000))
    assert len({body(e)["merchant"] for e in many.events}) > 150
    assert many.episodes == [] and set(many.own) == {None} and len(many.events) == 4000


def _distance(a: list[str], b: list[str]) -> float:
    """Total variation distance between the frequencies of two samples."""
    ca, cb = Counter(a), Counter(b)
    return sum(abs(ca[k] / len(a) - cb[k] / len(b)) for k in ca.keys() | cb.keys()) / 2


@pytest.mark.parametrize("seed", [1, 4])
def test_drift_turns_the_ordinary_mix_over(seed: int) -> None:
    distance = {}
    for drift in (0.0, 1.0):
        stream = F.generate("sdk-transactions", seed, F.Knobs(routes=30, drift=drift, quiet=True, events=6000))
        merchants = [body(e)["merchant"] for e in stream.events]
        distance[drift] = _distance(merchants[:1500], merchants[-1500:])
    assert distance[0.0] < 0.12 < 0.3 < distance[1.0], distance


def test_bad_knobs_are_named() -> None:
    with pytest.raises(ValueError, match="share"):
        F.generate("sdk-logs", 1, F.Knobs(share=0.0))
    with pytest.raises(ValueError, match="'sniffing'"):
        F.generate("sdk-logs", 1, F.Knobs(kinds=("sniffing",)))
    with pytest.raises(ValueError, match="unknown family 'nope'"):
        F.generate("nope", 1)


def test_the_held_out_split_is_disjoint_from_the_tuned_one() -> None:
    assert F.TUNED and F.HELD_OUT and not set(F.TUNED) & set(F.HELD_OUT)
    assert {f for f, _ in F.HELD_OUT} == set(F.FAMILIES)  # every family has held-out seeds
    assert not {f for f, _ in F.TUNED} & set(F.HELD_OUT_FAMILIES)  # held-out families are never tuned on
    assert all((f, s) in F.HELD_OUT for f in F.FAMILIES for s in F.HELD_OUT_SEEDS)
    assert all(F.is_tuned(f, s) != F.is_held_out(f, s) for f in F.TUNED_FAMILIES for s in range(1, 111))


def test_shop_faults_fall_on_their_episodes_own_requests_and_latency_spikes_are_capped() -> None:
    requests, slots, episodes, _ = F.shop_plan(9, F.Knobs(length=120))
    faulted = {i for i, (_, fault) in enumerate(requests) if fault}
    own = {i for i, s in enumerate(slots) if s.own and s.kind in scenarios.FAULTS}
    assert faulted == own and faulted
    spike = next(e for e in episodes if e.kind == "latency_spike")
    assert spike.end - spike.start + 1 == F.SHOP_LATENCY_CAP
    assert all(e.end - e.start + 1 == 120 for e in episodes if e.kind != "latency_spike")
    assert not any(r.path.startswith(scenarios.EXCLUDED) for r, _ in requests)  # every request is an event


def test_tools_episodes_replay_what_the_tools_sent_in_order() -> None:
    recorded = F.load_tools()
    assert set(recorded) == set(F.TOOL_KINDS.values()) and all(recorded.values())
    assert len({r.path for r in recorded["dirb"]}) > len(recorded["dirb"]) * 0.9  # a word list, path by path
    injected = [unquote(r.path) for r in recorded["sqlmap"]]
    assert sum(1 for q in injected if any(m in q for m in INJECTED)) > len(injected) * 0.8
    assert all(r.method == "POST" and r.path == "/login/" for r in recorded["hydra"] if r.method == "POST")
    requests, _, episodes, _ = F.shop_plan(4, F.Knobs(length=50, share=1.0), "tools")
    for episode in episodes:
        sent = [r for r, _ in requests[episode.start : episode.end + 1]]
        if episode.kind in F.TOOL_KINDS:
            tool = recorded[F.TOOL_KINDS[episode.kind]]
            keys = [(r.method, r.path, r.data) for r in tool]
            first = keys.index((sent[0].method, sent[0].path, sent[0].data))
            expected = [keys[(first + i) % len(keys)] for i in range(len(sent))]
            if episode.kind != "credential_stuffing":  # hydra repeats itself: index() finds the first copy
                assert [(r.method, r.path, r.data) for r in sent] == expected
            assert all(r.kind == episode.kind for r in sent)
    assert F.shop_plan(4, F.Knobs(), "tools")[0] != F.shop_plan(4, F.Knobs(), "shop-spans")[0]


def test_shop_spans_go_through_the_real_instrumentation_and_both_mappings() -> None:
    """In a child process: the benchmark instruments Django globally, which other tests must not see."""
    script = (
        "import json; from benchmarks import families as F\n"
        "s = F.generate('shop-spans', 1, F.Knobs(warmup=60, gap=20, length=10, share=1.0))\n"
        "print(json.dumps({'events': s.events, 'naive': s.naive, 'own': s.own}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, env=clean_env(),
                         timeout=90, check=True).stdout  # fmt: skip
    data = json.loads(out)
    own: list[str | None] = data["own"]
    events = [e["body"] for e in data["events"]]
    assert len(events) == len(data["naive"]) == 60 + 6 * (20 + 10) + 20
    by_kind = {k: [b for b, o in zip(events, own, strict=True) if o == k] for k in F.KINDS}
    assert all(b["status"] == 500 for b in by_kind["error_burst"])
    assert all(b["duration"] not in ("<10ms", "<25ms", "<50ms", "<100ms") for b in by_kind["latency_spike"])
    assert all(b["route"] == "search/" and b["query"]["q"] for b in by_kind["sql_injection"])
    assert all(
        (b["method"], b["route"], b["status"]) == ("POST", "login/", 401) for b in by_kind["credential_stuffing"]
    )
    assert all(b["route"] == "api/v2/export/" for b in by_kind["new_endpoint"])
    assert all(b["status"] == 404 for b in by_kind["scanner"])
    assert all("duration_ms" in n["body"] and "http.method" in json.dumps(n) for n in data["naive"])


# -- the scorer ---------------------------------------------------------------------------------------------


def test_alarm_delays_are_counted_in_events_and_seconds() -> None:
    episodes = [Episode("scanner", 10, 19), Episode("error_burst", 40, 49)]
    times = [0.5 * i for i in range(120)]
    result = score(episodes, [15, 70, 110], window=30, normal_events=100, times=times)
    assert [r.found for r in result.episodes] == [True, True]
    assert [r.delay for r in result.episodes] == [5, 30] and [r.seconds for r in result.episodes] == [2.5, 15.0]
    assert result.false_alarms == 1 and result.delays_seconds == [2.5, 15.0]  # 110 is beyond 49 + 30
    assert score(episodes, [15], window=30, normal_events=100).episodes[0].seconds is None  # no times, no seconds
    with pytest.raises(ValueError, match="timestamp"):
        score(episodes, [200], window=30, normal_events=100, times=times)


def test_raw_detections_count_misses_and_anomalous_ones_on_ordinary_traffic() -> None:
    episodes = [Episode("scanner", 100, 119), Episode("new_endpoint", 300, 309)]
    run = list(range(49, 500, 10))  # 46 detections
    anomalous = [109, 129, 159, 209, 219]  # 109 and 129 hold the scanner (119 + 10), 159 does not (160 - 50 > 119)
    raw = score_raw(episodes, anomalous, run, window=50, normal_events=470, times=[float(i) for i in range(500)])
    assert [r.found for r in raw.episodes] == [True, False] and raw.by_kind == {
        "scanner": (1, 1),
        "new_endpoint": (0, 1),
    }
    assert raw.episodes[0].delay == 9 and raw.episodes[0].seconds == 9.0
    held = [d for d in run if any(e.held(d, 50) for e in episodes)]
    assert held == [109, 119, 129, 139, 149, 159, 309, 319, 329, 339, 349]
    assert raw.detections == 46 and raw.ordinary_detections == 46 - len(held)
    assert raw.ordinary_anomalous == 2 and raw.ordinary_share == 2 / 35  # 209 and 219
    assert raw.false_per_10k == pytest.approx(10_000 * 2 / 470)


def test_an_anomalous_detection_must_be_one_that_ran() -> None:
    with pytest.raises(ValueError, match="not one of the detections"):
        score_raw([], [55], [49, 59], window=50, normal_events=100)


def test_detection_positions_are_where_the_engine_judges() -> None:
    stream = F.generate("sdk-api-metrics", 5, SMALL)
    found = detect(stream.events, {"profile": "balanced"}, Told(window=50, confirmations=3, p_value=0.01))
    assert found.detections == detection_positions(len(stream.events), baseline=400, window=50, hop=10)
    assert found.detections[0] == 449 and set(found.anomalous) <= set(found.detections)
    with pytest.raises(ValueError):
        detection_positions(100, baseline=0, window=50, hop=10)


def _anomaly(index: int, p: float = 0.0, **extra: Any) -> dict[str, Any]:
    return {"index": index, "metrics": {"p_value": p}, **extra}


def test_told_applies_the_alarm_rule_until_the_service_marks_incidents() -> None:
    told = Told(window=50, confirmations=3, p_value=0.01)
    assert told([_anomaly(5), _anomaly(15)], 100) == []
    assert told([_anomaly(25), _anomaly(35)], 100) == [125]  # the third within a window
    assert told([_anomaly(45, p=0.03)], 200) == []  # weak, and within the incident anyway
    marked = Told(window=50, confirmations=3, p_value=0.01)
    anomalies = [
        _anomaly(1, incident={"id": "i1", "opened": True}),
        _anomaly(2, incident={"id": "i1", "opened": False}),
        _anomaly(3, incident=None),
    ]
    assert marked(anomalies, 1000) == [1001]  # the service decides: only the anomaly that opened it


def test_obvious_episodes_are_found_end_to_end() -> None:
    """The whole path the benchmark takes, on a case where a broken scorer or detector shows."""
    knobs = F.Knobs(share=1.0, length=60, kinds=("scanner", "new_endpoint"), routes=10, rate=5.0, drift=0.0)
    stream = F.generate("sdk-api-metrics", 8, knobs)
    found = detect(stream.events, {"profile": "balanced"}, Told(window=50, confirmations=3, p_value=0.01))
    result = score(stream.episodes, found.told, window=50, normal_events=stream.normal_events, times=stream.times)
    assert result.found == 2 and all(r.delay is not None and 0 < r.delay < 60 + 50 for r in result.episodes)
    assert all(r.seconds is not None and r.seconds > 0 for r in result.episodes)
    service = DetectionService()
    response = service.detect({"stream_id": "x", "events": stream.events[:100]}, request_id="t")
    assert response["success"] and response["total_events"] == 100  # the events are what /v1/detect accepts


def test_told_is_what_the_service_opened_when_it_marks_incidents() -> None:
    knobs = F.Knobs(share=1.0, length=60, kinds=("scanner", "credential_stuffing"), routes=10, rate=5.0, drift=0.0)
    stream = F.generate("sdk-api-metrics", 8, knobs)
    service = DetectionService()
    told = Told(window=50, confirmations=3, p_value=0.01)
    opened: list[int] = []
    alarms: list[int] = []
    for offset in range(0, len(stream.events), 100):
        body = {
            "stream_id": "t",
            "events": stream.events[offset : offset + 100],
            "config_override": {"profile": "balanced"},
        }
        found = service.detect(body, request_id="t")["anomalies"]
        assert all("incident" in a for a in found)  # this service marks every anomaly
        opened += [offset + a["index"] for a in found if (a["incident"] or {}).get("opened")]
        alarms += told(found, offset)
    assert opened and alarms == opened
