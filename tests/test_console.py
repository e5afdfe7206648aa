"""The console of `driftlock serve`: a real server, a real headless Chromium, sign-in, pages, actions, refusals."""

from __future__ import annotations

import random
import secrets
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from driftlock.server.console import console_routes
from tests import traffic
from tests.support import ServerProcess, running_server, wait_for

ROOT = Path(__file__).resolve().parent.parent
KEY = "console-test-key"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class FakeDetectionServiceForConsole:
    """Stands in for ``driftlock.service.DetectionService`` (same methods, same shapes) until it lands on main.

    Holds one seeded scenario: a stream with an hour of ordinary traffic and a scanner burst that opened an
    incident 12 minutes ago, plus a calibrating stream.
    """

    class NotFound(Exception):
        status = 404

        def __init__(self, message: str) -> None:
            super().__init__(message)
            self.message = message

    def __init__(self) -> None:
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        self.lock = threading.Lock()
        opened = now - timedelta(minutes=12)
        self.minutes = [
            {"minute": iso(now - timedelta(minutes=59 - i)), "events": 40 + (i * 7) % 13 + (30 if i in (47, 48) else 0)}
            for i in range(60)
        ]
        self.detections = [
            {
                "at": iso(now - timedelta(minutes=59 - i, seconds=-30)),
                "position": 450 + i * 50,
                "ncd": 0.31 + (i % 5) * 0.01 + (0.3 if i in (47, 48, 49) else 0),
                "p_value": 0.001 if i in (47, 48, 49) else 0.4,
                "anomaly": i in (47, 48, 49),
            }
            for i in range(60)
        ]
        scanner = {"type": "trace", "body": {"kind": "http", "method": "GET", "route": "/wp-login.php", "status": 404,
                                             "duration": "<25ms", "user": "anonymous"}, "attributes": {"service": "shop"}}  # fmt: skip
        env_probe = {**scanner, "body": {**scanner["body"], "route": "/.env"}}
        self.incidents: dict[str, dict[str, Any]] = {
            "inc-1": {
                "id": "inc-1",
                "stream_id": "shop",
                "status": "open",
                "opened_at": iso(opened),
                "last_seen_at": iso(opened + timedelta(minutes=2)),
                "resolved_at": None,
                "anomaly_count": 3,
                "feedback": [],
                "explanation": {
                    "summary": "Requests to /wp-login.php and /.env, far more than usual",
                    "signal": "frequency",
                    "routes": ["/wp-login.php", "/.env"],
                    "surges": [
                        {"event": scanner, "count": 17, "window": 50, "baseline_count": 0, "baseline": 400},
                        {"event": env_probe, "count": 9, "window": 50, "baseline_count": 1, "baseline": 400},
                    ],
                    "least_like": [{"event": env_probe}],
                },
                "anomalies": [
                    {
                        "id": f"an-{i}",
                        "detected_at": iso(opened + timedelta(minutes=i)),
                        "ncd": 0.62 + i / 100,
                        "p_value": 0.001,
                        "confidence": 0.999,
                        "trace_id": f"{i:032x}" if i else None,
                        "why": "Anomalous window: NCD 0.62 (baseline 0.31)",
                    }
                    for i in range(3)
                ],
            }
        }
        self.streams: dict[str, dict[str, Any]] = {
            "shop": {"stream_id": "shop", "events_ingested": 2950, "status": "ready", "detection_ready": True,
                     "progress_percent": 100, "detections": 60, "anomaly_count": 3,
                     "last_event_at": iso(now), "last_detection_at": iso(now), "open_incidents": 1,
                     "muted_until": None, "profile": "balanced"},
            "billing/worker": {"stream_id": "billing/worker", "events_ingested": 120, "status": "calibrating",
                               "detection_ready": False, "progress_percent": 30, "detections": 0, "anomaly_count": 0,
                               "last_event_at": iso(now), "last_detection_at": None, "open_incidents": 0,
                               "muted_until": None, "profile": "balanced"},
        }  # fmt: skip
        self.calls: list[tuple[str, Any]] = []

    def _public(self, incident: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in incident.items() if k != "anomalies"}

    def list_streams(self, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        with self.lock:
            rows = list(self.streams.values())
            return {"streams": [dict(r) for r in rows[offset : offset + limit]], "total": len(rows)}

    def stream_info(self, stream_id: str) -> dict[str, Any] | None:
        with self.lock:
            info = self.streams.get(stream_id)
            return dict(info) if info else None

    def stream_timeline(self, stream_id: str, since_seconds: int = 3600) -> dict[str, Any]:
        with self.lock:
            if stream_id != "shop":
                return {"stream_id": stream_id, "minutes": [], "detections": [], "incidents": []}
            incidents = [
                {k: i[k] for k in ("id", "status", "opened_at", "resolved_at")} for i in self.incidents.values()
            ]
            return {
                "stream_id": stream_id,
                "minutes": self.minutes,
                "detections": self.detections,
                "incidents": incidents,
            }

    def list_incidents(
        self, stream_id: str | None = None, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> dict[str, Any]:
        with self.lock:
            rows = [
                self._public(i)
                for i in self.incidents.values()
                if (stream_id is None or i["stream_id"] == stream_id) and (status is None or i["status"] == status)
            ]
            return {"incidents": rows[offset : offset + limit], "total": len(rows), "limit": limit, "offset": offset}

    def get_incident(self, incident_id: str) -> dict[str, Any]:
        with self.lock:
            if incident_id not in self.incidents:
                raise self.NotFound(f"incident {incident_id} not found")
            return dict(self.incidents[incident_id])

    def incident_feedback(self, incident_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.calls.append(("feedback", (incident_id, dict(body))))
            incident = self.incidents.get(incident_id)
            if incident is None:
                raise self.NotFound(f"incident {incident_id} not found")
            incident["feedback"].append({**body, "created_at": iso(datetime.now(UTC))})
            if body["feedback_type"] in ("false_positive", "dismissed"):
                incident["status"], incident["resolved_at"] = "resolved", iso(datetime.now(UTC))
            return {"success": True, "message": "Feedback recorded"}

    def resolve_incident(self, incident_id: str) -> dict[str, Any]:
        with self.lock:
            self.calls.append(("resolve", incident_id))
            incident = self.incidents[incident_id]
            incident["status"], incident["resolved_at"] = "resolved", iso(datetime.now(UTC))
            return self._public(incident)

    def mute_stream(self, stream_id: str, seconds: int) -> dict[str, Any]:
        with self.lock:
            self.calls.append(("mute", (stream_id, seconds)))
            self.streams[stream_id]["muted_until"] = iso(datetime.now(UTC) + timedelta(seconds=seconds))
            return dict(self.streams[stream_id])


class ThreadedConsole:
    """The console's routes over the fake service, served by a real uvicorn on a loopback port (in a thread)."""

    def __init__(self, service: Any, api_keys: tuple[str, ...]) -> None:
        app = Starlette(routes=console_routes(service, api_keys=api_keys, secret=secrets.token_bytes(32)))
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> ThreadedConsole:
        self.thread.start()
        wait_for(lambda: self.server.started, timeout=15, message="the console server to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture
def fake() -> FakeDetectionServiceForConsole:
    return FakeDetectionServiceForConsole()


@pytest.fixture
def console(fake: FakeDetectionServiceForConsole) -> Iterator[ThreadedConsole]:
    with ThreadedConsole(fake, (KEY,)) as server:
        yield server


@pytest.fixture
def open_console(fake: FakeDetectionServiceForConsole) -> Iterator[ThreadedConsole]:
    with ThreadedConsole(fake, ()) as server:
        yield server


@contextmanager
def signed_in(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=10) as client:
        response = client.post("/sign-in", data={"api_key": KEY, "next": "/"})
        assert response.status_code == 303 and response.headers["location"] == "/"
        yield client


def csrf_of(html: str) -> str:
    marker = 'name="csrf" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


# -- HTTP: refusals, sessions, CSRF ------------------------------------------------------------------------------


def test_without_the_key_every_page_and_action_is_refused(
    console: ThreadedConsole, fake: FakeDetectionServiceForConsole
) -> None:
    with httpx.Client(base_url=console.url, timeout=10) as anonymous:
        for path in (
            "/",
            "/incidents",
            "/incidents/inc-1",
            "/streams/shop",
            "/streams/billing/worker",
            "/incidents?status=open",
        ):
            response = anonymous.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/sign-in?next="), path
            assert "wp-login" not in response.text and "shop" not in response.text
        for path, data in (
            ("/incidents/inc-1/feedback", {"feedback_type": "false_positive"}),
            ("/incidents/inc-1/resolve", {}),
            ("/mute", {"stream_id": "shop", "minutes": "60"}),
        ):
            response = anonymous.post(path, data=data)
            assert response.status_code == 403, path
    with httpx.Client(base_url=console.url, timeout=10, cookies={"driftlock_console": "1.abc.def.0123"}) as forged:
        assert forged.get("/").status_code == 303
    with httpx.Client(base_url=console.url, timeout=10) as anonymous:
        wrong = anonymous.post("/sign-in", data={"api_key": "not-the-key", "next": "/"})
        assert wrong.status_code == 401 and "not accepted" in wrong.text and "driftlock_console" not in wrong.cookies
    assert fake.calls == []
    assert fake.incidents["inc-1"]["status"] == "open"


def test_a_session_is_signed_and_actions_need_its_csrf_token(
    console: ThreadedConsole, fake: FakeDetectionServiceForConsole
) -> None:
    with signed_in(console.url) as client:
        page = client.get("/incidents/inc-1")
        assert page.status_code == 200 and "Content-Security-Policy" in page.headers
        token = csrf_of(page.text)
        tampered = client.cookies["driftlock_console"][:-1] + (
            "0" if client.cookies["driftlock_console"][-1] != "0" else "1"
        )
        with httpx.Client(base_url=console.url, cookies={"driftlock_console": tampered}) as other:
            assert other.get("/").status_code == 303
        assert client.post("/incidents/inc-1/resolve", data={}).status_code == 403
        assert client.post("/incidents/inc-1/resolve", data={"csrf": "0" * 64}).status_code == 403
        cross = client.post("/incidents/inc-1/resolve", data={"csrf": token}, headers={"origin": "http://evil.example"})
        assert cross.status_code == 403
        assert fake.calls == []
        done = client.post("/incidents/inc-1/resolve", data={"csrf": token})
        assert done.status_code == 303 and done.headers["location"] == "/incidents/inc-1?done=resolved"
        assert fake.calls == [("resolve", "inc-1")]
        muted = client.post(
            "/mute", data={"csrf": token, "stream_id": "shop", "minutes": "60", "next": "//evil.example/"}
        )
        assert muted.status_code == 303 and muted.headers["location"] == "/streams/shop"
        assert fake.calls[-1] == ("mute", ("shop", 3600))
        assert client.get("/incidents/nope").status_code == 404
        assert client.get("/streams/never-seen").status_code == 404
        sign_in_next = client.get("/sign-in", params={"next": "https://evil.example/"})
        assert sign_in_next.status_code == 303 and sign_in_next.headers["location"] == "/"


def test_without_api_keys_the_console_is_open_on_loopback_only(
    open_console: ThreadedConsole, fake: FakeDetectionServiceForConsole
) -> None:
    with httpx.Client(base_url=open_console.url, timeout=10) as client:
        page = client.get("/incidents/inc-1")
        assert page.status_code == 200 and "wp-login.php" in page.text
        token = csrf_of(page.text)
        assert client.post("/incidents/inc-1/resolve", data={"csrf": "x"}).status_code == 403
        assert client.post("/incidents/inc-1/resolve", data={"csrf": token}).status_code == 303
        rebinding = client.get("/", headers={"host": "attacker.example"})
        assert rebinding.status_code == 403
    with httpx.Client(base_url=open_console.url, timeout=10) as cookieless:
        assert cookieless.post("/mute", data={"csrf": token, "stream_id": "shop", "minutes": "5"}).status_code == 403
    assert fake.calls == [("resolve", "inc-1")]


# -- the browser -------------------------------------------------------------------------------------------------


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


def test_console_in_chromium(console: ThreadedConsole, fake: FakeDetectionServiceForConsole, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    def find(css: str) -> Any:
        return browser.find_element(By.CSS_SELECTOR, css)

    browser.get(console.url + "/incidents/inc-1")
    assert "/sign-in" in browser.current_url
    find("#api_key").send_keys("wrong")
    find("#sign-in").click()
    wait_for(lambda: browser.find_elements(By.ID, "sign-in-error"), message="the refused sign-in")
    find("#api_key").send_keys(KEY)
    find("#sign-in").click()
    wait_for(lambda: browser.current_url.endswith("/incidents/inc-1"), message="the redirect after sign-in")
    assert [e for e in browser_errors(browser) if "401" not in e] == []  # the refused sign-in logs its 401

    browser.get(console.url + "/")
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.stream-row")
    assert [r.get_attribute("data-stream-id") for r in rows] == ["shop", "billing/worker"]
    assert "calibrating 30%" in rows[1].text
    wait_for(lambda: browser.execute_script("return document.documentElement.dataset.plotsReady"), message="sparks")
    assert browser.find_elements(By.CSS_SELECTOR, "tr.stream-row .spark canvas")

    find("tr.stream-row a").click()
    wait_for(lambda: browser.current_url.endswith("/streams/shop"), message="the stream page")
    wait_for(lambda: browser.execute_script("return document.documentElement.dataset.plotsReady"), message="plots")
    for plot in ("#timeline-events", "#timeline-score"):
        canvas = find(f"{plot} canvas")
        assert canvas.size["width"] > 300 and canvas.size["height"] > 100
        assert find(f"{plot} .uplot").get_attribute("data-incidents-drawn") == "1"
    red, green, blue, alpha = band_pixel(browser, "score")
    assert alpha > 0 and red > green and red > blue, (red, green, blue, alpha)
    assert "open incident" in find("#timeline-incidents").text
    browser.save_screenshot("/tmp/console-timeline.png")
    assert browser_errors(browser) == []

    find("#timeline-incidents a").click()
    wait_for(lambda: browser.current_url.endswith("/incidents/inc-1"), message="the incident page")
    surges = browser.find_elements(By.CSS_SELECTOR, "#surges tr.surge")
    assert "GET /wp-login.php 404" in surges[0].text
    assert surges[0].find_element(By.CSS_SELECTOR, ".window-count").text == "17 of 50"
    assert surges[0].find_element(By.CSS_SELECTOR, ".baseline-count").text == "0 of 400"
    assert "00000000000000000000000000000001" in find("#anomalies").text
    shot = ROOT / "docs" / "console-incident.png"
    shot.parent.mkdir(exist_ok=True)
    browser.save_screenshot(str(shot))

    find("#feedback-false_positive").click()
    wait_for(lambda: browser.find_elements(By.ID, "flash"), message="the feedback flash")
    assert "false positive" in find("#flash").text
    assert fake.incidents["inc-1"]["status"] == "resolved"
    assert "resolved" in find("#incident-status").text
    assert browser_errors(browser) == []

    browser.get(console.url + "/incidents?status=open")
    assert browser.find_elements(By.CSS_SELECTOR, "tr.incident-row") == []
    browser.get(console.url + "/incidents?status=resolved")
    assert len(browser.find_elements(By.CSS_SELECTOR, "tr.incident-row")) == 1


# -- against a real `driftlock serve` fed a seeded scenario --------------------------------------------------------


def probe(rng: random.Random) -> dict[str, Any]:
    """A scanner's login probe: seen now and then in ordinary traffic, in a burst during the scenario."""
    event = traffic.scanner(rng)
    event["body"]["route"] = "/wp-login.php"
    return event


def seed_scenario(server: ServerProcess, stream_id: str = "shop", headers: Mapping[str, str] | None = None) -> str:
    """Ordinary traffic (with four stray probes), then a burst of login probes: one incident opens. Its id."""
    rng = random.Random(1)
    baseline = [traffic.normal(rng) for _ in range(460)]
    for i in (50, 150, 300, 420):
        baseline[i] = probe(rng)
    batches = [baseline] + [
        [traffic.normal(rng) for _ in range(25)] + [probe(rng) for _ in range(25)] for _ in range(4)
    ]
    for batch in batches:
        response = server.post("/v1/detect", json={"stream_id": stream_id, "events": batch}, headers=headers)
        assert response.status_code == 200, response.text
    listed = server.get("/v1/incidents", params={"stream_id": stream_id}, headers=headers).json()
    assert listed["total"] == 1, listed
    return str(listed["incidents"][0]["id"])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServerProcess]:
    with running_server(tmp_path / "driftlock.sqlite3", "--api-key", KEY) as server:
        yield server


def test_console_in_chromium_against_driftlock_serve(served: ServerProcess, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    api = {"X-Api-Key": KEY}
    incident_id = seed_scenario(served, headers=api)
    incident = served.get(f"/v1/incidents/{incident_id}", headers=api).json()
    assert incident["status"] == "open" and incident["explanation"]["surges"]

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
    assert served.get(f"/v1/incidents/{incident_id}", headers=api).json()["status"] == "open"
    assert served.get("/v1/streams/shop", headers=api).json()["muted_until"] is None

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
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.stream-row")
    assert [r.get_attribute("data-stream-id") for r in rows] == ["shop"]
    assert "ready" in rows[0].text and "balanced" in rows[0].text
    wait_for(plots_ready, message="the sparklines")

    find("tr.stream-row a").click()
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
    assert "open" in find("#incident-status").text
    shot = ROOT / "docs" / "console-incident.png"
    shot.parent.mkdir(exist_ok=True)
    browser.save_screenshot(str(shot))

    find("#feedback-false_positive").click()
    wait_for(lambda: browser.find_elements(By.ID, "flash"), message="the feedback flash")
    after = served.get(f"/v1/incidents/{incident_id}", headers=api).json()
    assert after["status"] == "resolved"
    assert [f["feedback_type"] for f in after["feedback"]] == ["false_positive"]
    assert "resolved" in find("#incident-status").text
    assert browser_errors(browser) == []
