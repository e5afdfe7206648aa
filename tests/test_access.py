"""Who may call `driftlock serve` (issue 24, findings 1, 3 and 6): keys checked at start, key scopes, failed keys
throttled without locking out the right one, and no cross-site writes to a server without keys; through a real
`driftlock serve` subprocess, and a real headless Chromium page on another origin."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests import traffic
from tests.support import ServerProcess, clean_env, running_server
from tests.test_server import anomalous_batch

ADMIN = "admin-key-0123456789abcdef"
INGEST = "ingest-key-0123456789abcdef"
STREAMS = "streams-key-0123456789abcdef"
JSON = {"Content-Type": "application/json"}


def serve_refused(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`driftlock serve ...` expected to refuse at start (old code served instead: the timeout fails the test)."""
    cmd = [sys.executable, "-m", "driftlock", "serve", "--port", "0", "--db", ":memory:", *args]
    return subprocess.run(cmd, env=env or clean_env(), capture_output=True, text=True, timeout=30)


# -- finding 1: an empty or short key -----------------------------------------------------------------------------


def test_an_empty_or_short_key_refuses_to_start_and_never_serves_everything() -> None:
    unset = serve_refused("--host", "0.0.0.0", "--api-key", "")  # --api-key "$UNSET_VARIABLE"
    assert unset.returncode == 2 and "listening" not in unset.stdout
    assert "--api-key #1 is empty" in unset.stderr and "16 characters" in unset.stderr
    short = serve_refused("--api-key", ADMIN, "--api-key", "hunter2-pass")
    assert short.returncode == 2 and "--api-key #2 is 12 characters long" in short.stderr
    assert "hunter2" not in short.stdout + short.stderr  # the key is never printed
    blank = serve_refused(env=clean_env(DRIFTLOCK_SERVE_API_KEYS=" "))
    assert blank.returncode == 2 and "DRIFTLOCK_SERVE_API_KEYS is set but holds no key" in blank.stderr
    gap = serve_refused(env=clean_env(DRIFTLOCK_SERVE_API_KEYS=f"{ADMIN},,{INGEST}"))
    assert gap.returncode == 2 and "entry 2 is empty" in gap.stderr
    typo = serve_refused("--api-key", f"{ADMIN}:ingset")
    assert typo.returncode == 2 and "unknown scope" in typo.stderr and ADMIN not in typo.stderr
    with running_server(":memory:", "--api-key", ADMIN) as server:
        assert server.post("/v1/detect", json={"events": [{"a": 1}]}, headers={"X-Api-Key": ""}).status_code == 401
        assert "API keys: 1 accepted (admi… admin)" in "".join(server.output)


def test_key_entries_from_the_flag_and_the_environment() -> None:
    from driftlock.server.access import parse_keys

    keys = parse_keys([f"{INGEST}:ingest"], f"{ADMIN},{ADMIN[::-1]} {STREAMS}:streams=web,api/v2")
    assert [(k.role, sorted(k.streams)) for k in keys] == [
        ("ingest", []),
        ("admin", []),
        ("admin", []),
        ("streams", ["api/v2", "web"]),
    ]
    with pytest.raises(ValueError, match="separate an entry with streams= from the others by a space"):
        parse_keys([], f"{ADMIN},{STREAMS}:streams=web,api")


# -- finding 6: failed keys ------------------------------------------------------------------------------------------


