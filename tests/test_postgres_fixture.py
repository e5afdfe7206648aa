"""tests/postgres.py: a real PostgreSQL server that tests can write to, isolate in, and crash."""

from __future__ import annotations

import os
import stat

import psycopg
import pytest

from tests.postgres import PostgresServer, postgres_fixture, running_postgres

postgres_server = postgres_fixture(scope="module", name="postgres_server")


def test_a_table_can_be_created_written_and_read_back(postgres_server: PostgresServer) -> None:
    dsn = postgres_server.new_database("fixture_rows")
    assert dsn == f"postgresql://driftlock@127.0.0.1:{postgres_server.port}/fixture_rows"
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE TABLE events (id serial PRIMARY KEY, stream text NOT NULL, body jsonb NOT NULL)")
        conn.execute(
            "INSERT INTO events (stream, body) VALUES (%s, %s), (%s, %s)",
            ("shop", '{"route": "/cart"}', "shop", '{"route": "/pay"}'),
        )
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT stream, body->>'route' FROM events ORDER BY id").fetchall()
        version = conn.execute("SHOW server_version_num").fetchone()
        fsync = conn.execute("SHOW fsync").fetchone()
    assert rows == [("shop", "/cart"), ("shop", "/pay")]
    assert version is not None and int(version[0]) >= 120000
    assert fsync == ("off",)  # tuned for tests


def test_a_new_database_is_isolated_from_the_others(postgres_server: PostgresServer) -> None:
    first, second = postgres_server.new_database("fixture_iso_a"), postgres_server.new_database("fixture_iso_b")
    with psycopg.connect(first) as conn:
        conn.execute("CREATE TABLE streams (id text PRIMARY KEY)")
        conn.execute("INSERT INTO streams VALUES ('only-in-a')")
    with psycopg.connect(second) as conn:
        missing = conn.execute("SELECT to_regclass('public.streams')").fetchone()
        conn.execute("CREATE TABLE streams (id text PRIMARY KEY)")  # the same name, no clash
        assert conn.execute("SELECT count(*) FROM streams").fetchone() == (0,)
    assert missing == (None,)
    with pytest.raises(psycopg.errors.DuplicateDatabase):
        postgres_server.new_database("fixture_iso_a")
    with pytest.raises(ValueError, match="lower-case"):
        postgres_server.new_database('x"; DROP DATABASE postgres; --')


def test_the_server_listens_on_loopback_only_and_runs_unprivileged(postgres_server: PostgresServer) -> None:
    with psycopg.connect(postgres_server.dsn) as conn:
        listen = conn.execute("SHOW listen_addresses").fetchone()
        data_directory = conn.execute("SHOW data_directory").fetchone()
    assert listen == ("127.0.0.1",)
    assert data_directory == (str(postgres_server.data),)
    owner = os.stat(postgres_server.data).st_uid
    assert owner != 0, "initdb and postgres refuse root; the cluster belongs to an unprivileged user"
    assert stat.S_IMODE(os.stat(postgres_server.data).st_mode) & 0o077 == 0


def test_kill_9_and_restart_keep_committed_rows_and_lose_uncommitted_ones() -> None:
    with running_postgres() as server:
        dsn = server.new_database("fixture_crash")
        with psycopg.connect(dsn) as conn:
            conn.execute("CREATE TABLE anomalies (id int PRIMARY KEY, stream text NOT NULL)")
            conn.execute("INSERT INTO anomalies SELECT i, 'shop' FROM generate_series(1, 500) AS i")
        open_tx = psycopg.connect(dsn)
        open_tx.execute("INSERT INTO anomalies VALUES (1000, 'never-committed')")  # left open at the crash
        port, pid = server.port, server.process.pid if server.process else None

        server.kill9()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(dsn, connect_timeout=2)
        open_tx.close()

        server.start()
        assert server.port == port and server.process is not None and server.process.pid != pid
        with psycopg.connect(dsn) as conn:
            count = conn.execute("SELECT count(*), max(id) FROM anomalies").fetchone()
            conn.execute("INSERT INTO anomalies VALUES (501, 'after-restart')")  # writable again
        assert count == (500, 500)
        assert "database system was interrupted" in server.log() or "not properly shut down" in server.log()

        server.stop()  # a clean stop keeps everything too
        server.start()
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT count(*) FROM anomalies").fetchone() == (501,)


def test_without_binaries_it_skips_naming_the_package_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    import tests.postgres as pg

    monkeypatch.setattr(pg, "find_bindir", lambda: None)
    reason = pg.unavailable_reason()
    assert reason is not None and "apt-get install postgresql" in reason
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install postgresql"):
        with running_postgres():
            pass
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"\.ci/run should have installed it"):
        with running_postgres():
            pass
