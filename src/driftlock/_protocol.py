"""The Driftlock HTTP protocol without I/O: building requests, reading responses, deciding retries.

Both clients drive :func:`call_flow`, a generator that yields :class:`Send` and :class:`Sleep`
actions and receives their outcomes (the same idea as httpx's ``Auth.auth_flow``), so retry,
backoff, ``Retry-After`` and the deadline are written once and the clients differ only in I/O.
"""

from __future__ import annotations

import base64
import email.utils
import json
import logging
import random
import time
import urllib.parse
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from driftlock._urls import split_credentials
from driftlock._version import __version__
from driftlock.config import Config
from driftlock.exceptions import (
    DriftlockAuthenticationError,
    DriftlockError,
    DriftlockNetworkError,
    DriftlockRateLimitError,
    DriftlockValidationError,
)

logger = logging.getLogger("driftlock.client")

RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
USER_AGENT = f"driftlock-python/{__version__}"
_ENVELOPE_KEYS = frozenset({"type", "body", "timestamp", "attributes", "idempotency_key", "sequence"})


@dataclass(frozen=True)
class Send:
    """Send one HTTP request; the driver answers with a ``Response`` or the transport exception."""

    method: str
    url: str
    headers: Mapping[str, str]
    content: bytes | None
    params: Mapping[str, Any] | None
    timeout: float


@dataclass(frozen=True)
class Sleep:
    """Wait before the next attempt; the driver answers True when the wait was interrupted by close()."""

    seconds: float


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    content: bytes


Flow = Generator[Send | Sleep, Any, Any]


_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
"""Compact, strict JSON; built once, because ``json.dumps`` with options builds an encoder per call."""


def to_envelope(item: Any) -> Any:
    """Full envelopes (with ``body``) pass through; anything else becomes the ``body`` of one."""
    if isinstance(item, Mapping) and "body" in item and set(item) <= _ENVELOPE_KEYS:
        return dict(item)
    return {"body": item}


def encode_events(events: Iterable[Any]) -> list[Any]:
    """Check that events are a non-empty list of JSON values and wrap bare payloads."""
    if isinstance(events, str | bytes | Mapping) or not isinstance(events, Iterable):
        raise DriftlockValidationError(
            f"events must be a list of events, not {type(events).__name__}{_placeholder(events)}",
            code="invalid_argument",
        )
    items = [to_envelope(e) for e in events]
    if not items:
        raise DriftlockValidationError("events must not be empty", code="invalid_argument")
    try:
        _JSON.encode(items)  # one pass in C; only a failure looks for the culprit
    except (TypeError, ValueError):
        for index, item in enumerate(items):
            try:
                _JSON.encode(item)
            except (TypeError, ValueError) as exc:
                if item.get("body") is Ellipsis:
                    raise DriftlockValidationError(
                        f"event {index} is ...{_placeholder(Ellipsis)}", code="invalid_argument"
                    ) from None
                raise DriftlockValidationError(
                    f"event {index} cannot be sent as JSON: {exc}", code="invalid_argument"
                ) from None
        raise
    return items


def _placeholder(value: Any) -> str:
    return " (the documentation's placeholder): pass your events" if value is Ellipsis else ""


def chunk(items: Sequence[Any], size: int) -> list[tuple[int, Sequence[Any]]]:
    """Split ``items`` into (offset, chunk) pairs of at most ``size`` events."""
    return [(start, items[start : start + size]) for start in range(0, len(items), size)]


_JITTER = random.Random()
"""Backoff jitter for every call. One instance: seeding a new one reads the OS's entropy pool, which
was a seventh of the export thread's time."""


def detect_body(
    events: Sequence[Any], stream_id: str | None, config_override: Mapping[str, Any] | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"events": list(events)}
    if stream_id:
        body["stream_id"] = stream_id
    if config_override:
        body["config_override"] = dict(config_override)
    return body


def escape(segment: str) -> str:
    """One path segment, percent-encoded (a ``/`` or ``?`` in a stream id stays inside its segment)."""
    if not isinstance(segment, str) or not segment:
        raise DriftlockValidationError(f"an id must be a non-empty string, got {segment!r}", code="invalid_argument")
    return urllib.parse.quote(segment, safe="")


def headers_for(config: Config) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if config.api_key:
        headers["X-Api-Key"] = config.api_key
    return headers


