"""The Driftlock API's operations, in one table.

``driftlock serve`` makes its Starlette routes from :data:`OPERATIONS`; the embedded transport
matches requests against the same table. Each operation takes a decoded :class:`Call` and returns
the JSON body (or raises :class:`~driftlock.service.errors.ApiError`).
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from driftlock.service.detection import DetectionService
from driftlock.service.errors import ApiError
from driftlock.service.validation import int_param

__all__ = ["OPERATIONS", "Answer", "Api", "Call", "DemoLimiter", "Operation"]

DEMO_LIMIT_PER_MINUTE = 10


@dataclass(frozen=True)
class Call:
    """One request, decoded: path parameters, query, JSON body, who asked."""

    params: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    request_id: str = ""
    client: str = "local"


@dataclass(frozen=True)
class Answer:
    """A body with a status other than 200 (an operation returns a plain body for 200)."""

    status: int
    body: Any


def _readiness(api: Api, call: Call) -> Answer:
    ready, body = api.service.readiness(request_id=call.request_id)
    return Answer(200 if ready else 503, body)


class DemoLimiter:
    """A sliding 60-second window of calls per client address, over a bounded set of clients."""

    def __init__(self, limit: int = DEMO_LIMIT_PER_MINUTE, window: float = 60.0, max_clients: int = 10_000) -> None:
        self.limit, self.window, self.max_clients = limit, window, max_clients
        self._calls: dict[str, deque[float]] = {}

    def take(self, client: str, now: float | None = None) -> tuple[bool, int, int]:
        """Returns (allowed, remaining calls, seconds until the next call is allowed)."""
        now = time.monotonic() if now is None else now
        calls = self._calls.get(client)
        if calls is None:
            if len(self._calls) >= self.max_clients:
                self._calls.pop(next(iter(self._calls)))
            calls = self._calls[client] = deque()
        while calls and calls[0] <= now - self.window:
            calls.popleft()
        if len(calls) >= self.limit:
            return False, 0, max(1, int(calls[0] + self.window - now + 0.999))
        calls.append(now)
        return True, self.limit - len(calls), 0


Handler = Callable[["Api", Call], Any]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # a Starlette path template: {name} is one segment, {name:path} any
    handler: Handler
    auth: bool = True
    json_body: bool = False

    @property
    def pattern(self) -> re.Pattern[str]:
        regex = re.sub(r"\{(\w+):path\}", r"(?P<\1>.+)", self.path)
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", regex)
        return re.compile(f"^{regex}$")


def _demo(api: Api, call: Call) -> Any:
    allowed, remaining, wait = api.limiter.take(call.client)
    if not allowed:
        raise ApiError(429, f"demo rate limit exceeded: {api.limiter.limit} requests per minute", retry_after=wait)
    return api.service.demo_detect(
        call.body, request_id=call.request_id, remaining_calls=remaining, limit=api.limiter.limit
    )


def _seconds(body: Any) -> int:
    if not isinstance(body, Mapping) or "seconds" not in body:
        raise ApiError(400, 'body must be {"seconds": <how long to mute, in seconds>}')
    value = body["seconds"]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"seconds must be an integer, got {value!r}")
    return value


class Api:
    """The service behind the operations, with the HTTP-level state they share (the demo limit)."""

    def __init__(self, service: DetectionService, *, limiter: DemoLimiter | None = None) -> None:
        self.service = service
        self.limiter = limiter or DemoLimiter()
        self._compiled = [(op, op.pattern) for op in OPERATIONS]  # the table below

    def match(self, method: str, path: str) -> tuple[Operation, dict[str, str]]:
        """The operation for a request (for transports without a router of their own)."""
        path = path.removeprefix("/api") if path.startswith("/api/") else path
        allowed = []
        for op, pattern in self._compiled:
            found = pattern.match(path)
            if found:
                if op.method == method:
                    return op, found.groupdict()
                allowed.append(op.method)
        if allowed:
            raise ApiError(405, f"{method} is not allowed on {path}; allowed: {', '.join(sorted(set(allowed)))}")
        raise ApiError(404, f"no route for {method} {path}")

    def call(self, op: Operation, call: Call) -> Answer:
        result = op.handler(self, call)
        return result if isinstance(result, Answer) else Answer(200, result)


OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", "/healthz", lambda a, c: a.service.health(request_id=c.request_id), auth=False),
    Operation("GET", "/readyz", _readiness, auth=False),
    Operation("POST", "/v1/demo/detect", _demo, auth=False, json_body=True),
    Operation("POST", "/v1/detect", lambda a, c: a.service.detect(c.body, request_id=c.request_id), json_body=True),
    Operation("GET", "/v1/anomalies", lambda a, c: a.service.list_anomalies(c.query, request_id=c.request_id)),
    Operation("POST", "/v1/anomalies/export", lambda a, c: _export(a, c, None), json_body=True),
    Operation(
        "POST", "/v1/anomalies/{anomaly_id}/export", lambda a, c: _export(a, c, c.params["anomaly_id"]), json_body=True
    ),
    Operation(
        "GET",
        "/v1/anomalies/{anomaly_id}",
        lambda a, c: a.service.get_anomaly(c.params["anomaly_id"], request_id=c.request_id),
    ),
    Operation(
        "POST",
        "/v1/anomalies/{anomaly_id}/feedback",
        lambda a, c: a.service.feedback(c.params["anomaly_id"], c.body, request_id=c.request_id),
        json_body=True,
    ),
    Operation(
        "GET",
        "/v1/incidents",
        lambda a, c: {
            **a.service.list_incidents(
                c.query.get("stream_id") or None,
                c.query.get("status") or None,
                int_param(c.query, "limit", 50, 1, 100),
                int_param(c.query, "offset", 0, 0, 10**9),
            ),
            "request_id": c.request_id,
        },
    ),
    Operation(
        "GET",
        "/v1/incidents/{incident_id}",
        lambda a, c: {**a.service.get_incident(c.params["incident_id"]), "request_id": c.request_id},
    ),
    Operation(
        "POST",
        "/v1/incidents/{incident_id}/feedback",
        lambda a, c: {**a.service.incident_feedback(c.params["incident_id"], c.body), "request_id": c.request_id},
        json_body=True,
    ),
    Operation(
        "POST",
        "/v1/incidents/{incident_id}/resolve",
        lambda a, c: {**a.service.resolve_incident(c.params["incident_id"]), "request_id": c.request_id},
    ),
    Operation(
        "GET",
        "/v1/streams",
        lambda a, c: {
            **a.service.list_streams(
                int_param(c.query, "limit", 100, 1, 1000), int_param(c.query, "offset", 0, 0, 10**9)
            ),
            "request_id": c.request_id,
        },
    ),
    Operation(
        "GET",
        "/v1/streams/{stream_id:path}/events",
        lambda a, c: {
            "stream_id": c.params["stream_id"],
            "events": a.service.recent_events(c.params["stream_id"], int_param(c.query, "limit", 100, 1, 2000)),
            "request_id": c.request_id,
        },
    ),
    Operation(
        "GET",
        "/v1/streams/{stream_id:path}/timeline",
        lambda a, c: {
            **a.service.stream_timeline(c.params["stream_id"], int_param(c.query, "since_seconds", 3600, 60, 86_400)),
            "request_id": c.request_id,
        },
    ),
    Operation(
        "POST",
        "/v1/streams/{stream_id:path}/mute",
        lambda a, c: {**a.service.mute_stream(c.params["stream_id"], _seconds(c.body)), "request_id": c.request_id},
        json_body=True,
    ),
    Operation(
        "GET",
        "/v1/streams/{stream_id:path}/profile",
        lambda a, c: {**a.service.get_profile(c.params["stream_id"]), "request_id": c.request_id},
    ),
    Operation(
        "PATCH",
        "/v1/streams/{stream_id:path}/profile",
        lambda a, c: {**a.service.update_profile(c.params["stream_id"], c.body), "request_id": c.request_id},
        json_body=True,
    ),
    Operation(
        "GET",
        "/v1/streams/{stream_id:path}/tuning",
        lambda a, c: {**a.service.get_tuning(c.params["stream_id"]), "request_id": c.request_id},
    ),
    Operation(
        "GET",
        "/v1/streams/{stream_id:path}/anchor/details",
        lambda a, c: {**a.service.anchor_details(c.params["stream_id"]), "request_id": c.request_id},
    ),
    Operation(
        "GET",
        "/v1/streams/{stream_id:path}/anchor",
        lambda a, c: {**a.service.anchor_settings(c.params["stream_id"]), "request_id": c.request_id},
    ),
    Operation(
        "DELETE",
        "/v1/streams/{stream_id:path}/anchor",
        lambda a, c: {**a.service.deactivate_anchor(c.params["stream_id"]), "request_id": c.request_id},
    ),
    Operation(
        "POST",
        "/v1/streams/{stream_id:path}/reset-anchor",
        lambda a, c: {**a.service.reset_anchor(c.params["stream_id"], c.body), "request_id": c.request_id},
        json_body=True,
    ),
    Operation("GET", "/v1/streams/{stream_id:path}", lambda a, c: {**_stream(a, c), "request_id": c.request_id}),
    Operation(  # no key needed, as in the reference: the profiles are the same for everyone
        "GET", "/v1/profiles", lambda a, c: {**a.service.list_profiles(), "request_id": c.request_id}, auth=False
    ),
    Operation(
        "GET",
        "/v1/exports/{job_id}",
        lambda a, c: {**a.service.get_export(c.params["job_id"]), "request_id": c.request_id},
    ),
)


def _export(api: Api, call: Call, anomaly_id: str | None) -> Answer:
    """202 with the job (``{format, anomaly_ids}``, or ``{format}`` for one anomaly in the path)."""
    body = call.body if call.body is not None else {}
    if not isinstance(body, Mapping):
        raise ApiError(400, 'body must be {"format": "json|markdown|html|pdf", "anomaly_ids": [...]}')
    if anomaly_id is not None:
        ids: Any = [anomaly_id]
    elif "anomaly_ids" not in body:
        raise ApiError(400, "anomaly_ids required: the ids of the anomalies to export")
    else:
        ids = body["anomaly_ids"]
    job = api.service.export_anomalies(ids, body.get("format"))
    return Answer(202, {**job, "request_id": call.request_id})


def _stream(api: Api, call: Call) -> dict[str, Any]:
    info = api.service.stream_info(call.params["stream_id"])
    if info is None:
        raise ApiError(404, f"stream {call.params['stream_id']} not found")
    return info
