"""Who may call ``driftlock serve``'s API: keys and their scopes, a throttle on failed keys, loopback rules.

* **Keys** (``--api-key`` and ``DRIFTLOCK_SERVE_API_KEYS``) are checked at start: an empty key, or one
  shorter than :data:`MIN_KEY_LENGTH` characters, stops serve with a message that names the entry, never
  the key. ``KEY`` is an admin key (every route, the console); ``KEY:ingest`` may only send events
  (``POST /v1/detect`` and OTLP ``/v1/traces``); ``KEY:streams=web,api`` may use every route of those
  streams (detect, reads, mutes, feedback) and nothing else: lists across streams, exports, ``/metrics`` and
  the console are refused, and the anomaly and incident lists need ``?stream_id=`` naming one of them
  (the model of API-AND-CBAD.md §1.2: roles ``admin`` and ``stream``, a key bound to streams).
* **Failed keys** are counted (``driftlock_auth_failures_total{reason}``), logged once a minute with a
  masked prefix at most, and throttled per client address and per presented-key prefix: past the budget a
  wrong key is answered 429 with ``Retry-After``. A right key is checked first and always served, so
  others' failures from the same address never lock it out.
* **Without keys** (loopback only) the API answers only ``Host`` values that name the loopback (DNS
  rebinding), and refuses writes a web page could send: a cross-site ``Origin`` or ``Sec-Fetch-Site``, and
  bodies that are not ``application/json`` (the OTLP receiver keeps its protobuf and JSON bodies).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from driftlock.service.errors import ApiError, InvalidArgument
from driftlock.service.validation import stream_id as valid_stream_id

__all__ = [
    "MIN_KEY_LENGTH",
    "Access",
    "ApiKey",
    "FailureThrottle",
    "LoopbackGuard",
    "loopback_host",
    "masked",
    "parse_keys",
]

logger = logging.getLogger("driftlock.server")

MIN_KEY_LENGTH = 16
"""Characters; ``python -c "import secrets; print(secrets.token_urlsafe(32))"`` makes a good key."""

ENV_KEYS = "DRIFTLOCK_SERVE_API_KEYS"
INGEST_ROUTES = frozenset({("POST", "/v1/detect"), ("POST", "/v1/traces")})
ADMIN_ONLY = frozenset(
    {
        "/metrics",
        "/v1/traces",
        "/v1/streams",
        "/v1/anomalies/export",
        "/v1/anomalies/{anomaly_id}/export",
        "/v1/exports/{job_id}",
    }
)
"""Routes a stream-bound key may not use: they span every stream (OTLP spans name their own streams; an
export job is read by job id, whichever stream it came from)."""

Role = Literal["admin", "ingest", "streams"]


def masked(key: str) -> str:
    """At most a quarter of the key, and never more than 4 characters, as serve's start line shows keys."""
    shown = key[: min(4, len(key) // 4)]
    return (shown if shown.isascii() and shown.isprintable() else "") + "…"


@dataclass(frozen=True)
class ApiKey:
    """An accepted key and what it may do (``streams``: the stream ids of a ``streams`` key)."""

    key: str = field(repr=False)
    role: Role = "admin"
    streams: frozenset[str] = frozenset()

    @property
    def spec(self) -> str:
        """The key as ``--api-key`` takes it (``KEY``, ``KEY:ingest``, ``KEY:streams=a,b``)."""
        if self.role == "streams":
            return f"{self.key}:streams={','.join(sorted(self.streams))}"
        return self.key if self.role == "admin" else f"{self.key}:{self.role}"

    def describe(self) -> str:
        scope = {"admin": "admin", "ingest": "ingest only"}.get(self.role, f"streams {', '.join(sorted(self.streams))}")
        return f"{masked(self.key)} {scope}"


def _parse_key(spec: str, where: str) -> ApiKey:
    key, colon, scope = spec.partition(":")
    hint = "drop it to serve without keys (on 127.0.0.1 only)"
    if not key.strip():
        raise ValueError(
            f"{where} is empty (an unset variable?): give a key of at least {MIN_KEY_LENGTH} characters, or {hint}"
        )
    if any(c.isspace() or c == "," or not c.isprintable() or not c.isascii() for c in key):
        raise ValueError(
            f"{where} has a space, comma or non-ASCII character in its key; in {ENV_KEYS}, separate an entry "
            "with streams= from the others by a space"
        )
    if len(key) < MIN_KEY_LENGTH:
        raise ValueError(
            f"{where} is {len(key)} characters long; a key needs at least {MIN_KEY_LENGTH} "
            '(make one with: python -c "import secrets; print(secrets.token_urlsafe(32))")'
        )
    if not colon or scope == "admin":
        return ApiKey(key)
    if scope == "ingest":
        return ApiKey(key, "ingest")
    if scope.startswith("streams="):
        names = [s.strip() for s in scope.removeprefix("streams=").split(",")]
        if not names or not all(names):
            raise ValueError(f"{where} names an empty stream id in streams=: list them as streams=web,api")
        for name in names:
            try:
                valid_stream_id(name)
            except InvalidArgument as exc:
                raise ValueError(f"{where}: {exc.message}") from None
        return ApiKey(key, "streams", frozenset(names))
    raise ValueError(
        f"{where} has an unknown scope after ':' (the key itself may not contain ':'); "
        "use KEY (admin), KEY:ingest or KEY:streams=web,api"
    )


def parse_keys(flags: Sequence[str] = (), environ: str | None = None) -> list[ApiKey]:
    """The keys of ``--api-key`` (each flag one entry) and of ``DRIFTLOCK_SERVE_API_KEYS`` (entries separated by
    spaces or commas; an entry with ``streams=a,b`` is separated by spaces only), or ValueError naming the
    entry at fault. A variable that is set but blank is refused too: it usually means a key was meant."""
    keys = [_parse_key(spec, f"--api-key #{n}") for n, spec in enumerate(flags, 1)]
    if environ is not None:
        if not environ.strip():
            raise ValueError(f"{ENV_KEYS} is set but holds no key: unset it to serve without keys (127.0.0.1 only)")
        entries: list[str] = []
        for token in environ.split():
            entries += [token] if ":streams=" in token else token.split(",")
        keys += [_parse_key(spec, f"{ENV_KEYS} entry {n}") for n, spec in enumerate(entries, 1)]
    return keys


# -- the failure throttle --------------------------------------------------------------------------------------------


class FailureThrottle:
    """Token buckets of failed authentications, per client address and per presented-key prefix.

    Each bucket holds ``burst`` failures and regains ``rate`` per second; a failure past an empty bucket
    still costs a token (down to ``-burst``), so a client that ignores ``Retry-After`` stays throttled.
    Only failures are charged: callers check a key first and never throttle a right one. At most
    ``max_entries`` addresses and as many prefixes are remembered (least recently failed dropped first).
    Thread-safe; per process (each of ``--workers N`` has its own).
    """

    def __init__(self, burst: int = 10, rate: float = 0.5, max_entries: int = 10_000) -> None:
        self.burst, self.rate, self.max_entries = float(burst), rate, max_entries
        self._buckets: dict[str, OrderedDict[str, tuple[float, float]]] = {
            "address": OrderedDict(),
            "prefix": OrderedDict(),
        }
        self._lock = threading.Lock()

    def _tokens(self, kind: str, name: str, now: float) -> float:
        tokens, updated = self._buckets[kind].get(name, (self.burst, now))
        return min(self.burst, tokens + (now - updated) * self.rate)

    def wait(self, address: str, prefix: str | None = None, now: float | None = None) -> float:
        """Seconds until a failure from ``address`` (with a key starting ``prefix``) is within budget; 0: now."""
        now = time.monotonic() if now is None else now
        with self._lock:
            needed = [(1 - self._tokens("address", address, now)) / self.rate]
            if prefix:
                needed.append((1 - self._tokens("prefix", prefix, now)) / self.rate)
        return max(0.0, *needed)

    def failed(self, address: str, prefix: str | None = None, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            for kind, name in (("address", address), ("prefix", prefix)):
                if not name:
                    continue
                buckets = self._buckets[kind]
                tokens = max(-self.burst, self._tokens(kind, name, now) - 1)
                buckets.pop(name, None)
                buckets[name] = (tokens, now)
                while len(buckets) > self.max_entries:
                    buckets.popitem(last=False)

    def blocked(self, address: str, now: float | None = None) -> bool:
        """Whether one more failure from ``address`` would be over budget (the console's sign-in asks)."""
        return self.wait(address, now=now) > 0

    def entries(self) -> int:
        """Addresses and prefixes remembered (at most twice ``max_entries``)."""
        return sum(len(b) for b in self._buckets.values())


def key_prefix(given: str) -> str:
    """The throttle's name for a presented key: its first 4 characters (a guesser varying the rest shares it)."""
    return given[:4]


# -- authentication and scopes ---------------------------------------------------------------------------------------


class Access:
    """The app's keys, its failure throttle, and what it tells ``/metrics`` and the log about failures."""

    REASONS = ("missing", "invalid", "throttled", "scope")

    def __init__(
        self,
        keys: Iterable[ApiKey],
        *,
        throttle: FailureThrottle | None = None,
        count: Callable[[str], None] | None = None,
        log_period: float = 60.0,
    ) -> None:
        self.keys = list(keys)
        self.throttle = throttle or FailureThrottle()
        self._count = count or (lambda reason: None)
        self._log_period = log_period
        self._logged_at = -math.inf
        self._unlogged = 0
        self._lock = threading.Lock()

    @property
    def open(self) -> bool:
        return not self.keys

    @property
    def admin_keys(self) -> list[str]:
        return [k.key for k in self.keys if k.role == "admin"]

    def match(self, given: str) -> ApiKey | None:
        """The accepted key equal to ``given``, compared in constant time with every key."""
        found = None
        for key in self.keys:
            if hmac.compare_digest(given.encode(), key.key.encode()):
                found = key
        return found

    def authenticate(self, headers: Mapping[str, str], address: str) -> ApiKey:
        """The key of a request (``X-Api-Key`` or ``Authorization: Bearer``), or ApiError 401 / 429."""
        given = headers.get("x-api-key")
        if given is None:
            auth = headers.get("authorization", "")
            given = auth[7:] if auth.lower().startswith("bearer ") else None
        key = self.match(given) if given is not None else None
        if key is not None:
            return key
        prefix = key_prefix(given) if given else None
        wait = self.throttle.wait(address, prefix)
        self.throttle.failed(address, prefix)
        reason = "throttled" if wait else ("missing" if given is None else "invalid")
        self.failed(reason, address, given)
        if wait:
            seconds = max(1, math.ceil(wait))
            raise ApiError(
                429, f"too many failed authentications from this client; retry in {seconds} s", retry_after=seconds
            )
        raise ApiError(
            401, "authentication failed" + (": send X-Api-Key or Authorization: Bearer" if given is None else "")
        )

    def failed(self, reason: str, address: str, given: str | None) -> None:
        """Count a refusal, and log it unless one was logged less than a period ago (then say how many since)."""
        self._count(reason)
        now = time.monotonic()
        with self._lock:
            if now - self._logged_at < self._log_period:
                self._unlogged += 1
                return
            unlogged, self._unlogged, self._logged_at = self._unlogged, 0, now
        logger.warning(
            "refused a request: %s key from %s (key %s)%s",
            {"missing": "no", "invalid": "wrong", "throttled": "wrong (throttled)", "scope": "out-of-scope"}[reason],
            address,
            masked(given) if given else "-",
            f"; {unlogged} more refusals since the last such line" if unlogged else "",
        )

    def check_scope(
        self,
        key: ApiKey,
        method: str,
        route: str,
        params: Mapping[str, str],
        query: Mapping[str, str],
        body: Any,
        owner: Callable[[str, str], str | None],
        address: str,
    ) -> None:
        """ApiError 403 unless ``key`` may call ``method route``. ``owner(kind, id)``: the stream of an anomaly or
        incident (None if there is none; the route then answers 404 itself). May read the store: run it on a
        worker thread."""
        refusal = _refusal(key, method, route, params, query, body, owner)
        if refusal is not None:
            self.failed("scope", address, key.key)
            raise ApiError(403, refusal)


def _refusal(
    key: ApiKey,
    method: str,
    route: str,
    params: Mapping[str, str],
    query: Mapping[str, str],
    body: Any,
    owner: Callable[[str, str], str | None],
) -> str | None:
    if key.role == "admin":
        return None
    if key.role == "ingest":
        if (method, route) in INGEST_ROUTES:
            return None
        return f"this key is limited to ingest (POST /v1/detect, /v1/traces): {method} {route} needs an admin key"
    allowed = key.streams
    names = ", ".join(sorted(allowed))
    if route in ADMIN_ONLY:
        return f"this key is limited to the streams {names}: {method} {route} spans every stream and needs an admin key"
    stream: str | None
    if "stream_id" in params:
        stream = params["stream_id"]
    elif route == "/v1/detect":
        try:
            stream = valid_stream_id(body.get("stream_id") if isinstance(body, dict) else None)
        except InvalidArgument:
            return None  # the route answers 400 itself
    elif route in ("/v1/anomalies", "/v1/incidents"):
        stream = query.get("stream_id")
        if stream is None:
            return f"this key is limited to the streams {names}: name one with ?stream_id="
    elif "anomaly_id" in params or "incident_id" in params:
        kind = "anomaly" if "anomaly_id" in params else "incident"
        stream = owner(kind, params[f"{kind}_id"])
        if stream is None:
            return None
    else:
        return f"this key is limited to the streams {names}: {method} {route} needs an admin key"
    if stream in allowed:
        return None
    return f"this key is limited to the streams {names}; not {stream[:200]!r}"


# -- without keys: loopback Host, no cross-site writes ---------------------------------------------------------------


def loopback_host(host: str) -> bool:
    """Whether a host name (without port; IPv6 with or without brackets) is the loopback."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_of(netloc: str) -> str:
    try:
        return urlsplit(f"//{netloc}").hostname or ""
    except ValueError:
        return ""


def cross_site(headers: Mapping[str, str]) -> str | None:
    """Why a browser sent this request from another site, or None: ``Sec-Fetch-Site`` says ``cross-site`` or
    ``same-site`` (another port of the same host is same-site), or ``Origin`` is not a loopback origin."""
    site = headers.get("sec-fetch-site")
    if site in ("cross-site", "same-site"):
        return f"Sec-Fetch-Site: {site}"
    origin = headers.get("origin")
    if origin is not None:
        parts = urlsplit(origin) if origin != "null" else None
        if parts is None or parts.scheme not in ("http", "https") or not loopback_host(_host_of(parts.netloc)):
            return f"Origin {origin[:100]!r}"
    return None


API_PATHS = ("/v1/", "/metrics")
"""What the guard covers: not the health probes (they tell nothing), nor the console (it checks its own)."""


class LoopbackGuard:
    """ASGI middleware for a server without keys: the API answers only loopback ``Host`` values, and a write
    to ``/v1`` must come from no other site and be typed JSON (or untyped); ``/v1/traces`` keeps its OTLP body
    types. The console checks its own Host and Origin (:mod:`driftlock.server.console.auth`)."""

    def __init__(self, app: ASGIApp, *, on_refused: Callable[[Scope, ApiError], Any]) -> None:
        self.app = app
        self.on_refused = on_refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(API_PATHS):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        refusal = self.refusal(scope["method"], path, headers)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        response = self.on_refused(scope, refusal)
        await response(scope, receive, send)

    @staticmethod
    def refusal(method: str, path: str, headers: Mapping[str, str]) -> ApiError | None:
        host = headers.get("host")
        if host is not None and not loopback_host(_host_of(host)):
            return ApiError(
                403,
                f"this server has no API key, so it answers only on a loopback Host (127.0.0.1, localhost, [::1]); "
                f"got Host {host[:100]!r} (start it with --api-key to serve other names)",
            )
        if method in ("GET", "HEAD", "OPTIONS") or not path.startswith("/v1/"):
            return None
        why = cross_site(headers)
        if why is not None:
            return ApiError(
                403,
                f"refused a cross-site write ({why}): without an API key this server takes writes from local "
                "clients only",
            )
        if path == "/v1/traces":
            return None
        # a page can send text/plain and form types without asking (no CORS preflight): only JSON is taken; a
        # body without any type cannot come from a form, and a script's Blob carries a cross-site Origin
        media = headers.get("content-type", "").split(";")[0].strip().lower()
        if media and media != "application/json":
            return ApiError(415, f"send the body as Content-Type: application/json (got {media[:60] or 'none'!r})")
        return None
