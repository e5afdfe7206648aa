"""Console sessions kept in the store, so that every process and replica of ``driftlock serve`` signs cookies with
one secret and a sign-out signs the session out everywhere.

Two tables, written once for both SQL stores (the pattern of :mod:`driftlock.service.webhooks`):
``console_secret`` holds the secret that signs cookies and CSRF tokens, created by whichever process asks
first (``INSERT ... ON CONFLICT DO NOTHING``, then read back, so processes starting together agree), and
``console_sessions`` one row per signed-in session, keyed by a hash of the session's nonce (a copy of the
database does not hold a usable session id). Signing out deletes the row; expired rows are deleted whenever a
session is added, and at most :data:`MAX_SESSIONS` are kept (the oldest go first), so the table stays small.
The memory store keeps both in this process (:class:`MemoryConsoleSessions`). The tables sit outside the
stores' schema versions: an older driftlock opening the database ignores them.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

__all__ = [
    "MAX_SESSIONS",
    "MIN_SECRET_CHARS",
    "ConsoleSessionStore",
    "MemoryConsoleSessions",
    "SharedSecret",
    "SqlConsoleSessions",
    "check_secret",
    "session_key",
]

MAX_SESSIONS = 10_000
"""Live sessions kept; past it the oldest is signed out (sessions come only from sign-ins with a valid key)."""
MIN_SECRET_CHARS = 32
"""A secret given with ``--console-secret`` must be at least this long (``openssl rand -hex 32`` gives 64)."""
_NAME = "console"


def check_secret(secret: str) -> bytes:
    """A secret given by the operator, as bytes; ValueError (saying how to make one) when it is too short."""
    if len(secret.strip()) < MIN_SECRET_CHARS:
        raise ValueError(
            f"--console-secret (or DRIFTLOCK_SERVE_CONSOLE_SECRET) must be at least {MIN_SECRET_CHARS} characters, "
            f"got {len(secret.strip())}: make one with `openssl rand -hex 32`, or leave it unset to keep one in the "
            "database"
        )
    return secret.strip().encode()


def session_key(nonce: str) -> str:
    """What the table keeps for a session: a hash of the nonce the signed cookie carries."""
    return hashlib.sha256(nonce.encode()).hexdigest()


class ConsoleSessionStore(Protocol):
    """What the console needs of the store's sessions."""

    def secret(self) -> bytes: ...
    def rotate(self) -> None: ...
    def add(self, key: str, issued: float, expires: float) -> None: ...
    def alive(self, key: str, now: float) -> bool: ...
    def revoke(self, key: str) -> None: ...
    def count(self) -> int: ...


class MemoryConsoleSessions:
    """``:memory:``: one process, so a random secret of its own and a dict of sessions."""

    def __init__(self, max_sessions: int = MAX_SESSIONS) -> None:
        self.max_sessions = max_sessions
        self._secret = secrets.token_hex(32)
        self._sessions: dict[str, tuple[float, float]] = {}  # key -> (issued, expires), in insertion order
        self._lock = threading.Lock()

    def secret(self) -> bytes:
        with self._lock:
            return self._secret.encode()

    def rotate(self) -> None:
        with self._lock:
            self._secret = secrets.token_hex(32)
            self._sessions.clear()

    def add(self, key: str, issued: float, expires: float) -> None:
        with self._lock:
            for old in [k for k, (_, end) in self._sessions.items() if end <= issued]:
                del self._sessions[old]
            while len(self._sessions) >= self.max_sessions:
                self._sessions.pop(next(iter(self._sessions)))
            self._sessions[key] = (issued, expires)

    def alive(self, key: str, now: float) -> bool:
        with self._lock:
            found = self._sessions.get(key)
        return found is not None and found[1] > now

    def revoke(self, key: str) -> None:
        with self._lock:
            self._sessions.pop(key, None)

    def count(self) -> int:
        with self._lock:
            return len(self._sessions)


