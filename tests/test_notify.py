"""Webhook notifications against real local receivers: events, signatures, retries, deadlines, bounds, Slack."""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import json
import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from driftlock.server.metrics import Metrics
from driftlock.server.notify import Notifier, is_slack, verify_body, verify_timestamped
from driftlock.server.notify.slack import slack_payload
from driftlock.service.webhooks import MemoryWebhooks, Webhook
from tests import traffic
from tests.support import ServerProcess, clean_env, free_port_url, running_server, wait_for
from tests.test_console import seed_scenario

SECRET = b"webhook-test-secret"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def type(self) -> str:
        return str(self.json["type"])

    def signed(self, secret: bytes = SECRET) -> bool:
        """Both signatures check out: the page's (hex HMAC of the body) and the timestamped one."""
        return verify_body(secret, self.body, self.headers.get("x-driftlock-signature")) and verify_timestamped(
            secret,
            self.headers.get("x-driftlock-timestamp"),
            self.body,
            self.headers.get("x-driftlock-timestamp-signature"),
        )


class Receiver:
    """A real HTTP receiver on 127.0.0.1. ``script`` answers in order (an int status, ``(status, headers)``,
    or ``"hang"``: wait on the gate until released); then 200."""

    def __init__(self, *script: Any) -> None:
        self.script = list(script)
        self.received: list[Received] = []
        self.gate = threading.Event()
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with outer.lock:
                    outer.received.append(Received(self.path, headers, body, time.monotonic()))
                    step = outer.script.pop(0) if outer.script else 200
                if step == "hang":
                    outer.gate.wait(30)
                    step = 200
                status, extra = step if isinstance(step, tuple) else (step, {})
                try:
                    self.send_response(int(status))
                    for key, value in extra.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def of(self, event_type: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.type == event_type]


class Store:
    """The two reads the notifier makes of a store (an incident's row, an anomaly) and its webhooks."""

    def __init__(self) -> None:
        self.webhooks = MemoryWebhooks()
        self.incidents: dict[str, dict[str, Any]] = {}
        self.anomalies: dict[str, dict[str, Any]] = {}

    def get_incident(self, incident_id: str) -> dict[str, Any] | None:
        return self.incidents.get(incident_id)

    def get_anomaly(self, anomaly_id: str) -> dict[str, Any] | None:
        return self.anomalies.get(anomaly_id)


def incident(status: str = "open", n: int = 1, store: Store | None = None, **changes: Any) -> dict[str, Any]:
    """An incident as the API shows it; with ``store``, its row and opening anomaly are stored there."""
    view = {
        "id": f"inc-{n}",
        "stream_id": "shop",
        "status": status,
        "opened_at": "2026-12-01T22:00:00.000Z",
        "last_seen_at": "2026-12-01T22:01:00.000Z",
        "resolved_at": "2026-12-01T22:30:00.000Z" if status == "resolved" else None,
        "anomaly_count": 3,
        "feedback": [],
        "explanation": {
            "summary": "Requests to /wp-login.php, far more than usual",
            "signal": "frequency",
            "routes": ["GET /wp-login.php"],
            "surges": [
                {
                    "event": {"type": "trace", "body": {"method": "GET", "route": "/wp-login.php", "status": 404}},
                    "count": 17,
                    "window": 50,
                    "baseline_count": 0,
                    "baseline": 400,
                }
            ],
            "least_like": [],
        },
        **changes,
    }
    if store is not None:
        store.incidents[view["id"]] = {**view, "opened_by": f"anom-{n}"}
        store.anomalies[f"anom-{n}"] = {
            "id": f"anom-{n}",
            "stream_id": view["stream_id"],
            "metrics": {"ncd": 0.41, "p_value": 0.0, "confidence_level": 1.0, "entropy_change": 0.2},
            "event": {"timestamp": "2026-12-01T22:00:00Z", "type": "trace", "body": {"route": "/wp-login.php"}},
            "why": "Requests to /wp-login.php, far more than usual",
            "incident_id": view["id"],
        }
    return view


