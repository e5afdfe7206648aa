"""Driftlock's webhooks page (tests/data/webhooks.md, a copy of seed/webhooks.md), run as written.

Its Python and Node.js verifiers run unchanged inside real HTTP servers on 127.0.0.1 and receive what a real
`driftlock serve` sends; the console's Integrations page adds, tests and deletes webhooks, and replicas over
one SQLite file share them. Also #24 finding 9's Markdown half: the export keeps client strings in code.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from markdown_it import MarkdownIt

from driftlock.server.notify import Notifier
from driftlock.service.exports import render
from driftlock.service.postgres import PostgresStore
from driftlock.service.sqlite import SqliteStore
from driftlock.service.store import MemoryStore
from driftlock.service.webhooks import MAX_WEBHOOKS, Webhook
from tests.postgres import postgres_fixture
from tests.support import clean_env, free_port_url, running_server, wait_for
from tests.test_console import KEY, csrf_of, seed_scenario, signed_in
from tests.test_notify import Store, incident

PAGE = Path(__file__).parent / "data" / "webhooks.md"
SECRET = "whsec-page-test"


def page_block(heading: str, language: str) -> str:
    """The page's ``language`` block under ``heading``, exactly as written."""
    text = PAGE.read_text()
    found = re.search(rf"#+ {re.escape(heading)}\n+```{language}\n(.*?)\n```", text, re.S)
    assert found, f"no {language} block under {heading!r} in {PAGE.name}"
    return found.group(1) + "\n"


@dataclass
class Verified:
    ok: bool
    body: Any


