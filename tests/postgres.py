"""A real PostgreSQL server for tests: Debian's binaries, a temporary data directory, a free loopback port.

    from tests.postgres import postgres_fixture

    postgres_server = postgres_fixture()          # a session-scoped fixture in this module

    def test_something(postgres_server: PostgresServer) -> None:
        dsn = postgres_server.new_database("something")   # a database of its own
        with psycopg.connect(dsn) as conn: ...

``running_postgres()`` starts a private server (for tests that kill or restart it). Without PostgreSQL
binaries the fixture skips, naming the package to install, except where ``CI`` is set: there it fails,
because ``.ci/run`` installs them. As root (here and in CI) ``initdb`` and ``postgres`` run as the
unprivileged ``postgres`` user, created if missing, and the temporary directory belongs to it.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

SUPERUSER = "driftlock"
"""The cluster's superuser (``initdb -U``); the DSNs name it, trust authentication on loopback."""

INSTALL_HINT = "apt-get install postgresql (Debian/Ubuntu), or put initdb and postgres on the PATH"

# Speed over durability: the OS is never crashed under a test, so fsync and full-page writes buy nothing.
# synchronous_commit stays on, so a committed row has reached the kernel and survives `kill -9`.
SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "full_page_writes": "off",
    "max_connections": "40",
    "shared_buffers": "32MB",
    "max_wal_size": "256MB",
    "checkpoint_timeout": "30min",
    "log_min_messages": "warning",
    "logging_collector": "off",
    "log_destination": "stderr",
    "TimeZone": "UTC",
}

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def find_bindir() -> Path | None:
    """The directory with ``initdb`` and ``postgres``: the PATH first, then Debian's newest version."""
    initdb, postgres = shutil.which("initdb"), shutil.which("postgres")
    if initdb and postgres and Path(initdb).parent == Path(postgres).parent:
        return Path(initdb).parent

    def version(bindir: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", bindir.parent.name)) or (0,)

    candidates = [
        bindir
        for bindir in Path("/usr/lib/postgresql").glob("*/bin")
        if (bindir / "initdb").exists() and (bindir / "postgres").exists()
    ]
    return max(candidates, key=version) if candidates else None


def _unprivileged_user() -> pwd.struct_passwd:
    """The account initdb and postgres run as when we are root: ``postgres``, created when missing."""
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        pass
    useradd = shutil.which("useradd")
    if useradd is None:
        raise RuntimeError("running as root, no 'postgres' user and no useradd to create one")
    subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return pwd.getpwnam("postgres")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait(condition: Callable[[], Any], timeout: float, message: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory, on a free port of 127.0.0.1.

    ``start()`` runs initdb the first time; ``stop()`` shuts down fast (SIGINT) and keeps the data;
    ``kill9()`` is a crash (SIGKILL to the postmaster and every backend); ``start()`` again recovers on
    the same port; ``cleanup()`` stops and deletes the directory.
    """

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="driftlock-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.log_path = self.root / "postgres.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._user: pwd.struct_passwd | None = None
        self._initialized = False
        if os.geteuid() == 0:
            self._user = _unprivileged_user()
            os.chown(self.root, self._user.pw_uid, self._user.pw_gid)
        self.socket_dir.mkdir()
        self._own(self.socket_dir)

    # -- addresses --------------------------------------------------------------------------------

    @property
    def dsn(self) -> str:
        """libpq URL of the ``postgres`` database (the superuser's; create your own with new_database)."""
        return self.dsn_for("postgres")

    def dsn_for(self, dbname: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def new_database(self, name: str) -> str:
        """Create an empty database and return its DSN: one per test module keeps tests apart."""
        if not _NAME.match(name):
            raise ValueError(f"database name {name!r}: use lower-case letters, digits and _")
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn_for(name)

    # -- life cycle -------------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> PostgresServer:
        if self.process is not None and self.process.poll() is None:
            return self
        if not self._initialized:
            self._initdb(timeout)
        fresh_port = self.port == 0
        for _attempt in range(3 if fresh_port else 1):
            if fresh_port:
                self.port = _free_port()
            self._spawn()
            if self._wait_ready(timeout):
                return self
            if not fresh_port or "could not bind" not in self.log():
                break  # only a lost race for the port is worth another one
        raise RuntimeError(f"postgres did not start on port {self.port}:\n{self.log()[-3000:]}")

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT): open transactions roll back, committed data is kept."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill_group(proc)

    def kill9(self) -> None:
        """A crash: SIGKILL to the postmaster and all its backends at once, no shutdown checkpoint."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            self._kill_group(proc)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # -- internals --------------------------------------------------------------------------------

    def _own(self, path: Path) -> None:
        if self._user is not None:
            os.chown(path, self._user.pw_uid, self._user.pw_gid)

    def _popen_kwargs(self) -> dict[str, Any]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C", "TZ": "UTC"}
        kwargs: dict[str, Any] = {"env": env, "cwd": self.root}
        if self._user is not None:
            env["HOME"] = str(self.root)
            kwargs.update(user=self._user.pw_uid, group=self._user.pw_gid, extra_groups=[])
        return kwargs

    def _initdb(self, timeout: float) -> None:
        cmd = [
            str(self.bindir / "initdb"),
            *("-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8", "--locale=C"),
            "--no-sync",
            "--no-instructions",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **self._popen_kwargs())
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        self._initialized = True

    def _spawn(self) -> None:
        settings = {**SETTINGS, "port": str(self.port), "unix_socket_directories": str(self.socket_dir)}
        cmd = [str(self.bindir / "postgres"), "-D", str(self.data)]
        for key, value in settings.items():
            cmd += ["-c", f"{key}={value}"]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: kill9 reaches every backend
                **self._popen_kwargs(),
            )

    def _wait_ready(self, timeout: float) -> bool:
        import psycopg

        proc = self.process
        assert proc is not None

        def ready() -> bool | None:
            if proc.poll() is not None:
                return None  # exited: stop waiting, the caller reads the log
            try:
                with psycopg.connect(self.dsn, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return True
            except psycopg.OperationalError:
                return False

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = ready()
            if state:
                return True
            if state is None:
                return False
            time.sleep(0.05)
        self.kill9()
        raise TimeoutError(f"postgres not accepting connections after {timeout}s:\n{self.log()[-3000:]}")

    def _kill_group(self, proc: subprocess.Popen[bytes]) -> None:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        _wait(lambda: not _live_members(proc.pid), 30, f"the backends of postgres (group {proc.pid}) to exit")


def _live_members(pgid: int) -> list[int]:
    """Processes of a process group that still run (zombies do not count); empty where /proc is missing."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def unavailable_reason() -> str | None:
    """Why no server can be started here, or None when one can."""
    if find_bindir() is None:
        return f"PostgreSQL server binaries (initdb, postgres) not found: {INSTALL_HINT}"
    return None


def skip_or_fail(reason: str) -> None:
    """Skip on a developer machine; fail in CI (CI set), where .ci/run installs PostgreSQL."""
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{reason} — in CI .ci/run should have installed it", pytrace=False)
    pytest.skip(reason)


@contextmanager
def running_postgres(timeout: float = 60.0) -> Iterator[PostgresServer]:
    """A private, started PostgreSQL server, deleted afterwards; skips (or fails in CI) when none can run."""
    reason = unavailable_reason()
    if reason:
        skip_or_fail(reason)
    bindir = find_bindir()
    assert bindir is not None
    server = PostgresServer(bindir)
    try:
        server.start(timeout)
        yield server
    finally:
        server.cleanup()


def postgres_fixture(scope: Any = "session", name: str | None = None) -> Any:
    """A pytest fixture yielding a started PostgresServer, stopped and deleted at teardown."""

    @pytest.fixture(scope=scope, name=name)
    def _postgres_server() -> Iterator[PostgresServer]:
        with running_postgres() as server:
            yield server

    return _postgres_server


postgres_server = postgres_fixture(name="postgres_server")
"""Session-scoped: import it into conftest.py (or a test module) to share one server."""