@pytest.fixture
def stopping() -> Iterator[list[Notifier]]:
    started: list[Notifier] = []
    yield started
    for notifier in started:
        notifier.stop(2)


def test_events_as_the_webhooks_page_says_signed_both_ways(stopping: list[Notifier]) -> None:
    store = Store()
    with Receiver() as receiver:
        notifier = Notifier([receiver.url], SECRET, store=store, console_url="http://127.0.0.1:8080").start()
        stopping.append(notifier)
        notifier("opened", incident(store=store))
        notifier("resolved", incident("resolved", store=store))
        notifier("updated", incident(store=store))  # not selected by a --notify URL without events=
        notifier("changed", incident())  # not a kind that notifies
        wait_for(lambda: notifier.stats()["sent"] == 3, message="three deliveries")
        assert [r.type for r in receiver.received] == ["anomaly.detected", "incident.opened", "incident.resolved"]
        detected, opened, resolved = receiver.received
        page = detected.json  # the page's payload: id, type, created_at, data{stream_id, anomaly_id, metrics, ...}
        assert page["id"].startswith("evt_") and page["created_at"].endswith("Z")
        assert list(page) == ["id", "type", "created_at", "data"]
        data = page["data"]
        assert data["stream_id"] == "shop" and data["anomaly_id"] == "anom-1"
        assert data["metrics"] == {"ncd": 0.41, "confidence": 1, "p_value": 0}
        assert data["event"] == {
            "timestamp": "2026-12-01T22:00:00Z",
            "type": "trace",
            "body": {"route": "/wp-login.php"},
        }
        assert data["why"] == "Requests to /wp-login.php, far more than usual"
        assert data["incident_id"] == "inc-1" and data["routes"] == ["GET /wp-login.php"]
        assert data["url"] == "http://127.0.0.1:8080/incidents/inc-1"
        assert (
            opened.json["data"]["incident"]["explanation"]["surges"] and opened.json["data"]["incident_id"] == "inc-1"
        )
        assert resolved.json["data"]["incident"]["status"] == "resolved"
        for seen in receiver.received:
            assert seen.path == "/hook" and seen.headers["content-type"] == "application/json"
            assert seen.headers["x-driftlock-signature"] == hmac.new(SECRET, seen.body, hashlib.sha256).hexdigest()
            timestamp = seen.headers["x-driftlock-timestamp"]
            expected = hmac.new(SECRET, timestamp.encode() + b"." + seen.body, hashlib.sha256).hexdigest()
            assert seen.headers["x-driftlock-timestamp-signature"] == f"sha256={expected}"
            assert seen.signed() and not seen.signed(b"another secret")
            assert not verify_timestamped(SECRET, str(int(time.time()) - 3600), seen.body, f"sha256={expected}")
            assert seen.headers["x-driftlock-event"] == seen.type
            assert seen.headers["x-driftlock-delivery"] == seen.json["id"]
        assert len({r.json["id"] for r in receiver.received}) == 3
        assert notifier.stats() == {"sent": 3, "failed": 0, "retried": 0, "dropped": 0, "queued": 0}


def test_each_webhook_gets_the_events_it_selects(stopping: list[Notifier]) -> None:
    store = Store()
    with Receiver() as flag, Receiver() as stored, Receiver() as unsigned:
        store.webhooks.add_webhook(Webhook.new(stored.url, "stored-secret", ["incident.updated", "incident.resolved"]))
        store.webhooks.add_webhook(Webhook.new(unsigned.url, "", ["anomaly.detected"]))
        notifier = Notifier([flag.url + "?events=incident.opened&keep=1"], SECRET, store=store).start()
        stopping.append(notifier)
        for kind in ("opened", "updated", "resolved"):
            notifier(kind, incident(store=store))
        wait_for(lambda: notifier.stats()["sent"] == 4, message="four deliveries")
        assert [(r.type, r.path) for r in flag.received] == [("incident.opened", "/hook?keep=1")]
        assert [r.type for r in stored.received] == ["incident.updated", "incident.resolved"]
        assert all(r.signed(b"stored-secret") for r in stored.received)
        (seen,) = unsigned.received
        assert seen.type == "anomaly.detected" and "x-driftlock-signature" not in seen.headers
        # the stored webhooks' last results are kept for the console
        # (a result is stored after its receiver has answered, so after the receiver above saw the body)
        wait_for(
            lambda: "incident.resolved: HTTP 200" in str(store.webhooks.list_webhooks()[0].last_result),
            message="the last delivery's result stored",
        )