class PythonPageReceiver:
    """The page's ``verify_signature(request, secret)`` as written, in a real HTTP server: ``request.headers``
    and ``request.body`` (the raw bytes) as Django's request has them. Answers 200 when it verifies, else 401."""

    def __init__(self, secret: str = SECRET) -> None:
        namespace: dict[str, Any] = {}
        exec(compile(page_block("Python Example", "python"), str(PAGE), "exec"), namespace)
        verify = namespace["verify_signature"]
        self.seen: list[Verified] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                ok = bool(verify(SimpleNamespace(headers=self.headers, body=raw), secret))
                outer.seen.append(Verified(ok, json.loads(raw)))
                self.send_response(200 if ok else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/webhooks/driftlock"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> PythonPageReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def of(self, event_type: str) -> list[Verified]:
        return [v for v in list(self.seen) if v.body.get("type") == event_type]


NODE_HARNESS = """
const http = require('http');
const secret = process.env.WEBHOOK_SECRET;
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    req.body = JSON.parse(Buffer.concat(chunks).toString('utf8'));  // what express.json() gives the page's code
    const ok = verifySignature(req, secret);
    process.stdout.write(JSON.stringify({ ok, body: req.body }) + '\\n');
    res.writeHead(ok ? 200 : 401, { 'Content-Length': '0' });
    res.end();
  });
});
server.listen(0, '127.0.0.1', () => process.stdout.write('listening ' + server.address().port + '\\n'));
"""


def node_binary() -> str:
    found = shutil.which("node")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("node is missing: .ci/run must install it (apt-get install nodejs)")
        pytest.skip("needs node (apt-get install nodejs)")
    return found


@contextmanager
def node_page_receiver(tmp_path: Path, secret: str = SECRET) -> Iterator[tuple[str, list[Verified]]]:
    """The page's ``verifySignature(req, secret)`` as written, in a real Node.js HTTP server."""
    script = tmp_path / "receiver.js"
    script.write_text(page_block("Node.js Example", "javascript") + NODE_HARNESS)
    proc = subprocess.Popen(
        [node_binary(), str(script)],
        stdout=subprocess.PIPE,
        env={"PATH": os.environ.get("PATH", ""), "WEBHOOK_SECRET": secret},
        text=True,
    )
    assert proc.stdout is not None
    seen: list[Verified] = []
    try:
        first = proc.stdout.readline()
        assert first.startswith("listening "), first
        port = int(first.split()[1])

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                record = json.loads(line)
                seen.append(Verified(record["ok"], record["body"]))

        threading.Thread(target=read, daemon=True).start()
        yield f"http://127.0.0.1:{port}/webhooks/driftlock", seen
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_pages_verifiers_accept_what_driftlock_serve_sends_after_an_incident_opens(tmp_path: Path) -> None:
    with PythonPageReceiver() as python, node_page_receiver(tmp_path) as (node_url, node):
        env = clean_env(DRIFTLOCK_SERVE_WEBHOOK_SECRET=SECRET)
        with running_server(tmp_path / "db.sqlite3", "--notify", python.url, "--notify", node_url, env=env) as server:
            incident_id = seed_scenario(server)
            wait_for(lambda: python.of("incident.opened") and len(node) == 2, message="the notices at both receivers")
            for receiver in (python.seen, node):
                assert [v.body["type"] for v in receiver] == ["anomaly.detected", "incident.opened"]
                assert all(v.ok for v in receiver), receiver
            (detected,) = python.of("anomaly.detected")
            payload = detected.body
            assert payload == node[0].body  # the same event, parsed
            assert payload["id"].startswith("evt_") and re.fullmatch(
                r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", payload["created_at"]
            )
            data = payload["data"]
            assert data["stream_id"] == "shop" and data["incident_id"] == incident_id
            assert set(data["metrics"]) == {"ncd", "confidence", "p_value"}
            assert 0 <= data["metrics"]["p_value"] <= 0.05 < data["metrics"]["confidence"] <= 1
            anomaly = server.get(f"/v1/anomalies/{data['anomaly_id']}").json()
            assert anomaly["incident_id"] == incident_id
            assert data["event"] == anomaly["event"] and data["why"] == anomaly["why"] and data["why"]
            assert any("login" in route for route in data["routes"]), data["routes"]


def test_the_node_verifier_accepts_bodies_with_awkward_values_and_refuses_a_wrong_secret(tmp_path: Path) -> None:
    """``JSON.stringify(req.body)`` re-serializes the body: numbers, key order, escapes must come out the same."""
    store = Store()
    awkward = incident(store=store, stream_id="ünïcode \u2028 </script> \x00 \ud800")
    store.anomalies["anom-1"]["event"] = {
        "body": {"2": "two", "10": "ten", "b": 1.0, "a": 1e-7, "big": 2**64, "tiny": 5e-324, "exp": 1.5e21},
        "nested": [{"z": None, "y": True, "0": [0.1, -0.0, 100.0]}],
        "text": 'tab\tquote" backslash\\ emoji 😀',
    }
    with node_page_receiver(tmp_path) as (url, node), PythonPageReceiver() as python:
        right = Notifier([url, python.url], SECRET, store=store).start()
        wrong = Notifier([url + "?events=incident.opened"], "not-the-secret").start()
        try:
            right("opened", awkward)
            wrong("opened", awkward)
            wait_for(
                lambda: len({v.body["id"] for v in node}) == 3 and len(python.seen) == 2,
                message="three deliveries to node, two to python",
            )
        finally:
            right.stop(2)
            wrong.stop(2)
        verdicts: dict[str, set[bool]] = {}  # by event id: a refused delivery is retried (the page: non-2xx)
        for v in node:
            verdicts.setdefault(v.body["id"], set()).add(v.ok)
        assert sorted(verdicts.values(), key=sorted) == [{False}, {True}, {True}]
        assert all(v.ok for v in python.seen)
        detected = next(v.body for v in node if v.body["type"] == "anomaly.detected")
        assert float(detected["data"]["event"]["body"]["big"]) == float(2**64)  # the double JavaScript reads
        assert detected["data"]["stream_id"] == "ünïcode \u2028 </script> \x00 \ud800"


# -- the console's Integrations page ---------------------------------------------------------------------------------


def add_form(token: str, url: str, secret: str, *events: str) -> dict[str, str]:
    return {"csrf": token, "url": url, "secret": secret, **{f"event:{e}": "1" for e in events}}


def test_the_integrations_page_adds_tests_and_deletes_a_signed_webhook(tmp_path: Path) -> None:
    with PythonPageReceiver() as receiver:
        with running_server(tmp_path / "db.sqlite3", "--api-key", KEY) as server, signed_in(server.url) as client:
            page = client.get("/integrations")
            assert page.status_code == 200 and "No webhooks yet" in page.text
            assert 'href="/integrations" aria-current="page"' in page.text
            token = csrf_of(page.text)
            form = add_form(token, receiver.url, SECRET, "anomaly.detected", "incident.resolved")
            # the console's CSRF and origin rules hold for these forms too
            assert client.post("/integrations/webhooks", data={**form, "csrf": "0" * 64}).status_code == 403
            evil = client.post("/integrations/webhooks", data=form, headers={"origin": "http://evil.example"})
            assert evil.status_code == 403
            with httpx.Client(base_url=server.url) as stranger:
                assert stranger.post("/integrations/webhooks", data=form).status_code == 403
            # bad input: a clear refusal
            bad = client.post("/integrations/webhooks", data={**form, "url": "ftp://example.com/x"})
            assert bad.status_code == 400 and "http:// or https://" in bad.text
            none = client.post("/integrations/webhooks", data=add_form(token, receiver.url, SECRET))
            assert none.status_code == 400 and "select at least one webhook event" in none.text
            added = client.post("/integrations/webhooks", data=form)
            assert added.status_code == 303 and added.headers["location"] == "/integrations?done=added"
            page = client.get("/integrations")
            assert SECRET not in page.text  # never shown again
            (row,) = re.findall(r'<tr class="webhook[^"]*" id="webhook-(wh_[0-9a-f]+)"', page.text)
            assert receiver.url in page.text and "<code>incident.resolved</code>" in page.text
            # "send test webhook": one signed, made-up event, verified by the page's code
            tested = client.post(f"/integrations/webhooks/{row}/test", data={"csrf": token})
            assert tested.status_code == 303
            wait_for(lambda: receiver.seen, message="the test event")
            (test,) = receiver.seen
            assert test.ok and test.body["test"] is True and test.body["type"] == "anomaly.detected"
            page = client.get(tested.headers["location"])
            assert "test anomaly.detected: delivered, HTTP 200" in page.text
            # then the real events it selected
            incident_id = seed_scenario(server, headers={"X-Api-Key": KEY})
            wait_for(lambda: receiver.of("anomaly.detected")[1:], message="the real anomaly.detected")
            assert receiver.of("anomaly.detected")[1].body["data"]["incident_id"] == incident_id
            resolve = server.post(f"/v1/incidents/{incident_id}/resolve", headers={"X-Api-Key": KEY})
            assert resolve.status_code == 200
            wait_for(lambda: receiver.of("incident.resolved"), message="incident.resolved")
            assert all(v.ok for v in receiver.seen) and not receiver.of("incident.opened")  # not selected
            # the result is stored once the receiver has answered: after the receiver saw the body
            wait_for(
                lambda: "incident.resolved: HTTP 200" in client.get("/integrations").text,
                message="the delivery's result on the page",
            )
            deleted = client.post(f"/integrations/webhooks/{row}/delete", data={"csrf": token})
            assert deleted.status_code == 303 and "No webhooks yet" in client.get("/integrations").text
            again = client.post(f"/integrations/webhooks/{row}/delete", data={"csrf": token})
            assert again.status_code == 404


def test_the_integrations_page_escapes_what_it_shows_and_lists_notify_webhooks(tmp_path: Path) -> None:
    hostile = free_port_url() + '/"><script>alert(1)</script>'  # nothing listens there
    slack = "https://hooks.slack.com/services/T000/B000/SECRETPATH"
    with running_server(tmp_path / "db.sqlite3", "--notify", slack) as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            token = csrf_of(client.get("/integrations").text)
            assert (
                client.post("/integrations/webhooks", data=add_form(token, hostile, "", "incident.opened")).status_code
                == 303
            )
            page = client.get("/integrations").text
            assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
            assert "SECRETPATH" not in page and "https://hooks.slack.com/…" in page and "from --notify" in page
            assert "no secret" in page
            (row,) = re.findall(r'id="webhook-(wh_[0-9a-f]+)"', page)
            assert client.post(f"/integrations/webhooks/{row}/test", data={"csrf": token}).status_code == 303
            assert "test incident.opened: failed, ConnectError (could not deliver)" in client.get("/integrations").text


def test_replicas_over_one_sqlite_file_share_the_webhooks(tmp_path: Path) -> None:
    db = tmp_path / "shared.sqlite3"
    with PythonPageReceiver() as receiver, running_server(db) as first, running_server(db) as second:
        with httpx.Client(base_url=first.url, timeout=30) as one, httpx.Client(base_url=second.url, timeout=30) as two:
            token = csrf_of(one.get("/integrations").text)
            assert (
                one.post(
                    "/integrations/webhooks", data=add_form(token, receiver.url, SECRET, "anomaly.detected")
                ).status_code
                == 303
            )
            assert receiver.url in two.get("/integrations").text  # the other process lists it
            incident_id = seed_scenario(second)  # and sends to it
            wait_for(lambda: receiver.seen, message="anomaly.detected from the second process")
            (seen,) = receiver.seen
            assert seen.ok and seen.body["data"]["incident_id"] == incident_id
            (row,) = re.findall(r'id="webhook-(wh_[0-9a-f]+)"', two.get("/integrations").text)
            token_two = csrf_of(two.get("/integrations").text)
            assert two.post(f"/integrations/webhooks/{row}/delete", data={"csrf": token_two}).status_code == 303
            assert "No webhooks yet" in one.get("/integrations").text


# -- #24 finding 9: the Markdown export ------------------------------------------------------------------------------


def test_the_markdown_export_keeps_client_strings_inside_code() -> None:
    hostile = "[click](https://evil.example) <img src=x onerror=alert(1)> <https://evil.example> ``` | x"
    anomaly = {
        "id": "a1",
        "stream_id": f"shop {hostile}",
        "status": "open",
        "why": f"Requests to /login\n```\n<script>alert(1)</script>\n[x](https://evil.example) {hostile}",
        "event": {"body": {"route": "```\n<b>bold</b>"}},
        "feedback": [{"created_at": "2026-12-01T00:00:00Z", "feedback_type": "confirmed", "reason": hostile}],
    }
    content = render("markdown", "exp_x", [anomaly], [f"missing {hostile}"])["content"]
    tokens = MarkdownIt("commonmark").enable("table").parse(content)
    flat = [t for token in tokens for t in [token, *(token.children or [])]]
    kinds = {t.type for t in flat}
    assert not kinds & {"link_open", "html_inline", "html_block", "image"}, kinds
    code = [t.content for t in flat if t.type in ("code_inline", "fence")]
    assert any(t.startswith("shop [click]") and "<img" in t for t in code)  # the stream id, whole, in code
    assert any(t.type == "fence" and "<script>alert(1)</script>" in t.content for t in flat)  # the why, fenced
    assert any(t.type == "fence" and "<b>bold</b>" in t.content for t in flat)  # the event's own fence holds
    headings = [t.content for t in flat if t.type == "inline" and "Anomaly" in t.content]
    assert headings == ["Anomaly a1"]


# -- the webhooks table, the same over every store --------------------------------------------------------------------

postgres_server = postgres_fixture(scope="module", name="postgres_server")


def stores(kind: str, tmp_path: Path, postgres_server: Any) -> list[Any]:
    """Two handles on one store (two processes' view), opened at once (replicas starting together)."""
    if kind == "memory":
        only = MemoryStore()
        return [only, only]
    if kind == "sqlite":
        return [SqliteStore(tmp_path / "shared.sqlite3"), SqliteStore(tmp_path / "shared.sqlite3")]
    dsn = postgres_server.new_database("webhooks_table")
    with ThreadPoolExecutor(2) as pool:  # two replicas create the table at the same moment
        return list(pool.map(lambda _: PostgresStore(dsn), range(2)))


@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgres"])
def test_every_store_keeps_webhooks_for_every_process(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    server = request.getfixturevalue("postgres_server") if kind == "postgres" else None
    one, two = stores(kind, tmp_path, server)
    try:
        hook = Webhook.new("http://127.0.0.1:9/hook", "s3cret", ["incident.resolved", "anomaly.detected"])
        assert hook.events == ("anomaly.detected", "incident.resolved") and "s3cret" not in repr(hook)
        one.webhooks.add_webhook(hook)
        (seen,) = two.webhooks.list_webhooks()
        assert seen == hook
        two.webhooks.record_result(hook.id, "incident.resolved: HTTP 200 in 3 ms", 1234.5)
        (seen,) = one.webhooks.list_webhooks()
        assert (seen.last_result, seen.last_result_at) == ("incident.resolved: HTTP 200 in 3 ms", 1234.5)
        for n in range(MAX_WEBHOOKS - 1):
            two.webhooks.add_webhook(Webhook.new(f"http://127.0.0.1:9/{n}", "", ["incident.opened"]))
        with pytest.raises(ValueError, match=f"at most {MAX_WEBHOOKS} webhooks"):
            one.webhooks.add_webhook(Webhook.new("http://127.0.0.1:9/over", "", ["incident.opened"]))
        assert one.webhooks.delete_webhook(hook.id) and not two.webhooks.delete_webhook(hook.id)
        assert len(two.webhooks.list_webhooks()) == MAX_WEBHOOKS - 1
        with pytest.raises(ValueError, match="unknown webhook event 'pings'"):
            Webhook.new("http://127.0.0.1:9/hook", "", ["pings"])
    finally:
        for store in {id(s): s for s in (one, two)}.values():
            store.close()
