"""Span → Driftlock event: the one mapping, used by the exporter and by the server's OTLP receiver.

CBAD compresses each event as a whole, so the body carries only what should be judged. Values that
differ on every event by nature (trace and span ids, exact times and durations, ids inside paths,
values of secret-looking query keys) stay out or are normalized; the caller keeps the span beside
its event, so an anomaly's ``index`` leads back to the trace.

=========================  ==========================================================================
span                        event body
=========================  ==========================================================================
HTTP server (WSGI, ASGI,    ``kind: "http"``, ``method``, ``route`` (URL pattern, else the normalized
old and new semconv)        path), ``status``, ``duration`` (bucket), ``error`` (type), ``query`` (keys
                            with scrubbed values), ``user`` (anonymous/authenticated/staff),
                            ``user_id`` (opt-in), ``context`` (``request.driftlock_context``)
Celery task (CONSUMER)      ``kind: "task"``, ``task``, ``state``, ``retries``, ``duration``, ``error``
other kinds (opt-in)        ``kind`` (span kind), ``name`` (normalized), ``status``, ``duration``, ``error``
=========================  ==========================================================================
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from driftlock.registry import REGISTRY

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

__all__ = [
    "SpanRecord",
    "duration_bucket",
    "normalize_path",
    "path_excluded",
    "record_from_sdk_span",
    "scrub_query",
    "span_to_event",
    "stream_for",
]

STREAM_ATTRIBUTE = "driftlock.stream_id"
CONTEXT_ATTRIBUTE = "driftlock.context"
USER_ATTRIBUTE = "driftlock.user"
USER_ID_ATTRIBUTE = "enduser.id"
REDACTED = "[REDACTED]"
SENSITIVE_KEYS = (
    "pass", "pwd", "token", "secret", "key", "auth", "session", "code", "sig", "jwt",
    "credential", "otp", "pin", "cookie", "csrf", "nonce",
)  # fmt: skip
_BUCKETS_MS = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
_QUERY_VALUE_MAX = 100


@dataclass(frozen=True)
class SpanRecord:
    """What the mapping needs from a span; filled from an SDK ``ReadableSpan`` or an OTLP span."""

    name: str
    kind: str  # server | client | internal | producer | consumer
    start_ns: int
    end_ns: int
    status: str = "unset"  # unset | ok | error
    attributes: Mapping[str, Any] = field(default_factory=dict)
    resource: Mapping[str, Any] = field(default_factory=dict)
    exception_types: tuple[str, ...] = ()
    trace_id: str = ""
    span_id: str = ""
    scope: str = ""

    @property
    def service(self) -> str:
        return str(self.resource.get("service.name") or "unknown_service")

    @property
    def is_task(self) -> bool:
        return self.kind == "consumer" and "celery.task_name" in self.attributes

    @property
    def path(self) -> str | None:
        """The request path, from whichever attribute this instrumentation and semconv set."""
        a = self.attributes
        for key in ("url.path", "http.target"):
            value = a.get(key)
            if value:
                return str(value).split("?", 1)[0]
        url = a.get("url.full") or a.get("http.url")
        if url:
            return urlsplit(str(url)).path or "/"
        return None

    @property
    def query(self) -> str:
        a = self.attributes
        if a.get("url.query"):
            return str(a["url.query"])
        for key in ("http.target", "url.full", "http.url"):
            value = a.get(key)
            if value and "?" in str(value):
                return str(value).split("?", 1)[1]
        return ""


SDK_SPAN_KINDS = {0: "internal", 1: "server", 2: "client", 3: "producer", 4: "consumer"}
_STATUS = {0: "unset", 1: "ok", 2: "error"}


class _ResourceCache:
    """The last resource seen and a copy of its attributes (one pair, replaced whole)."""

    def __init__(self) -> None:
        self.latest: tuple[object, Mapping[str, Any]] = (None, {})


def _resource_attributes(resource: Any) -> Mapping[str, Any]:
    """A process has one resource, shared by all its spans: copy its attributes once, not per span."""
    if resource is None:
        return {}
    cache = REGISTRY.slot("events.resource", _ResourceCache)
    cached, attributes = cache.latest
    if cached is not resource:
        attributes = dict(resource.attributes)
        cache.latest = (resource, attributes)
    return attributes


def _plain(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """A plain dict of span attributes. The SDK hands out a ``MappingProxyType`` over its
    ``BoundedAttributes``, whose ``copy()`` copies the dict inside: 8x faster than iterating."""
    copy = getattr(attributes, "copy", None)
    copied = copy() if copy is not None else None
    return copied if isinstance(copied, dict) else dict(attributes)


def record_from_sdk_span(span: ReadableSpan) -> SpanRecord:
    """Fill a :class:`SpanRecord` from an OpenTelemetry SDK span.

    The attributes are copied into a plain dict once: the mapping looks each key up several times,
    and the SDK's attribute mapping answers a missing key by raising, which costs more than the copy.
    """
    attributes = span.attributes
    context = span.get_span_context()
    events = span.events
    exceptions = (
        tuple(
            str(e.attributes.get("exception.type"))
            for e in events
            if e.name == "exception" and e.attributes and e.attributes.get("exception.type")
        )
        if events
        else ()
    )
    scope = span.instrumentation_scope
    return SpanRecord(
        name=span.name,
        kind=SDK_SPAN_KINDS.get(span.kind.value, "internal"),
        start_ns=span.start_time or 0,
        end_ns=span.end_time or span.start_time or 0,
        status=_STATUS.get(span.status.status_code.value, "unset"),
        attributes=_plain(attributes) if attributes else {},
        resource=_resource_attributes(span.resource),
        exception_types=exceptions,
        trace_id=format(context.trace_id, "032x") if context else "",
        span_id=format(context.span_id, "016x") if context else "",
        scope=scope.name if scope else "",
    )


def duration_bucket(nanoseconds: int) -> str:
    """Exact durations differ on every request; their order of magnitude is what matters."""
    ms = max(0, nanoseconds) / 1e6
    for bound in _BUCKETS_MS:
        if ms < bound:
            return f"<{bound}ms" if bound < 1000 else f"<{bound // 1000 if bound % 1000 == 0 else bound / 1000}s"
    return ">=10s"


_SEGMENT_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^\d+$"), "{int}"),
    (re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"), "{uuid}"),
    (re.compile(r"^(?=.*\d)[0-9a-fA-F]{12,}$"), "{hex}"),
    (re.compile(r"^(?=.*\d)(?=.*[A-Za-z])[A-Za-z0-9_-]{16,}$"), "{id}"),
)


def normalize_path(path: str) -> str:
    """Replace ids and numbers in path segments so ``/orders/123/`` and ``/orders/124/`` are one path."""
    segments = path.split("/")
    for i, segment in enumerate(segments):
        for pattern, token in _SEGMENT_RULES:
            if pattern.match(segment):
                segments[i] = token
                break
    return "/".join(segments)


def path_excluded(path: str | None, prefixes: Sequence[str]) -> bool:
    """Anchored prefix match: ``/health/`` excludes ``/health`` and ``/health/x``, not ``/api/health/``."""
    if not path or not prefixes:
        return False
    for prefix in prefixes:
        bare = prefix.rstrip("/")
        if path in (prefix, bare) or path.startswith(bare + "/"):
            return True
    return False


def scrub_query(query: str) -> dict[str, str]:
    """Query keys with their values, those of secret-looking keys replaced, long values cut."""
    if not query:
        return {}  # most requests have none, and parse_qsl costs several microseconds even then
    out: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        lowered = key.lower()
        if any(word in lowered for word in SENSITIVE_KEYS):
            value = REDACTED
        elif len(value) > _QUERY_VALUE_MAX:
            value = value[:_QUERY_VALUE_MAX] + "…"
        out[key[:_QUERY_VALUE_MAX]] = value
    return out


def _error(record: SpanRecord) -> str | None:
    value = record.attributes.get("error.type")
    if value:
        return str(value)
    if record.exception_types:
        return record.exception_types[-1]
    return "error" if record.status == "error" else None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _http_body(record: SpanRecord, a: Mapping[str, Any]) -> dict[str, Any]:
    method = a.get("http.request.method") or a.get("http.method") or "GET"
    if method == "_OTHER":
        method = a.get("http.request.method_original") or method
    status = _int(a.get("http.response.status_code", a.get("http.status_code")))
    route = a.get("http.route")
    body: dict[str, Any] = {
        "kind": "http",
        "method": str(method),
        "route": str(route) if route else normalize_path(record.path or "/"),
        "status": status,
        "duration": duration_bucket(record.end_ns - record.start_ns),
    }
    error = _error(record)
    if error:
        body["error"] = error
    query = scrub_query(record.query)
    if query:
        body["query"] = query
    user = a.get(USER_ATTRIBUTE)
    if user:
        body["user"] = str(user)
    if a.get(USER_ID_ATTRIBUTE) is not None:
        body["user_id"] = str(a[USER_ID_ATTRIBUTE])
    context = a.get(CONTEXT_ATTRIBUTE)
    if context:
        try:
            body["context"] = json.loads(context) if isinstance(context, str) else context
        except ValueError:
            body["context"] = str(context)
    return body


def _task_body(record: SpanRecord, a: Mapping[str, Any]) -> dict[str, Any]:
    state = a.get("celery.state") or ("FAILURE" if record.status == "error" else "SUCCESS")
    if a.get("celery.retry.reason"):
        state = "RETRY"
    body: dict[str, Any] = {
        "kind": "task",
        "task": str(a.get("celery.task_name")),
        "state": str(state),
        "retries": _int(a.get("celery.retries")) or 0,
        "duration": duration_bucket(record.end_ns - record.start_ns),
    }
    error = _error(record)
    if error and state != "SUCCESS":
        body["error"] = error
    return body


def _generic_body(record: SpanRecord) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": record.kind,
        "name": normalize_path(record.name),
        "status": record.status,
        "duration": duration_bucket(record.end_ns - record.start_ns),
    }
    error = _error(record)
    if error:
        body["error"] = error
    return body


def _timestamp(ns: int) -> str:
    seconds, rest = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{rest // 1_000_000:03d}Z"


def span_to_event(
    record: SpanRecord,
    *,
    span_kinds: Iterable[str] = ("server", "consumer"),
    exclude_paths: Sequence[str] = (),
) -> dict[str, Any] | None:
    """The Driftlock event for one span, or None when the span is not exported."""
    if record.kind not in span_kinds:
        return None
    a = record.attributes
    is_http = record.kind == "server" and bool(a.get("http.request.method") or a.get("http.method"))
    if is_http and path_excluded(record.path, exclude_paths):
        return None
    if is_http:
        body = _http_body(record, a)
    elif record.is_task:
        body = _task_body(record, a)
    else:
        body = _generic_body(record)
    return {
        "timestamp": _timestamp(record.start_ns),
        "type": "trace",
        "body": body,
        "attributes": {"service": record.service},
    }


def stream_for(record: SpanRecord, *, stream_id: str | None = None, celery_stream_id: str | None = None) -> str:
    """Span attribute ``driftlock.stream_id``, else the configured stream, else ``service.name``;
    Celery task events go to ``celery_stream_id`` or the stream + ``.celery``."""
    explicit = record.attributes.get(STREAM_ATTRIBUTE) or record.resource.get(STREAM_ATTRIBUTE)
    base = str(explicit) if explicit else (stream_id or record.service)
    if record.is_task and not explicit:
        return celery_stream_id or base + ".celery"
    return base


def user_class(user: Any) -> str:
    """The class of a request's user an event carries (never who): ``anonymous``, ``authenticated`` or ``staff``.
    Django's users and Starlette's (``request.user`` of AuthenticationMiddleware) both answer these attributes."""
    if not getattr(user, "is_authenticated", False):
        return "anonymous"
    return "staff" if getattr(user, "is_staff", False) else "authenticated"