def test_a_delivery_is_retried_with_the_same_id_and_retry_after_as_an_http_date_wins(
    stopping: list[Notifier],
) -> None:
    when = email.utils.formatdate(time.time() + 2, usegmt=True)  # a backoff of 20 s would be far later
    with Receiver(500, (503, {"Retry-After": when})) as receiver:
        notifier = Notifier([receiver.url], SECRET, backoff=0.05, max_backoff=20).start()
        stopping.append(notifier)
        notifier("resolved", incident("resolved"))
        wait_for(lambda: notifier.stats()["sent"] == 1, timeout=15, message="the delivery after two failures")
        assert len(receiver.received) == 3
        assert len({r.headers["x-driftlock-delivery"] for r in receiver.received}) == 1
        assert all(r.signed() for r in receiver.received)  # each attempt is signed afresh
        waited = receiver.received[2].at - receiver.received[1].at
        assert 0.5 < waited < 4.0, waited
        assert notifier.stats()["retried"] == 2 and notifier.stats()["failed"] == 0


def test_every_non_2xx_answer_is_retried_and_an_unreachable_receiver_gets_five_retries(
    stopping: list[Notifier],
) -> None:
    with Receiver(400, 302, 404) as receiver:
        notifier = Notifier([receiver.url, free_port_url() + "/hook"], SECRET, backoff=0.01).start()
        stopping.append(notifier)
        notifier("resolved", incident("resolved"))
        wait_for(lambda: notifier.stats()["failed"] == 1 and notifier.stats()["sent"] == 1, message="both outcomes")
        assert len(receiver.received) == 4  # as the page says: a non-2xx answer is retried (a redirect too)
        assert notifier.stats()["retried"] == 3 + 5  # the refused connection: 1 attempt and 5 retries
        metrics = Metrics(process=False)
        metrics.add_notifier(notifier.stats)
        text = metrics.render()[0].decode()
        assert "driftlock_notifications_failed_total 1.0" in text
        assert "driftlock_notification_retries_total 8.0" in text


class Trickler:
    """A real receiver on 127.0.0.1 that reads the request, then answers one byte every ``interval`` seconds
    and never finishes its headers: a fault a real web server cannot be made to produce."""

    def __init__(self, interval: float = 3.0) -> None:
        self.interval = interval
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.accepted = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            answer = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1000
            for byte in answer:
                if self.stopping.wait(self.interval):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    def __enter__(self) -> Trickler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.sock.close()


def test_a_trickling_receiver_is_cut_off_at_the_deadline(stopping: list[Notifier]) -> None:
    """#24 finding 8: the deadline covers the whole attempt, not each read (a byte every 0.5 s never lets a
    2 s read timeout expire; the answer would take minutes)."""
    with Trickler(interval=0.5) as trickler, Receiver() as healthy:
        notifier = Notifier([trickler.url], SECRET, timeout=2.0, max_retries=1, backoff=0.01).start()
        stopping.append(notifier)
        started = time.monotonic()
        notifier("resolved", incident("resolved", n=1))
        notifier("resolved", incident("resolved", n=2))
        wait_for(lambda: notifier.stats()["failed"] == 2, timeout=20, message="both deliveries given up")
        took = time.monotonic() - started
        assert trickler.accepted == 4 and 7.5 < took < 14, (trickler.accepted, took)  # 2 x 2 attempts of 2 s
        # the same notifier still delivers elsewhere at once
        other = Notifier([healthy.url], SECRET).start()
        stopping.append(other)
        other("resolved", incident("resolved"))
        wait_for(lambda: other.stats()["sent"] == 1, message="the healthy receiver")