_TABLES = (
    "CREATE TABLE IF NOT EXISTS console_secret (name TEXT PRIMARY KEY, secret TEXT NOT NULL, "
    "created_at DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS console_sessions (id TEXT PRIMARY KEY, issued_at DOUBLE PRECISION NOT NULL, "
    "expires_at DOUBLE PRECISION NOT NULL)",
    "CREATE INDEX IF NOT EXISTS console_sessions_expires ON console_sessions (expires_at)",
    "CREATE INDEX IF NOT EXISTS console_sessions_issued ON console_sessions (issued_at)",
)


class SqlConsoleSessions:
    """The two tables over a DB-API connection: ``connection()`` yields one (in a transaction that commits on
    exit, or in autocommit); ``placeholder`` is ``?`` (SQLite) or ``%s`` (PostgreSQL); ``prelude`` runs before
    the tables are created, in the same transaction (PostgreSQL's advisory lock)."""

    def __init__(
        self,
        connection: Callable[[], AbstractContextManager[Any]],
        placeholder: str,
        prelude: Sequence[str] = (),
        max_sessions: int = MAX_SESSIONS,
    ) -> None:
        self._connection = connection
        self._p = placeholder
        self.max_sessions = max_sessions
        with self._connection() as conn:
            for statement in prelude:
                conn.execute(statement)
            for statement in _TABLES:
                conn.execute(statement)

    def secret(self) -> bytes:
        p = self._p
        with self._connection() as conn:
            # one row whoever asks first: the others' inserts do nothing, and all read the same row back
            conn.execute(
                f"INSERT INTO console_secret (name, secret, created_at) VALUES ({p}, {p}, {p}) "
                "ON CONFLICT (name) DO NOTHING",
                (_NAME, secrets.token_hex(32), time.time()),
            )
            row = conn.execute(f"SELECT secret FROM console_secret WHERE name = {p}", (_NAME,)).fetchone()
        return str(row[0]).encode()

    def rotate(self) -> None:
        """A new secret (made at the next :meth:`secret`) and no sessions: everyone is signed out."""
        with self._connection() as conn:
            conn.execute(f"DELETE FROM console_secret WHERE name = {self._p}", (_NAME,))
            conn.execute("DELETE FROM console_sessions")

    def add(self, key: str, issued: float, expires: float) -> None:
        p = self._p
        with self._connection() as conn:
            conn.execute(f"DELETE FROM console_sessions WHERE expires_at <= {p}", (issued,))
            # past the bound, the oldest go (one statement: however many processes add at once)
            conn.execute(
                "DELETE FROM console_sessions WHERE issued_at <= (SELECT issued_at FROM console_sessions "
                f"ORDER BY issued_at DESC LIMIT 1 OFFSET {p})",
                (self.max_sessions - 1,),
            )
            conn.execute(
                f"INSERT INTO console_sessions (id, issued_at, expires_at) VALUES ({p}, {p}, {p})",
                (key, issued, expires),
            )

    def alive(self, key: str, now: float) -> bool:
        p = self._p
        with self._connection() as conn:
            row = conn.execute(
                f"SELECT 1 FROM console_sessions WHERE id = {p} AND expires_at > {p}", (key, now)
            ).fetchone()
        return row is not None

    def revoke(self, key: str) -> None:
        with self._connection() as conn:
            conn.execute(f"DELETE FROM console_sessions WHERE id = {self._p}", (key,))

    def count(self) -> int:
        with self._connection() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM console_sessions").fetchone()[0])


class SharedSecret:
    """The store's secret as one process sees it: read at start, read again every ``refresh`` seconds and when a
    cookie fails its check (at most once a second), so that after a rotation every process signs with the new
    secret within ``refresh`` seconds without a restart."""

    def __init__(self, store: ConsoleSessionStore, refresh: float = 30.0) -> None:
        self._store = store
        self.refresh = refresh
        self._value = store.secret()
        self._read_at = time.monotonic()
        self._lock = threading.Lock()

    def get(self, reread: bool = False) -> bytes:
        """The secret; ``reread`` asks the store again unless it was asked within the last second."""
        now = time.monotonic()
        with self._lock:
            age = now - self._read_at
            if age >= self.refresh or (reread and age >= 1.0):
                self._value, self._read_at = self._store.secret(), now
            return self._value