def call_flow(
    config: Config,
    method: str,
    path: str,
    *,
    body: Any = None,
    params: Mapping[str, Any] | None = None,
    deadline: float | None = None,
    rng: random.Random | None = None,
) -> Flow:
    """One API call with retries, backoff with jitter, Retry-After and one overall deadline.

    Returns the decoded JSON body; raises a :class:`DriftlockError` subclass. Credentials in the
    base URL (``https://user:pw@host``) are sent as HTTP Basic authentication, never as part of the
    URL, so no message, log line (ours or httpx's) or exception shows them.
    """
    url, credentials = split_credentials(config.api_root + path)
    deadline = time.monotonic() + config.timeout if deadline is None else deadline
    headers = headers_for(config)
    if credentials is not None:
        token = base64.b64encode(":".join(credentials).encode()).decode("ascii")
        headers["Authorization"] = "Basic " + token
    content = None
    if body is not None:
        content = _JSON.encode(body).encode()
        headers["Content-Type"] = "application/json"
    rng = rng or _JITTER
    attempt = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DriftlockNetworkError(
                f"{method} {url} did not complete within the {config.timeout:g}s deadline (TIMEOUT setting)",
                code="deadline_exceeded",
            )
        started = time.monotonic()
        outcome = yield Send(method, url, headers, content, params, remaining)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s %s -> %s in %.1f ms (attempt %d of %d)",
                method,
                url,
                outcome.status if isinstance(outcome, Response) else type(outcome).__name__,
                (time.monotonic() - started) * 1000,
                attempt + 1,
                config.max_retries + 1,
            )
        retry_after: float | None = None
        if isinstance(outcome, Response):
            if outcome.status < 300:
                return parse_json(outcome, url)
            error = error_from_response(outcome, url)
            if outcome.status not in RETRYABLE_STATUS:
                raise error
            if isinstance(error, DriftlockRateLimitError):
                retry_after = error.retry_after
            elif outcome.status == 503:  # the server says when its store is back (driftlock serve: 2 s)
                wait = retry_after_seconds(outcome.headers.get("retry-after"))
                retry_after = None if wait is None else min(wait, config.max_retry_delay)
        else:
            error = DriftlockNetworkError(
                f"Could not reach Driftlock at {url}: {type(outcome).__name__}: {outcome}. "
                "Check BASE_URL and that the server is running.",
                code="network_error",
            )
        if attempt >= config.max_retries:
            raise error
        if retry_after is not None:
            delay = retry_after
        else:
            delay = backoff(attempt, rng, initial=config.retry_delay, cap=config.max_retry_delay)
        if time.monotonic() + delay >= deadline:
            raise error
        interrupted = yield Sleep(delay)
        if interrupted:
            raise error
        attempt += 1


def backoff(attempt: int, rng: random.Random, *, initial: float, cap: float) -> float:
    """Exponential backoff from ``initial`` (RETRY_DELAY) up to ``cap`` (MAX_RETRY_DELAY), with ±20% jitter
    (as the OTLP exporters do) that never passes the cap."""
    return float(min(min(initial * 2.0**attempt, cap) * rng.uniform(0.8, 1.2), cap))


def parse_json(response: Response, url: str) -> Any:
    try:
        return json.loads(response.content)
    except ValueError:
        snippet = response.content[:200].decode("utf-8", "replace")
        raise DriftlockError(
            f"Driftlock at {url} answered HTTP {response.status} with a body that is not JSON: {snippet!r}",
            code="invalid_response",
            status=response.status,
        ) from None


def retry_after_seconds(value: str | None) -> float | None:
    """Read a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_from_response(response: Response, url: str) -> DriftlockError:
    """Map an error response (envelope ``{"error": {...}}`` or the flat 402 body) to a typed error."""
    try:
        data = json.loads(response.content)
    except ValueError:
        data = None
    code, message, request_id, retry_after = "internal", "", None, None
    details: dict[str, Any] = {}
    if isinstance(data, Mapping):
        err = data.get("error")
        if isinstance(err, Mapping):
            code = str(err.get("code") or code)
            message = str(err.get("message") or "")
            request_id = err.get("request_id")
            retry_after = err.get("retry_after_seconds")
        elif isinstance(err, str):  # flat 402 billing body
            message = err
            code = str(data.get("code") or code)
            details = {k: v for k, v in data.items() if k != "error"}
        request_id = request_id or data.get("request_id")
    if not message:
        snippet = response.content[:200].decode("utf-8", "replace")
        message = f"HTTP {response.status} from {url}" + (f": {snippet}" if snippet else "")
    header_wait = retry_after_seconds(response.headers.get("retry-after"))
    wait = header_wait if header_wait is not None else _number(retry_after)
    kwargs: dict[str, Any] = {
        "code": code,
        "request_id": None if request_id is None else str(request_id),
        "status": response.status,
        "details": details,
    }
    status = response.status
    if status in (401, 403):
        return DriftlockAuthenticationError(f"{message}. Check the API_KEY setting (DRIFTLOCK_API_KEY).", **kwargs)
    if status == 429:
        return DriftlockRateLimitError(message, retry_after=wait, **kwargs)
    if status in (400, 404, 409, 412, 413, 422):
        # 412: the stream is not calibrated yet (reset-anchor); send more events first, then retry.
        return DriftlockValidationError(message, **kwargs)
    return DriftlockError(message, **kwargs)


def _number(value: Any) -> float | None:
    try:
        return None if value is None or isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        return None