def test_nothing_blocks_while_the_receiver_hangs_and_the_queue_bound_holds(stopping: list[Notifier]) -> None:
    with Receiver("hang") as receiver:
        notifier = Notifier([receiver.url], SECRET, queue_size=5, timeout=20).start()
        stopping.append(notifier)
        notifier("resolved", incident("resolved", n=0))
        wait_for(lambda: len(receiver.received) == 1, message="the first delivery to reach the hanging receiver")
        started = time.monotonic()
        slowest = 0.0
        for n in range(1, 501):
            before = time.monotonic()
            notifier("resolved", incident("resolved", n=n))
            slowest = max(slowest, time.monotonic() - before)
        elapsed = time.monotonic() - started
        assert slowest < 0.05 and elapsed < 2.0, (slowest, elapsed)
        wait_for(lambda: notifier.stats()["dropped"] == 495, message="all but five dropped")
        stats = notifier.stats()
        assert stats["queued"] == 5 and stats["sent"] == 0
        metrics = Metrics(process=False)
        metrics.add_notifier(notifier.stats)
        assert "driftlock_notifications_dropped_total 495.0" in metrics.render()[0].decode()
        receiver.gate.set()
        wait_for(lambda: notifier.stats()["sent"] == 6, message="the held and queued deliveries")
        received = [r.json["data"]["incident_id"] for r in receiver.received]
        assert received[0] == "inc-0" and len(received) == 6
        assert notifier.stats()["queued"] == 0


def test_stop_is_bounded_while_the_receiver_hangs() -> None:
    with Receiver("hang") as receiver:
        notifier = Notifier([receiver.url], SECRET, timeout=20).start()
        notifier("resolved", incident("resolved"))
        notifier("resolved", incident("resolved", n=2))
        wait_for(lambda: len(receiver.received) == 1, message="the delivery to hang")
        started = time.monotonic()
        notifier.stop(0.2)
        assert time.monotonic() - started < 4.0
        assert notifier.stats()["sent"] == 0 and notifier.stats()["failed"] == 2
        notifier("resolved", incident(n=3))  # after stop: ignored, never raises
        assert notifier.stats()["queued"] == 0


HOSTILE = "<!channel> <https://evil.example|click here> & <@U123>"


def test_slack_urls_get_a_slack_payload_with_client_strings_escaped(stopping: list[Notifier]) -> None:
    """#24 finding 9: Slack reads ``<...>`` in ``text`` as mentions and links."""
    assert is_slack("https://hooks.slack.com/services/T000/B000/XXXX")
    assert is_slack("https://chat.example/hooks/abc?format=slack")
    assert not is_slack("https://example.com/hook?format=json")
    hostile = incident(stream_id=f"shop {HOSTILE}")
    hostile["explanation"] = {**hostile["explanation"], "summary": f"Requests {HOSTILE}"}
    with Receiver() as slack, Receiver() as plain:
        notifier = Notifier(
            [slack.url + "?format=slack&channel=ops", plain.url], SECRET, console_url="http://127.0.0.1:8080"
        ).start()
        stopping.append(notifier)
        notifier("opened", hostile)
        wait_for(lambda: notifier.stats()["sent"] == 2, message="both deliveries")
        (seen,) = slack.received  # incident.opened only: Slack is not sent anomaly.detected by default
        assert seen.path == "/hook?channel=ops"  # our own format parameter is not passed on
        body = seen.json
        assert set(body) == {"text", "blocks"}
        text = body["text"]
        assert text.startswith("Driftlock incident opened on stream shop &lt;!channel&gt; &lt;https://evil.example")
        assert "&amp; &lt;@U123&gt;" in text
        assert text.endswith("<http://127.0.0.1:8080/incidents/inc-1|open in the console>")
        assert text.count("<") == 1  # the one link this server made
        mrkdwn = [b["text"]["text"] for b in body["blocks"] if b.get("text", {}).get("type") == "mrkdwn"]
        mrkdwn += [f["text"] for b in body["blocks"] for f in b.get("fields", [])]
        mrkdwn += [e["text"] for b in body["blocks"] for e in b.get("elements", [])]
        assert mrkdwn and not any("<!" in m or "<https://evil" in m or "<@" in m for m in mrkdwn)
        rendered = json.dumps(body["blocks"])
        assert "GET /wp-login.php 404" in rendered and "17 of 50" in rendered
        assert "<http://127.0.0.1:8080/incidents/inc-1|open in the console>" in rendered
        assert seen.signed()
        assert plain.received[0].type == "incident.opened"  # no store: no anomaly to send


