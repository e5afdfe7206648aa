"""The console of `driftlock serve`: a real server fed a seeded scenario, a real headless Chromium, sign-in,
pages, actions through the API, refusals."""

from __future__ import annotations

import random
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from tests import traffic
from tests.support import ServerProcess, running_server, wait_for

ROOT = Path(__file__).resolve().parent.parent
KEY = "console-test-key-0123456789"
API = {"X-Api-Key": KEY}
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


# -- the scenario ------------------------------------------------------------------------------------------------


def probe(rng: random.Random) -> dict[str, Any]:
    """A scanner's login probe: seen now and then in ordinary traffic, in a burst during the scenario."""
    event = traffic.scanner(rng)
    event["body"]["route"] = "/wp-login.php"
    return event


DURATION_NS = {"<25ms": 15_000_000, "<50ms": 30_000_000, "<100ms": 70_000_000, "<250ms": 150_000_000}


def as_span(event: Mapping[str, Any], rng: random.Random, at_ns: int) -> dict[str, Any]:
    """The OTLP/JSON server span the exporter would have turned into ``event`` (with a trace id of its own)."""
    body = event["body"]
    attributes = [
        {"key": "http.request.method", "value": {"stringValue": body["method"]}},
        {"key": "http.route", "value": {"stringValue": body["route"]}},
        {"key": "http.response.status_code", "value": {"intValue": str(body["status"])}},
        {"key": "driftlock.user", "value": {"stringValue": body["user"]}},
    ]
    if body.get("query"):
        attributes.append({"key": "url.query", "value": {"stringValue": urlencode(body["query"])}})
    return {
        "traceId": f"{rng.getrandbits(128):032x}",
        "spanId": f"{rng.getrandbits(64):016x}",
        "name": f"{body['method']} {body['route']}",
        "kind": 2,
        "startTimeUnixNano": str(at_ns),
        "endTimeUnixNano": str(at_ns + DURATION_NS[body["duration"]]),
        "attributes": attributes,
    }


def seed_scenario(
    server: ServerProcess, stream_id: str = "shop", headers: Mapping[str, str] | None = None, *, otlp: bool = False
) -> str:
    """Ordinary traffic (with four stray probes), then a burst of login probes: one incident opens. Its id.

    Sent with ``POST /v1/detect``, or as OTLP/JSON spans to ``/v1/traces`` (then anomalies carry trace ids)."""
    rng = random.Random(1)
    baseline = [traffic.normal(rng) for _ in range(460)]
    for i in (50, 150, 300, 420):
        baseline[i] = probe(rng)
    batches = [baseline] + [
        [traffic.normal(rng) for _ in range(25)] + [probe(rng) for _ in range(25)] for _ in range(4)
    ]
    now_ns = time.time_ns()
    for batch in batches:
        if otlp:
            spans = [as_span(e, rng, now_ns + i * 1_000_000) for i, e in enumerate(batch)]
            resource = {"attributes": [{"key": "service.name", "value": {"stringValue": stream_id}}]}
            payload = {
                "resourceSpans": [{"resource": resource, "scopeSpans": [{"scope": {"name": "t"}, "spans": spans}]}]
            }
            response = server.post("/v1/traces", json=payload, headers=headers)
        else:
            response = server.post("/v1/detect", json={"stream_id": stream_id, "events": batch}, headers=headers)
        assert response.status_code == 200, response.text
    listed = server.get("/v1/incidents", params={"stream_id": stream_id}, headers=headers).json()
    assert listed["total"] == 1, listed
    return str(listed["incidents"][0]["id"])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServerProcess]:
    """`driftlock serve --api-key ...` on a fresh SQLite file."""
    with running_server(tmp_path / "driftlock.sqlite3", "--api-key", KEY) as server:
        yield server


@contextmanager
def signed_in(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=30) as client:
        response = client.post("/sign-in", data={"api_key": KEY, "next": "/"})
        assert response.status_code == 303 and response.headers["location"] == "/"
        set_cookie = response.headers["set-cookie"].lower()
        assert "httponly" in set_cookie and "samesite=strict" in set_cookie and "path=/" in set_cookie
        assert KEY not in response.headers["set-cookie"]  # the cookie never carries the key
        yield client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def status_of(server: ServerProcess, incident_id: str) -> str:
    return str(server.get(f"/v1/incidents/{incident_id}", headers=API).json()["status"])


