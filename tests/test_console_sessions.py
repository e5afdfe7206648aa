"""Console sessions across processes and replicas: real `driftlock serve --workers 2`, two replicas on one real
PostgreSQL, restarts with and without ``--console-secret``, and the proxy case.

A cookie from sign-in must work whatever process answers (issue 24, finding 2), sign-out must revoke it in
every process (finding 7), and behind an untrusted TLS-terminating proxy the sign-in refusal must say what to
pass (finding 11). Console answers carry ``X-Driftlock-Pid``: the tests assert that both processes answered.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from driftlock.server.console.auth import COOKIE
from driftlock.service.console_sessions import MAX_SESSIONS, ConsoleSessionStore, SharedSecret
from driftlock.service.postgres import PostgresStore
from driftlock.service.sqlite import SqliteStore
from driftlock.service.store import MemoryStore
from tests.postgres import PostgresServer, postgres_fixture
from tests.support import ServerProcess, clean_env, running_server, wait_for
from tests.test_console import KEY, ROOT, csrf_of, seed_scenario
from tests.test_log_analysis import _free_port, _require

postgres_server = postgres_fixture(scope="module", name="postgres_server")

SECRET = "a3f1" * 16  # 64 characters, as `openssl rand -hex 32` makes
OTHER_SECRET = "9c0e" * 16


def sign_in(url: str) -> str:
    """The session cookie a sign-in with the right key sets."""
    with httpx.Client(base_url=url, timeout=30) as client:
        response = client.post("/sign-in", data={"api_key": KEY, "next": "/"})
        assert response.status_code == 303 and response.headers["location"] == "/", response.text
        return str(client.cookies[COOKIE])


def get(url: str, path: str, cookie: str, **headers: str) -> httpx.Response:
    """One page load on a new connection (so that the kernel may hand it to any worker)."""
    return httpx.get(url + path, headers={"cookie": f"{COOKIE}={cookie}", **headers}, timeout=30)


def post(url: str, path: str, cookie: str, data: dict[str, str]) -> httpx.Response:
    return httpx.post(url + path, data=data, headers={"cookie": f"{COOKIE}={cookie}"}, timeout=60)


def pid(response: httpx.Response) -> str:
    return response.headers["x-driftlock-pid"]


def until_both_answered(check: Callable[[int], httpx.Response], least: int, most: int = 300) -> dict[str, int]:
    """``check(i)`` at least ``least`` times, then on until two processes have answered (at most ``most``):
    how many answers each process gave. ``check`` asserts what each answer must be."""
    answered: dict[str, int] = {}
    for i in range(most):
        response = check(i)
        answered[pid(response)] = answered.get(pid(response), 0) + 1
        if i + 1 >= least and len(answered) >= 2:
            break
    assert len(answered) == 2, f"only one process answered {sum(answered.values())} requests: {answered}"
    return answered


def a_page(url: str, cookie: str, incident_id: str) -> Callable[[int], httpx.Response]:
    def load(i: int) -> httpx.Response:
        path = ("/", "/incidents", f"/incidents/{incident_id}")[i % 3]
        response = get(url, path, cookie)
        assert response.status_code == 200, (i, path, response.status_code, response.headers.get("location"))
        return response

    return load


def feedback_accepted(url: str, cookie: str, csrf: str, incident_id: str) -> Callable[[int], httpx.Response]:
    def send(i: int) -> httpx.Response:
        response = post(url, f"/incidents/{incident_id}/feedback", cookie, {"csrf": csrf, "feedback_type": "confirmed"})
        assert response.status_code == 303, (i, response.status_code, response.text[-300:])
        assert response.headers["location"] == f"/incidents/{incident_id}?done=confirmed"
        return response

    return send


def signed_out(url: str, cookie: str, csrf: str, incident_id: str) -> Callable[[int], httpx.Response]:
    """Every page load sends the old cookie to sign-in, every form post with its token is refused."""

    def check(i: int) -> httpx.Response:
        if i % 2:
            response = post(
                url, f"/incidents/{incident_id}/feedback", cookie, {"csrf": csrf, "feedback_type": "confirmed"}
            )
            assert response.status_code == 403, (i, response.status_code)
            assert "Sign in first" in response.text
        else:
            response = get(url, "/", cookie)
            assert response.status_code == 303, (i, response.status_code)
            assert response.headers["location"].startswith("/sign-in")
        return response

    return check


# -- one server, two workers -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    """`driftlock serve --workers 2 --api-key ...` on a fresh SQLite file, with one open incident."""
    db = tmp_path_factory.mktemp("workers") / "driftlock.sqlite3"
    with running_server(db, "--workers", "2", "--api-key", KEY) as server:
        incident_id = seed_scenario(server, headers={"X-Api-Key": KEY})
        yield server, incident_id


def test_a_cookie_works_in_every_worker_for_pages_and_forms(two_workers: tuple[ServerProcess, str]) -> None:
    server, incident_id = two_workers
    cookie = sign_in(server.url)
    pages = until_both_answered(a_page(server.url, cookie, incident_id), least=30)
    csrf = csrf_of(get(server.url, f"/incidents/{incident_id}", cookie).text)
    posts = until_both_answered(feedback_accepted(server.url, cookie, csrf, incident_id), least=10)
    print(f"page loads per worker: {pages}; feedback posts per worker: {posts}")


def test_sign_out_revokes_the_session_in_every_worker(two_workers: tuple[ServerProcess, str]) -> None:
    server, incident_id = two_workers
    cookie = sign_in(server.url)
    csrf = csrf_of(get(server.url, f"/incidents/{incident_id}", cookie).text)
    until_both_answered(a_page(server.url, cookie, incident_id), least=4)  # the session works everywhere first
    out = post(server.url, "/sign-out", cookie, {"csrf": csrf})
    assert out.status_code == 303 and out.headers["location"] == "/sign-in"
    answered = until_both_answered(signed_out(server.url, cookie, csrf, incident_id), least=20)
    print(f"refusals of the signed-out cookie per worker: {answered}")
    # signing out one session leaves the others signed in
    other, third = sign_in(server.url), sign_in(server.url)
    assert post(server.url, "/sign-out", third, {"csrf": csrf_of(get(server.url, "/", third).text)}).status_code == 303
    assert get(server.url, "/", third).status_code == 303
    assert get(server.url, "/", other).status_code == 200


def test_sign_out_revokes_the_session_even_in_one_process(tmp_path: Path) -> None:
    """Finding 7 on its own: the process that issued the cookie must refuse it, and its CSRF token, after sign-out."""
    with running_server(tmp_path / "one.sqlite3", "--api-key", KEY) as server:
        cookie = sign_in(server.url)
        csrf = csrf_of(get(server.url, "/", cookie).text)
        assert post(server.url, "/sign-out", cookie, {"csrf": csrf}).status_code == 303
        page = get(server.url, "/", cookie)
        assert page.status_code == 303 and page.headers["location"].startswith("/sign-in")
        form = post(server.url, "/mute", cookie, {"csrf": csrf, "stream_id": "shop", "minutes": "60"})
        assert form.status_code == 403 and "Sign in first" in form.text


# -- the secret: kept in the store, or given ---------------------------------------------------------------------


def test_a_secret_given_by_flag_or_environment_is_used_and_changing_it_signs_everyone_out(tmp_path: Path) -> None:
    db = tmp_path / "driftlock.sqlite3"
    ok = "/incidents"

    def serving(*args: str, env: dict[str, str] | None = None) -> Any:
        return running_server(db, "--workers", "2", "--api-key", KEY, *args, env=env)

    with serving("--console-secret", SECRET) as server:
        given = sign_in(server.url)
        until_both_answered(lambda i: _ok(get(server.url, ok, given)), least=6)
    with serving(env=clean_env(DRIFTLOCK_SERVE_CONSOLE_SECRET=SECRET)) as server:  # the same secret, from the env
        until_both_answered(lambda i: _ok(get(server.url, ok, given)), least=6)
    with serving() as server:  # none given: the store's, which did not sign that cookie
        assert get(server.url, ok, given).status_code == 303
        stored = sign_in(server.url)
        until_both_answered(lambda i: _ok(get(server.url, ok, stored)), least=6)
    with serving() as server:  # the store's secret survives a restart: so do its sessions
        until_both_answered(lambda i: _ok(get(server.url, ok, stored)), least=6)
    with serving("--console-secret", OTHER_SECRET) as server:  # a new secret signs everyone out
        assert get(server.url, ok, stored).status_code == 303
        assert get(server.url, ok, given).status_code == 303
    with serving("--rotate-console-secret") as server:  # so does rotating the stored one
        assert get(server.url, ok, stored).status_code == 303
        again = sign_in(server.url)
        assert get(server.url, ok, again).status_code == 200


def _ok(response: httpx.Response) -> httpx.Response:
    assert response.status_code == 200, (response.status_code, response.headers.get("location"))
    return response


@pytest.mark.parametrize("given", ["short", "", " " * 40])
def test_a_short_secret_is_refused_at_start_with_a_clear_message(tmp_path: Path, given: str) -> None:
    db = str(tmp_path / "d.sqlite3")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "driftlock",
            "serve",
            "--port",
            "0",
            "--db",
            db,
            "--api-key",
            KEY,
            "--console-secret",
            given,
        ],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done
    assert "--console-secret" in done.stderr and "at least 32 characters" in done.stderr
    assert "openssl rand -hex 32" in done.stderr
    assert "listening" not in done.stdout


# -- replicas on one PostgreSQL ------------------------------------------------------------------------------------


def test_two_replicas_on_postgresql_share_sessions_and_sign_out(postgres_server: PostgresServer) -> None:
    database = postgres_server.new_database("console_sessions_replicas")
    replicas = [ServerProcess(database, "--api-key", KEY) for _ in range(2)]
    starters = [threading.Thread(target=r.start) for r in replicas]  # together: the secret is made once
    for t in starters:
        t.start()
    for t in starters:
        t.join(120)
    try:
        a, b = replicas
        assert a.url and b.url, "a replica did not start"
        incident_id = seed_scenario(a, headers={"X-Api-Key": KEY})
        cookie = sign_in(a.url)
        urls = (a.url, b.url)  # the load balancer hands each request to either
        until_both_answered(lambda i: a_page(urls[i % 2], cookie, incident_id)(i), least=30)
        csrf = csrf_of(get(b.url, f"/incidents/{incident_id}", cookie).text)
        until_both_answered(lambda i: feedback_accepted(urls[i % 2], cookie, csrf, incident_id)(i), least=10)
        out = post(b.url, "/sign-out", cookie, {"csrf": csrf})  # signed out on the other replica
        assert out.status_code == 303
        until_both_answered(lambda i: signed_out(urls[i % 2], cookie, csrf, incident_id)(i), least=10)
    finally:
        for r in replicas:
            r.stop()


# -- the store's part ----------------------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Any]:
    """Opens a handle on one store (several handles on a SQL store share its tables, as processes do)."""
    if request.param == "memory":
        store = MemoryStore()
        return lambda: store
    if request.param == "sqlite":
        return lambda: SqliteStore(tmp_path / "driftlock.sqlite3")
    database = request.getfixturevalue("postgres_server").new_database(f"console_sessions_{time.time_ns() % 10**9}")
    return lambda: PostgresStore(database, max_size=2)


def test_processes_starting_together_make_one_secret(opener: Callable[[], Any]) -> None:
    stores = [opener() for _ in range(6)]
    barrier = threading.Barrier(len(stores))
    seen: list[bytes] = []

    def ask(store: Any) -> None:
        barrier.wait(30)
        seen.append(store.console_sessions.secret())

    threads = [threading.Thread(target=ask, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert len(seen) == len(stores) and len(set(seen)) == 1 and len(seen[0]) >= 32
        sessions: ConsoleSessionStore = stores[0].console_sessions
        sessions.rotate()
        assert stores[-1].console_sessions.secret() != seen[0]
    finally:
        for s in {id(s): s for s in stores}.values():
            s.close()


def test_sessions_are_revoked_expire_and_stay_bounded(opener: Callable[[], Any]) -> None:
    first, second = opener(), opener()
    try:
        assert first.console_sessions.max_sessions == MAX_SESSIONS
        first.console_sessions.max_sessions = 3
        now = time.time()
        first.console_sessions.add("old", now - 100, now - 1)  # already expired
        assert not second.console_sessions.alive("old", now)
        first.console_sessions.add("a", now, now + 60)
        assert first.console_sessions.count() == 1  # the expired row was deleted
        for i, key in enumerate(("b", "c", "d")):
            first.console_sessions.add(key, now + 1 + i, now + 60)
        assert first.console_sessions.count() == 3  # past the bound, the oldest went
        assert [k for k in "abcd" if second.console_sessions.alive(k, now + 5)] == ["b", "c", "d"]
        second.console_sessions.revoke("c")  # signed out by another process
        assert not first.console_sessions.alive("c", now + 5) and first.console_sessions.alive("d", now + 5)
        assert not first.console_sessions.alive("d", now + 61)  # expired
    finally:
        first.close()
        if second is not first:
            second.close()


# -- behind a TLS-terminating proxy --------------------------------------------------------------------------------


def test_behind_a_proxy_the_refusal_says_to_pass_forwarded_allow_ips_and_with_it_sign_in_works(
    tmp_path: Path,
) -> None:
    proxied = {"x-forwarded-proto": "https", "x-forwarded-for": "203.0.113.7"}
    with running_server(tmp_path / "a.sqlite3", "--api-key", KEY) as server:
        netloc = server.url.split("://", 1)[1]
        refused = httpx.post(
            server.url + "/sign-in",
            data={"api_key": KEY, "next": "/"},
            headers={"origin": f"https://{netloc}", **proxied},
            timeout=30,
        )
        assert refused.status_code == 403
        assert "--forwarded-allow-ips" in refused.text and "X-Forwarded-Proto" in refused.text
        assert "set-cookie" not in refused.headers
    with running_server(tmp_path / "b.sqlite3", "--api-key", KEY, "--forwarded-allow-ips", "127.0.0.1") as server:
        netloc = server.url.split("://", 1)[1]
        accepted = httpx.post(
            server.url + "/sign-in",
            data={"api_key": KEY, "next": "/"},
            headers={"origin": f"https://{netloc}", **proxied},
            timeout=30,
        )
        assert accepted.status_code == 303, accepted.text
        assert "secure" in accepted.headers["set-cookie"].lower()  # the browser is on https: a Secure cookie
        cookie = accepted.headers["set-cookie"].split(";", 1)[0].split("=", 1)[1]
        assert get(server.url, "/", cookie, **proxied).status_code == 200


def readme_proxy_setup() -> tuple[str, list[str]]:
    """The README's nginx server block and the `driftlock serve` arguments it gives beside it."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("**Behind a TLS-terminating proxy**") :]
    block = re.search(r"```nginx\n(.*?)```", section, re.S)
    command = re.search(r"```bash\nDRIFTLOCK_SERVE_API_KEYS=\"\$KEY\" driftlock serve (.*?)\n```", section)
    assert block and command, "the README's proxy set-up"
    return block.group(1), command.group(1).split()