def test_slack_escaping_follows_slacks_rules() -> None:
    body = slack_payload("incident.opened", incident(stream_id="a&b<c>d"))
    assert "stream a&amp;b&lt;c&gt;d" in body["text"]
    assert body["blocks"][0]["text"] == {"type": "plain_text", "text": "Driftlock incident opened on stream a&b<c>d"}


def test_bad_urls_and_events_are_refused_at_startup() -> None:
    for url in ("ftp://example.com/hook", "not a url", "http://:80/x", "http://example.com:port/x"):
        with pytest.raises(ValueError, match="http:// or https://"):
            Notifier([url], SECRET)
    with pytest.raises(ValueError, match=r"unknown webhook event 'anomaly\.detect'"):
        Notifier(["http://127.0.0.1:9/hook?events=anomaly.detect"], SECRET)


# -- through a real `driftlock serve` ------------------------------------------------------------------------------


def metric(server: ServerProcess, name: str) -> float:
    for line in server.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not in /metrics")


def test_driftlock_serve_notifies_once_per_incident_opened_and_resolved(tmp_path: Path) -> None:
    with Receiver() as flag, Receiver() as env_hook:
        env = clean_env(
            DRIFTLOCK_SERVE_WEBHOOK_SECRET=SECRET.decode(),
            DRIFTLOCK_SERVE_WEBHOOKS=env_hook.url + "?events=incident.opened+incident.resolved",
        )
        with running_server(tmp_path / "db.sqlite3", "--notify", flag.url, env=env) as server:
            incident_id = seed_scenario(server)
            wait_for(lambda: len(flag.received) == 2 and len(env_hook.received) == 1, message="the opened notices")
            detected, opened = flag.received
            assert [detected.type, opened.type] == ["anomaly.detected", "incident.opened"]
            assert detected.json["data"]["incident_id"] == incident_id == opened.json["data"]["incident_id"]
            anomaly = server.get(f"/v1/anomalies/{detected.json['data']['anomaly_id']}").json()
            assert anomaly["incident_id"] == incident_id and anomaly["why"] == detected.json["data"]["why"]
            assert detected.json["data"]["event"] == anomaly["event"]
            assert opened.json["data"]["incident"]["explanation"]["surges"][0]["count"] > 0
            assert opened.json["data"]["url"] == f"{server.url}/incidents/{incident_id}"
            assert detected.signed() and opened.signed()
            assert server.post(f"/v1/incidents/{incident_id}/resolve").status_code == 200
            wait_for(lambda: len(flag.received) == 3 and len(env_hook.received) == 2, message="the resolved notices")
            resolved = flag.received[2]
            assert resolved.type == "incident.resolved" and resolved.json["data"]["incident"]["status"] == "resolved"
            assert resolved.signed()
            assert [r.type for r in env_hook.received] == ["incident.opened", "incident.resolved"]
            # nothing else is on its way: every notification was sent, none is queued
            assert metric(server, "driftlock_notifications_sent_total") == 5
            assert metric(server, "driftlock_notifications_queued") == 0
            assert metric(server, "driftlock_incidents_opened_total") == 1
            assert metric(server, "driftlock_incidents_resolved_total") == 1
    assert len(flag.received) == 3 and len(env_hook.received) == 2


