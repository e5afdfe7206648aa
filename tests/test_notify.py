"""Webhook notifications against a real local receiver: signatures, retries, a hanging receiver, the bound."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from driftlock.server.metrics import Metrics
from driftlock.server.notify import Notifier, is_slack, verify
from tests import traffic
from tests.support import ServerProcess, clean_env, free_port_url, running_server, wait_for
from tests.test_console import seed_scenario

SECRET = b"webhook-test-secret"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """A real HTTP receiver on 127.0.0.1. ``script`` answers in order (an int status, or ``"hang"``: wait on
    the gate until released); then 200."""

    def __init__(self, *script: int | str) -> None:
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
                with outer.lock:
                    outer.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    step = outer.script.pop(0) if outer.script else 200
                if step == "hang":
                    outer.gate.wait(30)
                    step = 200
                try:
                    self.send_response(int(step))
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


def incident(status: str = "open", n: int = 1) -> dict[str, Any]:
    return {
        "id": f"inc-{n}",
        "stream_id": "shop",
        "status": status,
        "opened_at": "2026-12-01T22:00:00Z",
        "last_seen_at": "2026-12-01T22:01:00Z",
        "resolved_at": "2026-12-01T22:30:00Z" if status == "resolved" else None,
        "anomaly_count": 3,
        "feedback": [],
        "explanation": {
            "summary": "Requests to /wp-login.php, far more than usual",
            "signal": "frequency",
            "routes": ["/wp-login.php"],
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
    }


@pytest.fixture
def stopping() -> Iterator[list[Notifier]]:
    started: list[Notifier] = []
    yield started
    for notifier in started:
        notifier.stop(2)


def test_one_signed_notification_per_incident_opened_and_resolved(stopping: list[Notifier]) -> None:
    with Receiver() as receiver:
        notifier = Notifier([receiver.url], SECRET, console_url="http://127.0.0.1:8080").start()
        stopping.append(notifier)
        notifier("opened", incident())
        notifier("resolved", incident("resolved"))
        notifier("changed", incident())  # not a kind that notifies
        wait_for(lambda: notifier.stats()["sent"] == 2, message="two deliveries")
        assert len(receiver.received) == 2
        opened, resolved = receiver.received
        assert [r.json["type"] for r in receiver.received] == ["incident.opened", "incident.resolved"]
        assert opened.path == "/hook" and opened.headers["content-type"] == "application/json"
        assert opened.json["incident"]["id"] == "inc-1" and opened.json["incident"]["explanation"]["surges"]
        assert opened.json["url"] == "http://127.0.0.1:8080/incidents/inc-1"
        assert resolved.json["incident"]["status"] == "resolved"
        for seen in receiver.received:
            timestamp, signature = seen.headers["x-driftlock-timestamp"], seen.headers["x-driftlock-signature"]
            expected = hmac.new(SECRET, timestamp.encode() + b"." + seen.body, hashlib.sha256).hexdigest()
            assert signature == f"sha256={expected}"
            assert verify(SECRET, timestamp, seen.body, signature)
            assert not verify(b"another secret", timestamp, seen.body, signature)
            assert not verify(SECRET, timestamp, seen.body + b" ", signature)
            assert abs(int(timestamp) - time.time()) < 60
            assert seen.headers["x-driftlock-event"] == seen.json["type"]
            assert seen.headers["x-driftlock-delivery"] == seen.json["id"]
        assert opened.json["id"] != resolved.json["id"]
        assert notifier.stats() == {"sent": 2, "failed": 0, "retried": 0, "dropped": 0, "queued": 0}


def test_a_delivery_is_retried_after_a_500_with_the_same_id(stopping: list[Notifier]) -> None:
    with Receiver(500, 503) as receiver:
        notifier = Notifier([receiver.url], SECRET, backoff=0.05).start()
        stopping.append(notifier)
        notifier("opened", incident())
        wait_for(lambda: notifier.stats()["sent"] == 1, message="the delivery after two failures")
        assert len(receiver.received) == 3
        assert len({r.headers["x-driftlock-delivery"] for r in receiver.received}) == 1
        for seen in receiver.received:  # each attempt is signed afresh
            assert verify(
                SECRET, seen.headers["x-driftlock-timestamp"], seen.body, seen.headers["x-driftlock-signature"]
            )
        assert notifier.stats()["retried"] == 2 and notifier.stats()["failed"] == 0


def test_a_refusal_is_not_retried_and_an_unreachable_receiver_fails_after_its_attempts(
    stopping: list[Notifier],
) -> None:
    with Receiver(400) as receiver:
        notifier = Notifier([receiver.url, free_port_url() + "/hook"], SECRET, backoff=0.01, max_attempts=3).start()
        stopping.append(notifier)
        notifier("opened", incident())
        wait_for(lambda: notifier.stats()["failed"] == 2, message="both deliveries to fail")
        assert len(receiver.received) == 1
        assert notifier.stats()["retried"] == 2  # the refused connection: 3 attempts, 2 retries
        metrics = Metrics(process=False)
        metrics.add_notifier(notifier.stats)
        text = metrics.render()[0].decode()
        assert "driftlock_notifications_failed_total 2.0" in text
        assert "driftlock_notification_retries_total 2.0" in text


def test_nothing_blocks_while_the_receiver_hangs_and_the_queue_bound_holds(stopping: list[Notifier]) -> None:
    with Receiver("hang") as receiver:
        notifier = Notifier([receiver.url], SECRET, queue_size=5, timeout=20).start()
        stopping.append(notifier)
        notifier("opened", incident(n=0))
        wait_for(lambda: len(receiver.received) == 1, message="the first delivery to reach the hanging receiver")
        started = time.monotonic()
        slowest = 0.0
        for n in range(1, 501):
            before = time.monotonic()
            notifier("opened", incident(n=n))
            slowest = max(slowest, time.monotonic() - before)
        elapsed = time.monotonic() - started
        assert slowest < 0.05 and elapsed < 2.0, (slowest, elapsed)
        stats = notifier.stats()
        assert stats["queued"] == 5 and stats["dropped"] == 495 and stats["sent"] == 0
        metrics = Metrics(process=False)
        metrics.add_notifier(notifier.stats)
        assert "driftlock_notifications_dropped_total 495.0" in metrics.render()[0].decode()
        receiver.gate.set()
        wait_for(lambda: notifier.stats()["sent"] == 6, message="the held and queued deliveries")
        assert [r.json["incident"]["id"] for r in receiver.received] == [f"inc-{n}" for n in range(6)]
        assert notifier.stats()["queued"] == 0


def test_stop_is_bounded_while_the_receiver_hangs() -> None:
    with Receiver("hang") as receiver:
        notifier = Notifier([receiver.url], SECRET, timeout=1.0).start()
        notifier("opened", incident())
        notifier("resolved", incident("resolved"))
        wait_for(lambda: len(receiver.received) == 1, message="the delivery to hang")
        started = time.monotonic()
        notifier.stop(0.2)
        assert time.monotonic() - started < 4.0
        assert notifier.stats()["sent"] == 0 and notifier.stats()["failed"] >= 1
        notifier("opened", incident(n=2))  # after stop: ignored, never raises
        assert notifier.stats()["queued"] == 0


def test_slack_urls_get_a_slack_payload(stopping: list[Notifier]) -> None:
    assert is_slack("https://hooks.slack.com/services/T000/B000/XXXX")
    assert is_slack("https://chat.example/hooks/abc?format=slack")
    assert not is_slack("https://example.com/hook?format=json")
    with Receiver() as slack, Receiver() as plain:
        notifier = Notifier(
            [slack.url + "?format=slack&channel=ops", plain.url], SECRET, console_url="http://127.0.0.1:8080"
        ).start()
        stopping.append(notifier)
        notifier("opened", incident())
        wait_for(lambda: notifier.stats()["sent"] == 2, message="both deliveries")
        (seen,) = slack.received
        assert seen.path == "/hook?channel=ops"  # our own format parameter is not passed on
        body = seen.json
        assert set(body) == {"text", "blocks"}
        assert body["text"].startswith("Driftlock incident opened on stream shop: Requests to /wp-login.php")
        assert body["blocks"][0] == {
            "type": "header",
            "text": {"type": "plain_text", "text": "Driftlock incident opened on stream shop"},
        }
        rendered = json.dumps(body["blocks"])
        assert "GET /wp-login.php 404" in rendered and "17 of 50" in rendered
        assert "<http://127.0.0.1:8080/incidents/inc-1|open in the console>" in rendered
        assert verify(SECRET, seen.headers["x-driftlock-timestamp"], seen.body, seen.headers["x-driftlock-signature"])
        assert plain.received[0].json["type"] == "incident.opened"


def test_bad_urls_are_refused_at_startup() -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        Notifier(["ftp://example.com/hook"], SECRET)
    with pytest.raises(ValueError, match="http:// or https://"):
        Notifier(["not a url"], SECRET)


# -- through a real `driftlock serve` ------------------------------------------------------------------------------


def metric(server: ServerProcess, name: str) -> float:
    for line in server.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not in /metrics")


def test_driftlock_serve_notifies_once_per_incident_opened_and_resolved(tmp_path: Path) -> None:
    with Receiver() as flag, Receiver() as env_hook:
        env = clean_env(DRIFTLOCK_SERVE_WEBHOOK_SECRET=SECRET.decode(), DRIFTLOCK_SERVE_WEBHOOKS=env_hook.url)
        with running_server(tmp_path / "db.sqlite3", "--notify", flag.url, env=env) as server:
            incident_id = seed_scenario(server)
            wait_for(lambda: len(flag.received) == 1 and len(env_hook.received) == 1, message="the opened notices")
            opened = flag.received[0]
            assert opened.json["type"] == "incident.opened" and opened.json["incident"]["id"] == incident_id
            assert opened.json["incident"]["explanation"]["surges"][0]["count"] > 0
            assert opened.json["url"] == f"{server.url}/incidents/{incident_id}"
            signature = opened.headers["x-driftlock-signature"]
            assert verify(SECRET, opened.headers["x-driftlock-timestamp"], opened.body, signature)
            assert server.post(f"/v1/incidents/{incident_id}/resolve").status_code == 200
            wait_for(lambda: len(flag.received) == 2 and len(env_hook.received) == 2, message="the resolved notices")
            resolved = flag.received[1]
            assert resolved.json["type"] == "incident.resolved" and resolved.json["incident"]["status"] == "resolved"
            assert verify(
                SECRET,
                resolved.headers["x-driftlock-timestamp"],
                resolved.body,
                resolved.headers["x-driftlock-signature"],
            )
            assert [r.json["type"] for r in env_hook.received] == ["incident.opened", "incident.resolved"]
            # nothing else is on its way: every notification was sent, none is queued
            assert metric(server, "driftlock_notifications_sent_total") == 4
            assert metric(server, "driftlock_notifications_queued") == 0
            assert metric(server, "driftlock_incidents_opened_total") == 1
            assert metric(server, "driftlock_incidents_resolved_total") == 1
    assert len(flag.received) == 2 and len(env_hook.received) == 2


def test_driftlock_serve_retries_a_notification_after_a_500(tmp_path: Path) -> None:
    with Receiver(500) as receiver:
        env = clean_env(DRIFTLOCK_SERVE_WEBHOOK_SECRET=SECRET.decode())
        with running_server(tmp_path / "db.sqlite3", "--notify", receiver.url, env=env) as server:
            seed_scenario(server)
            wait_for(lambda: len(receiver.received) == 2, timeout=20, message="the retry")
            first, second = receiver.received
            assert first.headers["x-driftlock-delivery"] == second.headers["x-driftlock-delivery"]
            assert verify(
                SECRET, second.headers["x-driftlock-timestamp"], second.body, second.headers["x-driftlock-signature"]
            )
            wait_for(lambda: metric(server, "driftlock_notifications_sent_total") == 1, message="the delivery counted")
            assert metric(server, "driftlock_notification_retries_total") == 1
            assert metric(server, "driftlock_notifications_failed_total") == 0


def test_driftlock_serve_detects_while_the_receiver_hangs(tmp_path: Path) -> None:
    with Receiver("hang") as receiver:
        with running_server(tmp_path / "db.sqlite3", "--notify", receiver.url) as server:
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
            assert metric(server, "driftlock_notifications_queued") == 1  # "resolved" waits behind "opened"
            receiver.gate.set()
            wait_for(lambda: len(receiver.received) == 2, message="the queued notice after the hang")
            assert [r.json["type"] for r in receiver.received] == ["incident.opened", "incident.resolved"]


def test_driftlock_serve_refuses_a_bad_webhook_url(capsys: pytest.CaptureFixture[str]) -> None:
    from driftlock.cli import main

    assert main(["serve", "--port", "0", "--db", ":memory:", "--notify", "ftp://example.com/hook"]) == 2
    assert "webhook URL must be http:// or https://" in capsys.readouterr().err
