"""The demo: its scenario generator, its scorer, and `driftlock demo` itself, end to end."""

from __future__ import annotations

import itertools
import json
import statistics
import subprocess
import sys
from collections import Counter
from urllib.parse import unquote_plus

import httpx
import pytest

from driftlock.demo import scenarios
from driftlock.demo.runner import unusual
from driftlock.demo.scenarios import FAULTS
from driftlock.demo.scoring import Episode, score
from driftlock.engine import analyse, event_bytes, resolve_settings
from driftlock.engine.explain import explain
from tests.support import clean_env, wait_for

# -- scenarios ------------------------------------------------------------------------------------


def test_equal_seeds_give_equal_plans_and_other_seeds_differ() -> None:
    assert scenarios.plan(3) == scenarios.plan(3)
    assert scenarios.plan(3) != scenarios.plan(4)


def test_a_plan_has_every_kind_once_per_round_between_ordinary_traffic() -> None:
    phases = scenarios.plan(1, warmup=100, gap=30, episode=20, rounds=2)
    kinds = [p.kind for p in phases if p.kind]
    assert sorted(kinds) == sorted(scenarios.KINDS * 2)
    assert phases[0].kind is None and len(phases[0].requests) == 100 and phases[-1].kind is None
    for before, phase in itertools.pairwise(phases):
        if phase.kind:
            assert before.kind is None and len(before.requests) == 30  # every episode follows ordinary traffic


def test_episode_requests_look_like_their_kind() -> None:
    phases = {p.kind: p for p in scenarios.plan(2, episode=40) if p.kind}
    own = {kind: [r for r in p.requests if r.kind == kind] for kind, p in phases.items()}
    assert all(r.path.endswith((".php", ".env", "config", "credentials", ".sql", ".json", "status", "env", "luci"))
               for r in own["scanner"])  # fmt: skip
    injected = [unquote_plus(r.path.removeprefix("/search/?q=")) for r in own["sql_injection"]]
    assert injected and all(any(mark in q for mark in ("'", '"', "<script>", "../")) for q in injected)
    form, *attempts = own["credential_stuffing"]  # the tool fetches the login form's token once, then tries
    assert (form.method, form.path) == ("GET", "/login/") and attempts
    assert all(r.method == "POST" and r.path == "/login/" and r.data and r.data["csrfmiddlewaretoken"] == scenarios.CSRF
               for r in attempts)  # fmt: skip
    assert {r.visitor for r in own["credential_stuffing"]} == {scenarios.ATTACKER}
    assert all(r.path.startswith("/api/v2/export/") for r in own["new_endpoint"])
    assert phases["error_burst"].fault == "error" and phases["latency_spike"].fault == "slow"
    assert all(r.kind == "error_burst" for r in phases["error_burst"].requests)  # the whole shop suffers
    mixed = phases["scanner"].requests
    assert 0 < len(own["scanner"]) < len(mixed)  # mixed with ordinary traffic
    ordinary = [r for p in scenarios.plan(2) if p.kind is None for r in p.requests]
    assert not any(r.path.startswith("/api/v2/") for r in ordinary)  # the new endpoint really is new
    times = [r.at for p in scenarios.plan(2) for r in p.requests]
    assert times == sorted(times)  # an episode's own requests are timed among the ordinary ones


def _ordinary(seed: int) -> list[scenarios.Request]:
    return [r for p in scenarios.plan(seed) for r in p.requests if p.kind is None and scenarios.is_event(r)]


def test_ordinary_traffic_is_visitors_in_sessions_interleaved() -> None:
    ordinary = [r for p in scenarios.plan(5) for r in p.requests if r.kind in FAULTS or not r.kind]  # episodes too
    ordinary = [r for r in ordinary if scenarios.is_event(r)]
    sessions: dict[int | None, list[scenarios.Request]] = {}
    for r in ordinary:
        sessions.setdefault(r.visitor, []).append(r)
    assert None not in sessions and len(sessions) > 100  # every ordinary event is some visitor's
    assert statistics.median(len(s) for s in sessions.values()) >= 3  # visitors make several requests
    at_once = [len({r.visitor for r in ordinary[i : i + 50]}) for i in range(0, len(ordinary) - 50, 50)]
    assert min(at_once) >= 5 and max(at_once) < 50  # several visitors interleaved, not one draw per visitor
    members = [s for s in sessions.values() if any(r.method == "POST" and r.path == "/login/" for r in s)]
    assert members and all(s[[r.path for r in s].index("/login/")].method == "GET" for s in members)  # the form first
    logins = [r.data for s in members for r in s if r.method == "POST" and r.path == "/login/" and r.data]
    assert all(d["csrfmiddlewaretoken"] == scenarios.CSRF for d in logins)
    assert any(d["password"] != d["username"] + "-secret" for d in logins)  # someone mistyped
    assert any(r.path == "/logout/" for s in members for r in s)
    browsed = [r.path for r in ordinary if r.path.startswith("/products/?page=")]
    assert {"/products/?page=2", "/products/?page=3"} <= set(browsed)  # paginating


