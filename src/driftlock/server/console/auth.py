"""Console sessions: sign in once with an API key, then a signed cookie; CSRF tokens for every form.

The cookie is ``<issued>.<nonce>.<key fingerprint>.<HMAC>`` signed with the console's secret (one for every
process and replica: kept in the store, or given with ``--console-secret``): it never carries the key, it
expires (``max_age``), it stops working when its key is no longer accepted, and (signed in) when its row in
the store's session table is gone: sign-out deletes it, so the cookie stops working in every process. Forms carry a
token derived from the session's nonce; a POST must present the session, the token, and (when the browser
sends one) an ``Origin`` equal to the console's own.

Without API keys (loopback only) the console needs no sign-in, but a session cookie is still issued so that
forms keep their CSRF token, and requests whose ``Host`` is not a loopback name are refused (DNS rebinding).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import Request

from driftlock.server.access import FailureThrottle
from driftlock.service.console_sessions import ConsoleSessionStore, SharedSecret, session_key

__all__ = ["COOKIE", "Session", "SessionSigner", "SignInLimiter"]

COOKIE = "driftlock_console"
OPEN = "open"
"""The fingerprint of sessions when the server has no API keys."""


@dataclass(frozen=True)
class Session:
    issued: int
    nonce: str
    fingerprint: str
    csrf: str


class SessionSigner:
    """Issues and checks session cookies. ``secret`` is fixed bytes or the store's :class:`SharedSecret`;
    with ``sessions`` (the store's table) a signed-in session also needs its row, which sign-out deletes."""

    def __init__(
        self,
        api_keys: Sequence[str],
        secret: bytes | SharedSecret,
        *,
        max_age: int = 12 * 3600,
        sessions: ConsoleSessionStore | None = None,
    ) -> None:
        if isinstance(secret, bytes) and len(secret) < 16:
            raise ValueError("the console's secret must be at least 16 bytes")
        self._source = secret
        self.max_age = max_age
        self._sessions = sessions
        self._keys = [k.encode() for k in api_keys if k]

    @property
    def open(self) -> bool:
        """True when the server accepts no keys: the console needs no sign-in."""
        return not self._keys

    def _secret(self, reread: bool = False) -> bytes:
        return self._source if isinstance(self._source, bytes) else self._source.get(reread)

    @staticmethod
    def _mac(secret: bytes, purpose: str, value: str) -> str:
        return hmac.new(secret, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()

    def _fingerprints(self, secret: bytes) -> dict[str, bytes]:
        return {self._mac(secret, "key", k.decode())[:16]: k for k in self._keys}

    def check_key(self, given: str) -> str | None:
        """The fingerprint of ``given`` if it is an accepted key (constant-time), else None."""
        found = None
        for fingerprint, key in self._fingerprints(self._secret()).items():
            if hmac.compare_digest(given.encode(), key):
                found = fingerprint
        return found

    def issue(self, fingerprint: str, now: float | None = None) -> tuple[str, Session]:
        """A new session (recorded in the store's table unless it is an open console's): its cookie and itself.
        May block on the store: call it off the event loop."""
        issued = int(time.time() if now is None else now)
        nonce = secrets.token_hex(16)
        secret = self._secret()
        if fingerprint != OPEN and self._sessions is not None:
            self._sessions.add(session_key(nonce), issued, issued + self.max_age)
        payload = f"{issued}.{nonce}.{fingerprint}"
        session = Session(issued, nonce, fingerprint, self._mac(secret, "csrf", nonce))
        return f"{payload}.{self._mac(secret, 'session', payload)}", session

    def load(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session of a cookie: signed with the current secret, not expired, its key still accepted and (when
        signed in) not signed out. May block on the store: call it off the event loop."""
        if not cookie:
            return None
        parts = cookie.split(".")
        if len(parts) != 4 or not parts[0].isdigit():
            return None
        issued_s, nonce, fingerprint, mac = parts
        payload = f"{issued_s}.{nonce}.{fingerprint}"
        secret = self._secret()
        if not hmac.compare_digest(self._mac(secret, "session", payload), mac):
            secret = self._secret(reread=True)  # another process may have seen a rotation first
            if not hmac.compare_digest(self._mac(secret, "session", payload), mac):
                return None
        issued, now = int(issued_s), time.time() if now is None else now
        if not (issued - 60 <= now <= issued + self.max_age):
            return None
        if self.open:
            if fingerprint != OPEN:
                return None
        elif fingerprint not in self._fingerprints(secret):
            return None
        elif self._sessions is not None and not self._sessions.alive(session_key(nonce), now):
            return None  # signed out (in any process), or pushed out by newer sessions
        return Session(issued, nonce, fingerprint, self._mac(secret, "csrf", nonce))

    def revoke(self, session: Session) -> None:
        """Sign ``session`` out everywhere: its cookie and CSRF token stop working in every process."""
        if self._sessions is not None and session.fingerprint != OPEN:
            self._sessions.revoke(session_key(session.nonce))

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(session.csrf, token)


SignInLimiter = FailureThrottle
"""Failed sign-ins per client address: the API's throttle (a right key is checked first, never locked out)."""


def loopback_host(request: Request) -> bool:
    """Whether the ``Host`` header names a loopback address (or ``localhost``)."""
    host = request.url.hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def same_origin(request: Request) -> bool:
    """A POST from a browser carries ``Origin`` (and ``Sec-Fetch-Site``): both must say it is our own page."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    own = f"{request.url.scheme}://{request.url.netloc}"
    return origin == own


PROXY_HINT = (
    "Behind a TLS-terminating proxy, start driftlock serve with --forwarded-allow-ips set to the proxy's address "
    "(e.g. --forwarded-allow-ips 127.0.0.1) and have the proxy send X-Forwarded-Proto and the original Host "
    "(nginx: proxy_set_header Host $host; proxy_set_header X-Forwarded-Proto $scheme)."
)


def cross_origin_message(request: Request, what: str) -> str:
    """Why :func:`same_origin` refused ``what``, and, when it looks like an untrusted proxy in front (the browser
    is on https, or a proxy says so, but this server sees http; or another host), what to pass to fix it."""
    message = f"Refused: {what} was not sent from this console."
    origin = urlsplit(request.headers.get("origin") or "")
    forwarded = request.headers.get("x-forwarded-proto", "").strip().lower()
    if request.url.scheme == "http" and "https" in (origin.scheme, forwarded):
        return f"{message} The browser is on https but this server sees http. {PROXY_HINT}"
    if origin.netloc and origin.netloc != request.url.netloc:
        page, named = origin.netloc[:100], request.url.netloc[:100]
        return f"{message} The page is on {page} but the request names {named}. {PROXY_HINT}"
    return message
