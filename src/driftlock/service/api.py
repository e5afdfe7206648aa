"""The edge of the Driftlock API: requests read into the service's arguments, answers shaped, in one table.

:class:`DetectionService` is the API over the typed core (:class:`~driftlock.service.detection.Service`):
its methods take request bodies and queries, check them once (:mod:`.validation`), call the core, and
answer as the Driftlock API does (API-AND-CBAD.md §1), raising :class:`~driftlock.service.errors.ApiError`
for what the core refuses. ``driftlock serve`` makes its Starlette routes from :data:`OPERATIONS`; the
embedded transport matches requests against the same table. Each operation takes a decoded :class:`Call`;
:meth:`Api.call` adds its ``request_id`` to the answer.
"""

from __future__ import annotations

import functools
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from driftlock._version import __version__
from driftlock.engine.stream import MIN_BASELINE_SIZE
from driftlock.service import validation
from driftlock.service.budgets import Budgets
from driftlock.service.detection import IncidentListener, Service
from driftlock.service.errors import ApiError, ServiceError, store_unavailable
from driftlock.service.shapes import demo_answer, detect_answer
from driftlock.service.store import AnomalyFilter, RecordCache, Store
from driftlock.service.validation import int_param

__all__ = ["OPERATIONS", "Answer", "Api", "Call", "DemoLimiter", "DetectionService", "Operation"]

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


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _answering(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """The method with the core's domain errors raised as the API's answers."""

    @functools.wraps(method)
    def answering(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except ApiError:
            raise
        except ServiceError as exc:
            raise ApiError.of(exc) from exc
        except Exception as exc:
            unavailable = store_unavailable(exc)
            if unavailable is None:
                raise
            raise unavailable from exc

    return answering


class DetectionService:
    """The Driftlock API over a :class:`Service`: each method reads its request, calls the core and returns
    the answer's body. Thread-safe as the core is."""

    def __init__(
        self,
        store: Store | None = None,
        *,
        cache: RecordCache | None = None,
        clock: Callable[[], float] = time.time,
        core: Service | None = None,
        budgets: Budgets | None = None,
    ) -> None:
        self.core = core if core is not None else Service(store, cache=cache, clock=clock, budgets=budgets)
        self.store, self.cache, self.totals = self.core.store, self.core.cache, self.core.totals

    def add_listener(self, listener: IncidentListener) -> None:
        self.core.add_listener(listener)

    @_answering
    def detect(self, body: Any, *, request_id: str) -> dict[str, Any]:
        stream_id, events, override, confirmations = validation.detect_request(body)
        outcome = self.core.detect(stream_id, events, override, confirmations=confirmations)
        return {**detect_answer(outcome, MIN_BASELINE_SIZE), "request_id": request_id}

    @_answering
    def demo_detect(self, body: Any, *, request_id: str, remaining_calls: int, limit: int) -> dict[str, Any]:
        events, override = validation.events_request(body, validation.MAX_DEMO_EVENTS)
        outcome = self.core.demo_detect(events, override)
        return {
            **demo_answer(outcome, remaining_calls, limit, validation.MAX_DEMO_EVENTS),
            "request_id": request_id,
        }

    @_answering
    def stream_info(self, stream_id: str) -> dict[str, Any] | None:
        return self.core.stream_info(stream_id)

    @_answering
    def stream(self, stream_id: str) -> dict[str, Any]:
        info = self.core.stream_info(stream_id)
        if info is None:
            raise ApiError(404, f"stream {stream_id} not found")
        return info

    @_answering
    def list_streams(self, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        return self.core.list_streams(limit, offset)

    @_answering
    def recent_events(self, stream_id: str, limit: int) -> dict[str, Any]:
        return {"stream_id": stream_id, "events": self.core.recent_events(stream_id, limit)}

    @_answering
    def stream_timeline(self, stream_id: str, since_seconds: int = 3600) -> dict[str, Any]:
        return self.core.stream_timeline(stream_id, since_seconds)

    @_answering
    def mute_stream(self, stream_id: str, seconds: int) -> dict[str, Any]:
        return self.core.mute_stream(stream_id, seconds)

    @_answering
    def list_anomalies(self, query: Mapping[str, str], *, request_id: str) -> dict[str, Any]:
        limit = int_param(query, "limit", 50, 1, 100)
        offset = int_param(query, "offset", 0, 0, 10**100)  # the contract sets no maximum
        stream_id, status, since, until = validation.anomaly_filter_request(query)
        where = AnomalyFilter(stream_id=stream_id, status=status, since=since, until=until)
        return {**self.core.list_anomalies(where, limit, offset), "request_id": request_id}

    @_answering
    def get_anomaly(self, anomaly_id: str, *, request_id: str) -> dict[str, Any]:
        return {**self.core.get_anomaly(anomaly_id), "request_id": request_id}

    @_answering
    def feedback(self, anomaly_id: str, body: Any, *, request_id: str) -> dict[str, Any]:
        feedback_type, reason = validation.feedback_request(body)
        tuned = self.core.feedback(anomaly_id, feedback_type, reason)
        answer = {"success": True, "message": "Feedback recorded", "request_id": request_id}
        if tuned is not None:
            answer["tuned"] = tuned
        return answer

    @_answering
    def list_incidents(
        self, stream_id: str | None = None, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> dict[str, Any]:
        return self.core.list_incidents(stream_id, status, limit, offset)

    @_answering
    def get_incident(self, incident_id: str) -> dict[str, Any]:
        return self.core.get_incident(incident_id)

    @_answering
    def incident_feedback(self, incident_id: str, body: Any) -> dict[str, Any]:
        return self.core.incident_feedback(incident_id, *validation.feedback_request(body))

    @_answering
    def resolve_incident(self, incident_id: str) -> dict[str, Any]:
        return self.core.resolve_incident(incident_id)

    @_answering
    def get_profile(self, stream_id: str) -> dict[str, Any]:
        return self.core.get_profile(stream_id)

    @_answering
    def update_profile(self, stream_id: str, body: Any) -> dict[str, Any]:
        return self.core.update_profile(stream_id, validation.profile_request(body))

    @_answering
    def get_tuning(self, stream_id: str) -> dict[str, Any]:
        return self.core.get_tuning(stream_id)

    @_answering
    def list_profiles(self) -> dict[str, Any]:
        return self.core.list_profiles()

    @_answering
    def anchor_settings(self, stream_id: str) -> dict[str, Any]:
        return self.core.anchor_settings(stream_id)

    @_answering
    def anchor_details(self, stream_id: str) -> dict[str, Any]:
        return self.core.anchor_details(stream_id)

    @_answering
    def reset_anchor(self, stream_id: str, body: Any) -> dict[str, Any]:
        events, force = validation.anchor_request(body)
        return self.core.reset_anchor(stream_id, events, force=force)

    @_answering
    def deactivate_anchor(self, stream_id: str) -> dict[str, Any]:
        return self.core.deactivate_anchor(stream_id)

    @_answering
    def export_anomalies(self, body: Any, anomaly_id: str | None = None) -> dict[str, Any]:
        return self.core.export_anomalies(*validation.export_request(body, anomaly_id))

    @_answering
    def get_export(self, job_id: str) -> dict[str, Any]:
        return self.core.get_export(job_id)

    def health(self, *, request_id: str) -> dict[str, Any]:
        return {
            "success": True,
            "ok": True,
            "request_id": request_id,
            "library_status": "healthy",
            "version": __version__,
            "available_algos": ["zstd", "zlab", "gzip"],
            "openzl_available": False,
            "database": "connected",
        }

    def readiness(self, *, request_id: str) -> tuple[bool, dict[str, Any]]:
        try:
            self.core.ping()
        except Exception as exc:
            return False, {
                "ready": False,
                "database": "disconnected",
                "error": f"{type(exc).__name__}: {exc}",
                "request_id": request_id,
            }
        return True, {
            "ready": True,
            "database": "connected",
            "checks": {"database": "ok", "cbad_library": "ok"},
            "request_id": request_id,
        }


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


def _readiness(api: Api, call: Call) -> Answer:
    ready, body = api.service.readiness(request_id=call.request_id)
    return Answer(200 if ready else 503, body)


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
        """The operation's answer, with the call's ``request_id`` (the core's refusals raised as ApiError)."""
        try:
            result = op.handler(self, call)
        except ApiError:
            raise
        except ServiceError as exc:
            raise ApiError.of(exc) from exc
        except Exception as exc:  # the store cannot answer now: 503 with Retry-After, never a 500
            unavailable = store_unavailable(exc)
            if unavailable is None:
                raise
            raise unavailable from exc
        answer = result if isinstance(result, Answer) else Answer(200, result)
        if isinstance(answer.body, dict) and "request_id" not in answer.body:
            answer = Answer(answer.status, {**answer.body, "request_id": call.request_id})
        return answer


def _path(name: str) -> Callable[[Call], str]:
    return lambda call: call.params[name]


_stream, _anomaly, _incident = _path("stream_id"), _path("anomaly_id"), _path("incident_id")


OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", "/healthz", lambda a, c: a.service.health(request_id=c.request_id), auth=False),
    Operation("GET", "/readyz", _readiness, auth=False),
    Operation("POST", "/v1/demo/detect", _demo, auth=False, json_body=True),
    Operation("POST", "/v1/detect", lambda a, c: a.service.detect(c.body, request_id=c.request_id), json_body=True),
    Operation("GET", "/v1/anomalies", lambda a, c: a.service.list_anomalies(c.query, request_id=c.request_id)),
    Operation(
        "POST", "/v1/anomalies/export", lambda a, c: Answer(202, a.service.export_anomalies(c.body)), json_body=True
    ),
    Operation(
        "POST",
        "/v1/anomalies/{anomaly_id}/export",
        lambda a, c: Answer(202, a.service.export_anomalies(c.body, _anomaly(c))),
        json_body=True,
    ),
    Operation(
        "GET", "/v1/anomalies/{anomaly_id}", lambda a, c: a.service.get_anomaly(_anomaly(c), request_id=c.request_id)
    ),
    Operation(
        "POST",
        "/v1/anomalies/{anomaly_id}/feedback",
        lambda a, c: a.service.feedback(_anomaly(c), c.body, request_id=c.request_id),
        json_body=True,
    ),
    Operation(
        "GET",
        "/v1/incidents",
        lambda a, c: a.service.list_incidents(
            c.query.get("stream_id") or None,
            c.query.get("status") or None,
            int_param(c.query, "limit", 50, 1, 100),
            int_param(c.query, "offset", 0, 0, 10**9),
        ),
    ),
    Operation("GET", "/v1/incidents/{incident_id}", lambda a, c: a.service.get_incident(_incident(c))),
    Operation(
        "POST",
        "/v1/incidents/{incident_id}/feedback",
        lambda a, c: a.service.incident_feedback(_incident(c), c.body),
        json_body=True,
    ),
    Operation("POST", "/v1/incidents/{incident_id}/resolve", lambda a, c: a.service.resolve_incident(_incident(c))),
    Operation(
        "GET",
        "/v1/streams",
        lambda a, c: a.service.list_streams(
            int_param(c.query, "limit", 100, 1, 1000), int_param(c.query, "offset", 0, 0, 10**9)
        ),
    ),
    Operation(
        "GET",
        "/v1/streams/{stream_id:path}/events",
        lambda a, c: a.service.recent_events(_stream(c), int_param(c.query, "limit", 100, 1, 2000)),
    ),
    Operation(
        "GET",
        "/v1/streams/{stream_id:path}/timeline",
        lambda a, c: a.service.stream_timeline(_stream(c), int_param(c.query, "since_seconds", 3600, 60, 86_400)),
    ),
    Operation(
        "POST",
        "/v1/streams/{stream_id:path}/mute",
        lambda a, c: a.service.mute_stream(_stream(c), validation.mute_request(c.body)),
        json_body=True,
    ),
    Operation("GET", "/v1/streams/{stream_id:path}/profile", lambda a, c: a.service.get_profile(_stream(c))),
    Operation(
        "PATCH",
        "/v1/streams/{stream_id:path}/profile",
        lambda a, c: a.service.update_profile(_stream(c), c.body),
        json_body=True,
    ),
    Operation("GET", "/v1/streams/{stream_id:path}/tuning", lambda a, c: a.service.get_tuning(_stream(c))),
    Operation("GET", "/v1/streams/{stream_id:path}/anchor/details", lambda a, c: a.service.anchor_details(_stream(c))),
    Operation("GET", "/v1/streams/{stream_id:path}/anchor", lambda a, c: a.service.anchor_settings(_stream(c))),
    Operation("DELETE", "/v1/streams/{stream_id:path}/anchor", lambda a, c: a.service.deactivate_anchor(_stream(c))),
    Operation(
        "POST",
        "/v1/streams/{stream_id:path}/reset-anchor",
        lambda a, c: a.service.reset_anchor(_stream(c), c.body),
        json_body=True,
    ),
    Operation("GET", "/v1/streams/{stream_id:path}", lambda a, c: a.service.stream(_stream(c))),
    # no key needed, as in the reference: the profiles are the same for everyone
    Operation("GET", "/v1/profiles", lambda a, c: a.service.list_profiles(), auth=False),
    Operation("GET", "/v1/exports/{job_id}", lambda a, c: a.service.get_export(c.params["job_id"])),
)