# -- HTTP: refusals, sessions, CSRF --------------------------------------------------------------------------------


def test_without_the_key_every_page_and_action_is_refused(served: ServerProcess) -> None:
    incident_id = seed_scenario(served, headers=API)
    pages = ("/", "/incidents", f"/incidents/{incident_id}", "/streams/shop", "/incidents?status=open", "/streams/x/y")
    with httpx.Client(base_url=served.url, timeout=30) as anonymous:
        for path in pages:
            response = anonymous.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/sign-in?next="), path
            assert "wp-login" not in response.text and "shop" not in response.text
        for path, data in (
            (f"/incidents/{incident_id}/feedback", {"feedback_type": "false_positive"}),
            (f"/incidents/{incident_id}/resolve", {}),
            ("/mute", {"stream_id": "shop", "minutes": "60"}),
        ):
            response = anonymous.post(path, data=data)
            assert response.status_code == 403 and "Sign in first" in response.text, path
        wrong = anonymous.post("/sign-in", data={"api_key": "not-the-key", "next": "/"})
        assert wrong.status_code == 401 and "not accepted" in wrong.text and not wrong.cookies
        huge = anonymous.post("/sign-in", data={"api_key": "x" * 100_000})
        assert huge.status_code == 413  # sign-in reads a bounded body
        multipart = anonymous.post("/sign-in", files={"api_key": ("k", b"x")})
        assert multipart.status_code == 415
    forged = "1700000000.00000000000000000000000000000000.0000000000000000." + "0" * 64
    with httpx.Client(base_url=served.url, timeout=30, cookies={"driftlock_console": forged}) as client:
        assert client.get("/").status_code == 303
        assert client.post(f"/incidents/{incident_id}/resolve", data={"csrf": "0" * 64}).status_code == 403
    assert status_of(served, incident_id) == "open"
    assert served.get("/v1/streams/shop", headers=API).json()["muted_until"] is None
    assert served.get("/static/uPlot.iife.min.js").status_code == 200  # the package's public assets only


def test_a_session_is_signed_and_actions_need_its_csrf_token(served: ServerProcess) -> None:
    incident_id = seed_scenario(served, headers=API)
    with signed_in(served.url) as client:
        page = client.get(f"/incidents/{incident_id}")
        assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        cookie = client.cookies["driftlock_console"]
        token = csrf_of(page.text)
        tampered = cookie[:-1] + ("0" if cookie[-1] != "0" else "1")
        with httpx.Client(base_url=served.url, timeout=30, cookies={"driftlock_console": tampered}) as other:
            assert other.get("/").status_code == 303
        action = f"/incidents/{incident_id}/resolve"
        assert client.post(action, data={}).status_code == 403
        assert client.post(action, data={"csrf": "0" * 64}).status_code == 403
        assert client.post(action, data={"csrf": token}, headers={"origin": "http://evil.example"}).status_code == 403
        assert client.post(action, data={"csrf": token}, headers={"sec-fetch-site": "cross-site"}).status_code == 403
        assert status_of(served, incident_id) == "open"
        done = client.post(action, data={"csrf": token})
        assert done.status_code == 303 and done.headers["location"] == f"/incidents/{incident_id}?done=resolved"
        assert status_of(served, incident_id) == "resolved"
        muted = client.post(
            "/mute", data={"csrf": token, "stream_id": "shop", "minutes": "60", "next": "//evil.example/"}
        )
        assert muted.status_code == 303 and muted.headers["location"] == "/streams/shop"
        assert served.get("/v1/streams/shop", headers=API).json()["muted_until"] is not None
        assert client.get("/incidents/no-such-incident").status_code == 404
        assert client.get("/streams/never-seen").status_code == 404
        assert client.get("/incidents", params={"status": "resolved"}).text.count('class="incident-row"') == 1
        assert client.get("/incidents", params={"status": "open"}).text.count('class="incident-row"') == 0
        assert client.get("/sign-in", params={"next": "https://evil.example/"}).headers["location"] == "/"
        assert client.post("/sign-out", data={"csrf": token}).status_code == 303
        assert client.get("/").status_code == 303  # signed out: the cookie is gone