def test_wrong_keys_are_throttled_counted_and_logged_once_and_the_right_key_is_still_served() -> None:
    with running_server(":memory:", "--api-key", ADMIN) as server, httpx.Client(base_url=server.url) as client:
        event = {"stream_id": "web", "events": [{"a": 1}]}
        statuses = [
            client.post("/v1/detect", json=event, headers={"X-Api-Key": f"guess-{n:04d}"}).status_code
            for n in range(12)
        ]
        assert statuses[:10] == [401] * 10 and statuses[10:] == [429, 429]
        throttled = client.post("/v1/detect", json=event, headers={"X-Api-Key": "other-prefix"})
        assert throttled.status_code == 429 and throttled.json()["error"]["code"] == "rate_limit_exceeded"
        assert 1 <= int(throttled.headers["retry-after"]) <= 60
        # the right key, from the same address, in the middle of the throttle: served at once
        for _ in range(3):
            assert client.post("/v1/detect", json=event, headers={"X-Api-Key": ADMIN}).status_code == 200
            assert client.get("/v1/streams", headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 200
        assert client.get("/v1/streams").status_code == 429  # no key at all: the address is over budget too
        metrics = client.get("/metrics", headers={"X-Api-Key": ADMIN}).text
        assert 'driftlock_auth_failures_total{reason="invalid"} 10.0' in metrics
        assert 'driftlock_auth_failures_total{reason="throttled"} 4.0' in metrics
        # the console's sign-in shares the throttle: a wrong key is refused, the right one signs in
        assert client.post("/sign-in", data={"api_key": "guess-console", "next": "/"}).status_code == 429
        assert client.post("/sign-in", data={"api_key": ADMIN, "next": "/"}).status_code == 303
        output = "".join(server.output)
    logged = [line for line in output.splitlines() if "refused a request" in line]
    assert len(logged) == 1 and "wrong key from 127.0.0.1 (key gu…)" in logged[0], logged
    assert "guess-0001" not in output and ADMIN not in output


def test_the_throttle_is_bounded_and_recovers() -> None:
    from driftlock.server.access import FailureThrottle

    throttle = FailureThrottle(burst=2, rate=1.0, max_entries=100)
    for n in range(1000):
        throttle.failed(f"10.0.{n // 256}.{n % 256}", f"p{n}", now=0.0)
    assert throttle.entries() == 200  # addresses and prefixes, the least recent dropped
    throttle.failed("a", now=0.0)
    throttle.failed("a", now=0.0)
    assert throttle.wait("a", now=0.0) == pytest.approx(1.0) and throttle.blocked("a", now=0.5)
    assert throttle.wait("a", now=1.0) == 0.0


# -- key scopes ----------------------------------------------------------------------------------------------------


def test_ingest_and_stream_keys_are_limited_to_their_scope() -> None:
    args = ("--api-key", ADMIN, "--api-key", f"{INGEST}:ingest", "--api-key", f"{STREAMS}:streams=web,api")
    with running_server(":memory:", *args) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        admin, ingest, streams = ({"X-Api-Key": k} for k in (ADMIN, INGEST, STREAMS))
        output = "".join(server.output)
        assert "API keys: 3 accepted (admi… admin, inge… ingest only, stre… streams api, web)" in output

        def status(method: str, path: str, headers: dict[str, str], **kw: Any) -> int:
            response = client.request(method, path, headers=headers, **kw)
            if response.status_code == 403:
                assert response.json()["error"]["code"] == "forbidden", response.text
            return response.status_code

        db = client.post("/v1/detect", json={"stream_id": "db", "events": anomalous_batch()}, headers=admin).json()
        web = client.post("/v1/detect", json={"stream_id": "web", "events": anomalous_batch(2)}, headers=admin).json()
        db_anomaly, web_anomaly = db["anomalies"][0]["id"], web["anomalies"][0]["id"]

        # ingest: events in (detect and OTLP), nothing out
        assert status("POST", "/v1/detect", ingest, json={"stream_id": "db", "events": traffic.events(3)}) == 200
        protobuf = {"Content-Type": "application/x-protobuf"}
        assert status("POST", "/v1/traces", {**ingest, **protobuf}, content=b"") == 200
        for method, path in (
            ("GET", "/v1/streams"),
            ("GET", "/v1/streams/db"),
            ("GET", "/v1/anomalies"),
            ("GET", f"/v1/anomalies/{db_anomaly}"),
            ("GET", "/metrics"),
        ):
            assert status(method, path, ingest) == 403, path
        assert status("POST", "/v1/streams/db/mute", ingest, json={"seconds": 60}) == 403
        assert (
            status("POST", f"/v1/anomalies/{db_anomaly}/feedback", ingest, json={"feedback_type": "false_positive"})
            == 403
        )

        # streams=web,api: everything about web and api, nothing about db or across streams
        assert status("POST", "/v1/detect", streams, json={"stream_id": "api", "events": traffic.events(3)}) == 200
        assert status("POST", "/v1/detect", streams, json={"stream_id": "db", "events": traffic.events(3)}) == 403
        assert status("POST", "/v1/detect", streams, json={"events": traffic.events(3)}) == 403  # the default stream
        assert status("GET", "/v1/streams/web", streams) == 200
        assert status("GET", "/v1/streams/web/timeline", streams) == 200
        assert status("GET", "/v1/streams/db", streams) == 403
        assert status("GET", "/v1/streams/db/events", streams) == 403
        assert status("GET", "/v1/streams", streams) == 403
        assert status("GET", "/v1/anomalies", streams) == 403
        assert status("GET", "/v1/anomalies?stream_id=web", streams) == 200
        assert status("GET", "/v1/anomalies?stream_id=db", streams) == 403
        assert status("GET", f"/v1/anomalies/{web_anomaly}", streams) == 200
        assert status("GET", f"/v1/anomalies/{db_anomaly}", streams) == 403
        assert (
            status("POST", f"/v1/anomalies/{db_anomaly}/feedback", streams, json={"feedback_type": "false_positive"})
            == 403
        )
        assert status("POST", "/v1/streams/db/mute", streams, json={"seconds": 60}) == 403
        assert status("POST", "/v1/streams/web/mute", streams, json={"seconds": 60}) == 200
        assert status("GET", "/metrics", streams) == 403
        assert status("POST", "/v1/traces", {**streams, **protobuf}, content=b"") == 403
        assert client.get("/v1/streams/db", headers=admin).json()["muted_until"] is None
        assert client.get("/v1/streams/web", headers=admin).json()["muted_until"] is not None

        # the console takes admin keys only
        for key in (INGEST, STREAMS):
            assert client.post("/sign-in", data={"api_key": key, "next": "/"}).status_code == 401
        assert client.post("/sign-in", data={"api_key": ADMIN, "next": "/"}).status_code == 303
        metrics = client.get("/metrics", headers=admin).text
        assert re.search(r'driftlock_auth_failures_total\{reason="scope"\} (\d+)', metrics).group(1) == "19"  # type: ignore[union-attr]


# -- finding 3: cross-site writes to a server without keys -------------------------------------------------------


def muted(server: ServerProcess, stream: str) -> bool:
    return server.get(f"/v1/streams/{stream}").json()["muted_until"] is not None


def test_without_keys_cross_site_and_non_json_writes_and_foreign_hosts_are_refused() -> None:
    with running_server(":memory:") as server, httpx.Client(base_url=server.url) as client:
        assert client.post("/v1/detect", json={"stream_id": "victim", "events": traffic.events(5)}).status_code == 200
        mute = '{"seconds": 604800}'
        # the attack of the issue: a page of evil.example, text/plain (no CORS preflight), DNS-rebound Host
        attack = {"Content-Type": "text/plain", "Origin": "http://evil.example", "Host": "evil.example"}
        refused = client.post("/v1/streams/victim/mute", content=mute, headers=attack)
        assert refused.status_code == 403 and "loopback Host" in refused.json()["error"]["message"]
        for headers, expected in (
            ({"Content-Type": "text/plain", "Origin": "http://evil.example"}, 403),
            ({**JSON, "Origin": "http://evil.example"}, 403),
            ({**JSON, "Origin": "null"}, 403),
            ({**JSON, "Sec-Fetch-Site": "cross-site"}, 403),
            ({**JSON, "Sec-Fetch-Site": "same-site"}, 403),
            ({"Content-Type": "text/plain"}, 415),
            ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
            ({"Content-Type": "multipart/form-data; boundary=x"}, 415),
        ):
            response = client.post("/v1/streams/victim/mute", content=mute, headers=headers)
            assert response.status_code == expected and response.json()["error"]["code"], (headers, response.text)
        detect = client.post("/v1/detect", content='{"stream_id": "victim", "events": [{"a": 1}]}', headers=attack)
        assert detect.status_code == 403
        assert client.get("/v1/streams/victim", headers={"Host": "evil.example:8080"}).status_code == 403
        assert client.get("/metrics", headers={"Host": "evil.example"}).status_code == 403
        assert client.get("/healthz", headers={"Host": "evil.example"}).status_code == 200  # a probe tells nothing
        assert not muted(server, "victim") and server.get("/v1/streams/victim").json()["events_ingested"] == 5
        # local clients are served as before, by every loopback name
        for host in ("localhost:1", "127.0.0.1", "[::1]:8080"):
            assert client.get("/v1/streams/victim", headers={"Host": host}).status_code == 200
        local = {**JSON, "Origin": server.url, "Sec-Fetch-Site": "same-origin"}
        assert client.post("/v1/streams/victim/mute", content=mute, headers=local).status_code == 200
        assert muted(server, "victim")
        # the OTLP receiver keeps protobuf for the collector and the SDK, but not from a web page
        otlp = {"Content-Type": "application/x-protobuf"}
        assert client.post("/v1/traces", content=b"", headers=otlp).status_code == 200
        assert (
            client.post("/v1/traces", content=b"", headers={**otlp, "Sec-Fetch-Site": "cross-site"}).status_code == 403
        )
        assert (
            client.post("/v1/traces", content=b"", headers={**otlp, "Origin": "https://evil.example"}).status_code
            == 403
        )


@pytest.fixture
def foreign_page() -> Iterator[str]:
    """A page of another origin (http://evil.example:PORT, which Chromium resolves to 127.0.0.1)."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<!doctype html><title>a page on the web</title><p>nothing to see"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://evil.example:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_web_page_in_chromium_cannot_mute_a_stream_of_a_server_without_keys(foreign_page: str) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from tests.test_console import CHROMEDRIVER, CHROMIUM

    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("needs Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--host-resolver-rules=MAP evil.example 127.0.0.1",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    try:
        with running_server(":memory:") as server:
            assert (
                server.post("/v1/detect", json={"stream_id": "victim", "events": traffic.events(5)}).status_code == 200
            )
            driver.get(foreign_page)
            assert driver.execute_script("return location.origin") == foreign_page.rstrip("/")
            sent = driver.execute_async_script(
                """
                const done = arguments[arguments.length - 1];
                const post = (path, body) => fetch(arguments[0] + path, {
                    method: 'POST', mode: 'no-cors', headers: {'Content-Type': 'text/plain'}, body: body,
                }).then(r => r.type, e => 'error: ' + e);
                Promise.all([
                    post('/v1/streams/victim/mute', JSON.stringify({seconds: 604800})),
                    post('/v1/detect', JSON.stringify({stream_id: 'victim', events: [{a: 1}]})),
                ]).then(done);
                """,
                server.url,
            )
            assert sent == ["opaque", "opaque"], sent  # the browser sent both (the answers are hidden from the page)
            assert not muted(server, "victim")
            assert server.get("/v1/streams/victim").json()["events_ingested"] == 5
    finally:
        driver.quit()
