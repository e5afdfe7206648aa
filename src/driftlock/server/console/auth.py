"""Console sessions: sign in once with an API key, then a signed cookie; CSRF tokens for every form.

The cookie is ``<issued>.<nonce>.<key fingerprint>.<HMAC>`` signed with the app's secret: it never carries
the key, it expires (``max_age``), and it stops working when its key is no longer accepted. Forms carry a
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

from starlette.requests import Request

from driftlock.server.access import FailureThrottle

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
    def __init__(self, api_keys: Sequence[str], secret: bytes, *, max_age: int = 12 * 3600) -> None:
        if len(secret) < 16:
            raise ValueError("the console's secret must be at least 16 bytes")
        self._secret = secret
        self.max_age = max_age
        self._fingerprints = {self._fingerprint(k): k.encode() for k in api_keys if k}

    @property
    def open(self) -> bool:
        """True when the server accepts no keys: the console needs no sign-in."""
        return not self._fingerprints

    def _mac(self, purpose: str, value: str) -> str:
        return hmac.new(self._secret, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()

    def _fingerprint(self, key: str) -> str:
        return self._mac("key", key)[:16]

    def check_key(self, given: str) -> str | None:
        """The fingerprint of ``given`` if it is an accepted key (constant-time), else None."""
        found = None
        for fingerprint, key in self._fingerprints.items():
            if hmac.compare_digest(given.encode(), key):
                found = fingerprint
        return found

    def issue(self, fingerprint: str, now: float | None = None) -> tuple[str, Session]:
        issued = int(time.time() if now is None else now)
        nonce = secrets.token_hex(16)
        payload = f"{issued}.{nonce}.{fingerprint}"
        session = Session(issued, nonce, fingerprint, self._mac("csrf", nonce))
        return f"{payload}.{self._mac('session', payload)}", session

    def load(self, cookie: str | None, now: float | None = None) -> Session | None:
        if not cookie:
            return None
        parts = cookie.split(".")
        if len(parts) != 4 or not parts[0].isdigit():
            return None
        issued_s, nonce, fingerprint, mac = parts
        if not hmac.compare_digest(self._mac("session", f"{issued_s}.{nonce}.{fingerprint}"), mac):
            return None
        issued, now = int(issued_s), time.time() if now is None else now
        if not (issued - 60 <= now <= issued + self.max_age):
            return None
        if fingerprint not in self._fingerprints and not (self.open and fingerprint == OPEN):
            return None
        return Session(issued, nonce, fingerprint, self._mac("csrf", nonce))

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