def test_sign_in_failures_are_limited(served: ServerProcess) -> None:
    with httpx.Client(base_url=served.url, timeout=30) as client:
        for _ in range(10):
            assert client.post("/sign-in", data={"api_key": "guess", "next": "/"}).status_code == 401
        assert client.post("/sign-in", data={"api_key": "guess", "next": "/"}).status_code == 429
        # the right key from the same address is still accepted: others' failures never lock it out
        assert client.post("/sign-in", data={"api_key": KEY, "next": "/"}).status_code == 303
    metrics = served.get("/metrics", headers=API).text
    assert "driftlock_console_sign_in_failures_total 10.0" in metrics


def test_without_api_keys_the_console_is_open_on_loopback_only(tmp_path: Path) -> None:
    with running_server(tmp_path / "driftlock.sqlite3") as server:
        incident_id = seed_scenario(server)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            page = client.get(f"/incidents/{incident_id}")
            assert page.status_code == 200 and "GET /wp-login.php 404" in page.text
            token = csrf_of(page.text)
            assert client.post(f"/incidents/{incident_id}/resolve", data={"csrf": "x"}).status_code == 403
            assert status_of(server, incident_id) == "open"
            # DNS rebinding: a page of attacker.example that resolves to 127.0.0.1 is refused
            assert client.get("/", headers={"host": "attacker.example"}).status_code == 403
            assert client.post(f"/incidents/{incident_id}/resolve", data={"csrf": token}).status_code == 303
        with httpx.Client(base_url=server.url, timeout=30) as cookieless:  # a cross-site form has no cookie
            assert (
                cookieless.post("/mute", data={"csrf": token, "stream_id": "shop", "minutes": "5"}).status_code == 403
            )
        assert status_of(server, incident_id) == "resolved"
        assert server.get("/v1/streams/shop").json()["muted_until"] is None


# -- the browser -----------------------------------------------------------------------------------------------------


@pytest.fixture
def browser() -> Iterator[Any]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("needs Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="driftlock-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
        f"--user-data-dir={profile}", "--window-size=1280,1400",
    ):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def browser_errors(driver: Any) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def band_pixel(driver: Any, plot: str) -> list[int]:
    """The colour (RGBA) of the plot's canvas in the middle of its first incident band, near the top."""
    return list(
        driver.execute_script(
            """
            const u = window.driftlockPlots[arguments[0]];
            const data = JSON.parse(document.getElementById('plot-data').textContent);
            const inc = data.incidents[0];
            const x = Math.round(u.valToPos((inc.start + inc.end) / 2, 'x', true));
            const y = Math.round(u.bbox.top + 3);
            return Array.from(u.ctx.getImageData(x, y, 1, 1).data);
            """,
            plot,
        )
    )