def test_searchers_use_the_shops_words_with_a_long_tail_of_new_ones_and_typos() -> None:
    from driftlock.demo.shop.catalog import words

    queries = [unquote_plus(r.path.removeprefix("/search/?q=")).split("&page=")[0]
               for seed in (1, 2, 3) for r in _ordinary(seed) if r.path.startswith("/search/")]  # fmt: skip
    known = set(words())
    terms = [w for q in queries for w in q.split()]
    assert len(queries) > 300 and all(t.isalpha() or "-" in t for t in terms)  # nothing an injection looks like
    share_known = sum(t in known for t in terms) / len(terms)
    assert 0.6 < share_known < 0.95, share_known  # mostly the shop's words, and new ones
    new = Counter(t for t in terms if t not in known)
    assert sum(1 for n in new.values() if n == 1) > 40  # a long tail: most new words are seen once
    assert any(len(t) >= 4 and t not in known and any(_one_edit(t, k) for k in known) for t in new)  # typos


def _one_edit(a: str, b: str) -> bool:
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 2 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]
    short, long = sorted((a, b), key=len)
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


def test_arrivals_ramp_up_then_drift_between_busier_and_quieter_stretches() -> None:
    for seed in (1, 2, 3):
        times = [r.at for p in scenarios.plan(seed) for r in p.requests]
        per_5s = Counter(int(t // 5) for t in times)
        bins = [per_5s[i] for i in range(1, int(times[-1] // 5))]  # whole 5-second bins
        assert per_5s[0] < 0.5 * statistics.median(bins), (seed, per_5s[0], bins)  # the ramp
        after = bins[3:]
        assert max(after) > 1.4 * min(after), (seed, bins)  # the level drifts


def test_unknown_episode_kind_is_named() -> None:
    with pytest.raises(ValueError, match=r"'sniffing'.*scanner"):
        scenarios.plan(1, kinds=("sniffing",))


def test_episode_positions_count_events_not_excluded_requests() -> None:
    health = scenarios.Request("GET", "/health/")
    page = scenarios.Request("GET", "/")
    probe = scenarios.Request("GET", "/.env", kind="scanner")
    phases = [
        scenarios.Phase(None, (page, health, page)),
        scenarios.Phase("scanner", (probe, health, page, probe)),
        scenarios.Phase(None, (page,)),
    ]
    assert list(scenarios.episodes(phases)) == [("scanner", 2, 4)]


def test_visitors_reach_the_shop_in_their_sessions_with_the_forms_csrf_token() -> None:
    """Through a real gunicorn: members' logins pass CSRF (302, or 401 when mistyped; never 403), and so do the
    stuffing tool's attempts, while a login without the token is refused: the check is on."""
    from concurrent.futures import ThreadPoolExecutor

    from driftlock.demo.process import ListeningProcess
    from driftlock.demo.runner import _Pacer, _Sender

    env = clean_env(DJANGO_SETTINGS_MODULE="driftlock.demo.shop.settings", DRIFTLOCK_ENABLED="false")
    shop = ListeningProcess(
        [sys.executable, "-m", "gunicorn", "driftlock.demo.shop.wsgi:application", "--bind", "127.0.0.1:0",
         "--workers", "2", "--threads", "4", "--access-logfile", "-", "--access-logformat", "access %(m)s %(U)s %(s)s"],
        env,
        "gunicorn",
    )  # fmt: skip
    try:
        url = shop.wait_for_url()
        phases = scenarios.plan(4, warmup=300, gap=100, kinds=("credential_stuffing",))
        requests = [r for p in phases for r in p.requests]
        limits = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=url, timeout=30, limits=limits) as http, ThreadPoolExecutor(4) as pool:
            sender = _Sender(http, _Pacer(0.0, 0.0), phases)  # as fast as the shop answers, each visitor in turn
            for phase, places in zip(phases, sender.places, strict=True):
                list(pool.map(sender.send, phase.requests, places))
            assert http.post("/login/", data={"username": "ana", "password": "ana-secret"}).status_code == 403
        lines = wait_for(lambda: (a := [li.split() for li in shop.output if li.startswith("access ")]) and
                         len(a) > len(requests) and a, message="gunicorn's access log")  # fmt: skip
    finally:
        shop.stop()
    answers = Counter((method, path, status) for _, method, path, status in lines)
    assert answers[("POST", "/login/", "302")] > 5 and answers[("POST", "/login/", "401")] > 10, answers
    assert answers[("POST", "/login/", "403")] == 1  # only the request without a token
    assert answers[("POST", "/logout/", "302")] > 0 and not answers[("POST", "/logout/", "403")]
    assert answers[("POST", "/cart/add/", "302")] > 0


# -- scoring --------------------------------------------------------------------------------------


def test_score_finds_misses_and_counts_false_alarms() -> None:
    episodes = [
        Episode("scanner", 1000, 1039),
        Episode("latency_spike", 2000, 2019),
        Episode("new_endpoint", 3000, 3039),
    ]
    alarms = [500, 1020, 2300, 3089]  # 3089 is still within a window of its episode's end
    result = score(episodes, alarms, window=50, normal_events=10_000)
    assert [r.found for r in result.episodes] == [True, False, True]
    assert [r.delay for r in result.episodes] == [20, None, 89]
    assert result.false_alarms == 2 and result.alarms == 4  # 500 and 2300
    assert result.false_alarms_per_10k == 2.0
    assert result.by_kind == {"scanner": (1, 1), "latency_spike": (0, 1), "new_endpoint": (1, 1)}


def test_an_alarm_after_the_window_has_passed_is_false() -> None:
    result = score([Episode("scanner", 100, 120)], [171], window=50, normal_events=1000)
    assert not result.episodes[0].found and result.false_alarms == 1


def test_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="window"):
        score([], [], window=0, normal_events=1)


def test_the_table_names_surging_events_with_their_counts_then_the_least_usual() -> None:
    """The demo's table reads the engine's structured explanation (no prose parsed back)."""
    page = {"kind": "http", "method": "GET", "route": "products/<int:pk>/", "status": 200, "duration": "<10ms"}
    login = {**page, "method": "POST", "route": "login/", "status": 401}
    probe = {**page, "route": "search/", "query": {"q": '" OR ""="'}}  # quotes survive the JSON
    baseline = [event_bytes({"type": "trace", "body": page})] * 399 + [event_bytes({"type": "trace", "body": login})]
    window = [event_bytes({"type": "trace", "body": b}) for b in [page] * 30 + [login] * 19 + [probe]]
    explanation = explain(analyse(baseline, window, resolve_settings(None)), baseline, window)
    named = unusual(explanation.as_dict())
    assert named[:2] == ["POST login/ 401 <10ms: 19 of 50, was 1 of 400", 'GET search/ 200 <10ms q=" OR ""="'], named
    assert "19 of 50 events, 1 of 400 before" in explanation.why()


# -- the command ----------------------------------------------------------------------------------


def test_driftlock_demo_runs_end_to_end_and_finds_episodes() -> None:
    """What the demo promises on visitors' sessions at its own pace (the default 60 s): the attacks told, each
    incident once, at most one false alarm. Its episodes are small on purpose (40 requests, half the attack's
    own), and on 2 shared cores one of them now and then goes untold: two fresh-clone CI runs of the last three missed
    one attack (credential stuffing once, SQL injection once; at 30 s, twice the pace, more go untold)."""
    result = subprocess.run(
        [sys.executable, "-m", "driftlock", "demo", "--json", "--seed", "1"],
        capture_output=True,
        text=True,
        timeout=240,
        env=clean_env(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["episodes_injected"] == 6 and report["events"] > 2000
    assert report["episodes_found"] >= 5, report["episodes"]
    found = {a["kind"] for a in report["alarms"] if a["kind"]}
    attacks = {"scanner", "sql_injection", "new_endpoint", "credential_stuffing"}
    assert len(attacks & found) >= 3, report["episodes"]
    stuffing = [a for a in report["alarms"] if a["kind"] == "credential_stuffing"]
    assert not stuffing or any("login/" in a["routes"] for a in stuffing), stuffing  # it names the attacked route
    assert all(a["why"] and a["routes"] and 0 <= a["p_value"] <= 1 for a in report["alarms"])
    assert report["told_twice"] == 0 and report["opened_untold"] == 0
    false = [(a["why"], a["unusual"]) for a in report["alarms"] if not a["kind"]]
    # Ordinary sessions, searches with new words: today's engine still wakes someone now and then (1 run in 8
    # measured; a burst of one searcher's new words reads as "far from the baseline": issue 22), never more.
    assert report["false_alarms"] <= 1, false


def test_demo_refuses_a_bad_duration() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "driftlock", "demo", "--duration", "0"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "--duration" in result.stderr


def test_demo_keep_leaves_the_console_running_on_its_data() -> None:
    import re
    import signal

    from driftlock.demo.process import ListeningProcess

    proc = ListeningProcess(
        [sys.executable, "-m", "driftlock", "demo", "--json", "--duration", "8", "--keep"], clean_env(), "demo"
    )
    try:
        url = proc.wait_for_line(re.compile(r"keeps running on the demo's data: (http://\S+)"), timeout=150).group(1)
        page = httpx.get(url, timeout=30)
        assert page.status_code == 200 and "demo-shop" in page.text  # the streams page lists the demo's stream
        incidents = httpx.get(url + "v1/incidents", params={"stream_id": "demo-shop"}, timeout=30).json()
        assert incidents["total"] >= 1
    finally:
        proc.proc.send_signal(signal.SIGINT)
        proc.proc.wait(30)
    assert proc.proc.returncode == 0