def test_the_readmes_nginx_setup_signs_in_over_https_and_without_the_flag_the_refusal_names_it(
    tmp_path: Path,
) -> None:
    nginx, openssl = _require("nginx", "nginx"), _require("openssl", "openssl")
    block, args = readme_proxy_setup()
    assert args[:2] == ["--port", "8080"], args
    args = args[2:]  # the test's own free port instead
    key, certificate = str(tmp_path / "tls.key"), str(tmp_path / "tls.pem")
    self_signed = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
    subprocess.run(
        [openssl, *self_signed, "-keyout", key, "-out", certificate],
        check=True,
        capture_output=True,
        timeout=60,
    )
    env = clean_env(DRIFTLOCK_SERVE_API_KEYS=KEY)
    with (
        running_server(tmp_path / "trusting.sqlite3", *args, env=env) as trusting,
        running_server(tmp_path / "plain.sqlite3", env=env) as plain,
    ):
        ports = [_free_port(), _free_port()]
        servers = [
            block.replace("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
            .replace("/etc/ssl/driftlock.pem", certificate)
            .replace("/etc/ssl/driftlock.key", key)
            .replace("http://127.0.0.1:8080", upstream.url)
            for port, upstream in zip(ports, (trusting, plain), strict=True)
        ]
        (tmp_path / "tmp").mkdir()
        user = "user root;" if os.geteuid() == 0 else ""
        conf = tmp_path / "nginx.conf"
        conf.write_text(
            f"daemon off;\n{user}\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log warn;\n"
            "events { worker_connections 64; }\nhttp {\n"
            f"access_log off;\nclient_body_temp_path {tmp_path}/tmp/body;\nproxy_temp_path {tmp_path}/tmp/proxy;\n"
            + "\n".join(servers)
            + "\n}\n"
        )
        proc = subprocess.Popen(
            [nginx, "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            urls = [f"https://127.0.0.1:{port}" for port in ports]

            def up() -> bool:
                if proc.poll() is not None:
                    raise AssertionError("nginx exited:\n" + (tmp_path / "error.log").read_text())
                try:
                    return all(httpx.get(u + "/healthz", verify=False, timeout=2).status_code == 200 for u in urls)
                except httpx.TransportError:
                    return False

            wait_for(up, timeout=15, message="nginx to answer over TLS")
            # a browser on https://host:port: its Origin; nginx passes the Host and the scheme
            with httpx.Client(base_url=urls[0], verify=False, timeout=30, headers={"origin": urls[0]}) as browser:
                signed = browser.post("/sign-in", data={"api_key": KEY, "next": "/"})
                assert signed.status_code == 303 and signed.headers["location"] == "/", signed.text
                assert "secure" in signed.headers["set-cookie"].lower()
                page = browser.get("/")
                assert page.status_code == 200
                out = browser.post("/sign-out", data={"csrf": csrf_of(page.text)})
                assert out.status_code == 303
                assert browser.get("/", headers={"cookie": f"{COOKIE}={signed.cookies[COOKIE]}"}).status_code == 303
            with httpx.Client(base_url=urls[1], verify=False, timeout=30, headers={"origin": urls[1]}) as browser:
                refused = browser.post("/sign-in", data={"api_key": KEY, "next": "/"})
                assert refused.status_code == 403
                assert "--forwarded-allow-ips" in refused.text and "set-cookie" not in refused.headers
        finally:
            proc.terminate()
            proc.wait(10)


def test_a_process_reads_a_rotated_secret_again_without_a_restart(tmp_path: Path) -> None:
    """`--rotate-console-secret` (or deleting the row) while replicas run: each reads the new secret within its
    refresh period, so they agree again without a restart."""
    running, rotating = SqliteStore(tmp_path / "d.sqlite3"), SqliteStore(tmp_path / "d.sqlite3")
    try:
        shared = SharedSecret(running.console_sessions, refresh=0.2)
        before = shared.get()
        rotating.console_sessions.rotate()
        after = rotating.console_sessions.secret()
        assert after != before
        wait_for(lambda: shared.get() == after, timeout=10, message="the running process to read the new secret")
    finally:
        running.close()
        rotating.close()