def test_driftlock_serve_retries_a_notification_after_a_500(tmp_path: Path) -> None:
    with Receiver(500) as receiver:
        env = clean_env(DRIFTLOCK_SERVE_WEBHOOK_SECRET=SECRET.decode())
        hook = receiver.url + "?events=incident.opened"
        with running_server(tmp_path / "db.sqlite3", "--notify", hook, env=env) as server:
            seed_scenario(server)
            wait_for(lambda: len(receiver.received) == 2, timeout=20, message="the retry")
            first, second = receiver.received
            assert first.headers["x-driftlock-delivery"] == second.headers["x-driftlock-delivery"]
            assert second.signed()
            wait_for(lambda: metric(server, "driftlock_notifications_sent_total") == 1, message="the delivery counted")
            assert metric(server, "driftlock_notification_retries_total") == 1
            assert metric(server, "driftlock_notifications_failed_total") == 0


def test_driftlock_serve_detects_while_the_receiver_hangs(tmp_path: Path) -> None:
    with Receiver("hang") as receiver:
        hook = receiver.url + "?events=incident.opened,incident.resolved"
        with running_server(tmp_path / "db.sqlite3", "--notify", hook) as server:
            incident_id = seed_scenario(server)
            wait_for(lambda: len(receiver.received) == 1, message="the notice to reach the hanging receiver")
            rng = random.Random(7)
            for _ in range(3):  # detection and the API answer as usual while the delivery hangs
                started = time.monotonic()
                response = server.post(
                    "/v1/detect", json={"stream_id": "other", "events": traffic.events(50, rng.randrange(1000))}
                )
                assert response.status_code == 200 and time.monotonic() - started < 5
            started = time.monotonic()
            assert server.post(f"/v1/incidents/{incident_id}/resolve").status_code == 200
            assert time.monotonic() - started < 5
            assert not receiver.gate.is_set() and len(receiver.received) == 1
            assert metric(server, "driftlock_notifications_sent_total") == 0
            wait_for(lambda: metric(server, "driftlock_notifications_queued") == 1, message="resolved waits")
            receiver.gate.set()
            wait_for(lambda: len(receiver.received) == 2, message="the queued notice after the hang")
            assert [r.type for r in receiver.received] == ["incident.opened", "incident.resolved"]


def test_driftlock_serve_refuses_a_bad_webhook_url(capsys: pytest.CaptureFixture[str]) -> None:
    from driftlock.cli import main

    assert main(["serve", "--port", "0", "--db", ":memory:", "--notify", "ftp://example.com/hook"]) == 2
    assert "webhook URL must be http:// or https://" in capsys.readouterr().err


class BrokenStore(Store):
    def get_anomaly(self, anomaly_id: str) -> dict[str, Any] | None:
        raise OSError("database is locked")

    def broken_list(self) -> list[Webhook]:
        raise OSError("database is locked")


def test_an_unreadable_store_costs_only_what_needs_it(stopping: list[Notifier]) -> None:
    store = BrokenStore()
    with Receiver() as receiver:
        notifier = Notifier([receiver.url], SECRET, store=store).start()
        stopping.append(notifier)
        notifier("opened", incident(store=store))  # the anomaly cannot be read: incident.opened still goes
        wait_for(lambda: notifier.stats()["sent"] == 1, message="incident.opened")
        store.webhooks.list_webhooks = store.broken_list  # type: ignore[method-assign]
        notifier("resolved", incident("resolved", store=store))  # the stored webhooks cannot be read
        wait_for(lambda: notifier.stats()["sent"] == 2, message="incident.resolved to the --notify webhook")
        assert [r.type for r in receiver.received] == ["incident.opened", "incident.resolved"]
        assert notifier.stats()["failed"] == 1