def test_console_in_chromium_against_driftlock_serve(served: ServerProcess, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    incident_id = seed_scenario(served, headers=API, otlp=True)
    incident = served.get(f"/v1/incidents/{incident_id}", headers=API).json()
    assert incident["status"] == "open" and incident["explanation"]["surges"]
    trace_ids = [a["trace_id"] for a in incident["anomalies"]]
    assert all(trace_ids), trace_ids
    calibrating = served.post(
        "/v1/detect", json={"stream_id": "billing/worker", "events": traffic.events(120)}, headers=API
    )
    assert calibrating.status_code == 200 and calibrating.json()["detection_ready"] is False

    # without the key: every page and action is refused, and the API still says "open"
    with httpx.Client(base_url=served.url, timeout=10) as anonymous:
        for path in ("/", "/incidents", f"/incidents/{incident_id}", "/streams/shop", "/incidents?status=open"):
            response = anonymous.get(path)
            assert response.status_code == 303 and response.headers["location"].startswith("/sign-in"), path
        for path, data in (
            (f"/incidents/{incident_id}/feedback", {"feedback_type": "false_positive"}),
            (f"/incidents/{incident_id}/resolve", {}),
            ("/mute", {"stream_id": "shop", "minutes": "60"}),
        ):
            assert anonymous.post(path, data=data).status_code == 403, path
        assert anonymous.post("/sign-in", data={"api_key": "guess", "next": "/"}).status_code == 401
    assert served.get(f"/v1/incidents/{incident_id}", headers=API).json()["status"] == "open"
    assert served.get("/v1/streams/shop", headers=API).json()["muted_until"] is None

    def find(css: str) -> Any:
        return browser.find_element(By.CSS_SELECTOR, css)

    def plots_ready() -> Any:
        return browser.execute_script("return document.documentElement.dataset.plotsReady")

    browser.get(served.url + f"/incidents/{incident_id}")
    wait_for(lambda: "/sign-in" in browser.current_url, message="the sign-in page")
    find("#api_key").send_keys(KEY)
    find("#sign-in").click()
    wait_for(lambda: browser.current_url.endswith(f"/incidents/{incident_id}"), message="back to the incident")

    browser.get(served.url + "/")
    rows = {r.get_attribute("data-stream-id"): r for r in browser.find_elements(By.CSS_SELECTOR, "tr.stream-row")}
    assert set(rows) == {"shop", "billing/worker"}
    assert "ready" in rows["shop"].text and "balanced" in rows["shop"].text
    assert (
        "calibrating" in rows["billing/worker"].text
        and "more events to the first detection" in rows["billing/worker"].text
    )
    wait_for(plots_ready, message="the sparklines")
    assert len(browser.find_elements(By.CSS_SELECTOR, "tr.stream-row .spark canvas")) == 2

    rows["billing/worker"].find_element(By.CSS_SELECTOR, "a").click()
    wait_for(lambda: browser.current_url.endswith("/streams/billing/worker"), message="a stream id with a slash")
    assert find("#stream-title").text == "billing/worker"
    browser.back()
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "tr.stream-row[data-stream-id=shop] a"), message="back")
    find("tr.stream-row[data-stream-id=shop] a").click()
    wait_for(lambda: browser.current_url.endswith("/streams/shop"), message="the stream page")
    wait_for(plots_ready, message="the timeline")
    for plot in ("#timeline-events", "#timeline-score"):
        canvas = find(f"{plot} canvas")
        assert canvas.size["width"] > 300 and canvas.size["height"] > 100
        assert find(f"{plot} .uplot").get_attribute("data-incidents-drawn") == "1"
    red, green, blue, alpha = band_pixel(browser, "score")
    assert alpha > 0 and red > green and red > blue, (red, green, blue, alpha)
    anomalies_plotted = browser.execute_script(
        "return window.driftlockPlots.score.data[2].filter(v => v !== null).length"
    )
    assert anomalies_plotted >= 3
    assert browser_errors(browser) == []
    browser.find_element(By.LINK_TEXT, "Last day").click()
    wait_for(lambda: browser.current_url.endswith("?range=day") and plots_ready(), message="the day's timeline")
    assert find("#timeline-score .uplot").get_attribute("data-incidents-drawn") == "1"
    span = browser.execute_script("const x = window.driftlockPlots.events.scales.x; return x.max - x.min")
    assert abs(span - 86400) < 5
    browser.find_element(By.LINK_TEXT, "Last hour").click()
    wait_for(lambda: browser.current_url.endswith("?range=hour") and plots_ready(), message="the hour's timeline")

    find("#timeline-incidents a").click()
    wait_for(lambda: browser.current_url.endswith(f"/incidents/{incident_id}"), message="the incident page")
    surge = incident["explanation"]["surges"][0]
    row = browser.find_elements(By.CSS_SELECTOR, "#surges tr.surge")[0]
    assert "GET /wp-login.php 404" in row.text
    assert row.find_element(By.CSS_SELECTOR, ".window-count").text == f"{surge['count']} of {surge['window']}"
    assert row.find_element(By.CSS_SELECTOR, ".baseline-count").text == (
        f"{surge['baseline_count']} of {surge['baseline']}"
    )
    assert len(browser.find_elements(By.CSS_SELECTOR, "#anomalies tbody tr")) == len(incident["anomalies"])
    shown = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#anomalies .trace-id")]
    assert shown == trace_ids
    assert "open" in find("#incident-status").text
    (ROOT / "docs").mkdir(exist_ok=True)
    browser.save_screenshot(str(ROOT / "docs" / "console-incident.png"))  # the README's picture

    find("#feedback-false_positive").click()
    wait_for(lambda: browser.find_elements(By.ID, "flash"), message="the feedback flash")
    after = served.get(f"/v1/incidents/{incident_id}", headers=API).json()
    assert after["status"] == "resolved"
    assert [f["feedback_type"] for f in after["feedback"]] == ["false_positive"]
    assert "resolved" in find("#incident-status").text
    assert browser_errors(browser) == []
