"""The span → event mapping as a table: every row is a span shape seen in the wild."""

from __future__ import annotations

from typing import Any

import pytest

from driftlock.events import SpanRecord, normalize_path, path_excluded, scrub_query, span_to_event, stream_for

MS = 1_000_000
RES = {"service.name": "shop"}


def span(
    attributes: dict[str, Any],
    *,
    kind: str = "server",
    ms: float = 12,
    status: str = "unset",
    exceptions: tuple[str, ...] = (),
    resource: dict[str, Any] | None = None,
    name: str = "GET",
) -> SpanRecord:
    start = 1_764_000_000_000_000_000
    return SpanRecord(
        name=name,
        kind=kind,
        start_ns=start,
        end_ns=start + int(ms * MS),
        status=status,
        attributes=attributes,
        resource=resource or RES,
        exception_types=exceptions,
        trace_id="ab" * 16,
        span_id="cd" * 8,
    )


CASES: list[tuple[str, SpanRecord, dict[str, Any] | None]] = [
    (
        "django wsgi, old semconv (test client: full URL with query)",
        span(
            {
                "http.method": "GET",
                "http.url": "http://testserver/items/12/?q=lamp&token=abc",
                "http.route": "items/<int:id>/",
                "http.status_code": 200,
                "driftlock.user": "authenticated",
            }
        ),
        {
            "kind": "http",
            "method": "GET",
            "route": "items/<int:id>/",
            "status": 200,
            "duration": "<25ms",
            "query": {"q": "lamp", "token": "[REDACTED]"},
            "user": "authenticated",
        },
    ),
    (
        "django wsgi, new semconv without any path attribute",
        span(
            {
                "http.request.method": "POST",
                "http.route": "cart/add/",
                "http.response.status_code": 302,
                "driftlock.user": "anonymous",
            },
            ms=70,
        ),
        {
            "kind": "http",
            "method": "POST",
            "route": "cart/add/",
            "status": 302,
            "duration": "<100ms",
            "user": "anonymous",
        },
    ),
    (
        "django asgi, old semconv",
        span(
            {
                "http.method": "GET",
                "http.target": "/api/orders/77/",
                "http.route": "api/orders/<int:pk>/",
                "http.status_code": 200,
                "driftlock.context": '{"user_tier": "gold"}',
            },
            ms=300,
        ),
        {
            "kind": "http",
            "method": "GET",
            "route": "api/orders/<int:pk>/",
            "status": 200,
            "duration": "<500ms",
            "context": {"user_tier": "gold"},
        },
    ),
    (
        "django asgi, new semconv with url.path and url.query",
        span(
            {
                "http.request.method": "GET",
                "url.path": "/search/",
                "url.query": "q=%27+OR+1%3D1--&password=x",
                "http.route": "search/",
                "http.response.status_code": 200,
            }
        ),
        {
            "kind": "http",
            "method": "GET",
            "route": "search/",
            "status": 200,
            "duration": "<25ms",
            "query": {"q": "' OR 1=1--", "password": "[REDACTED]"},
        },
    ),
    (
        "404 without a route: the normalized path",
        span(
            {
                "http.method": "GET",
                "http.target": "/orders/123/3f2b1c9e-8d7a-4e6f-9b0a-1c2d3e4f5a6b/x",
                "http.status_code": 404,
            }
        ),
        {"kind": "http", "method": "GET", "route": "/orders/{int}/{uuid}/x", "status": 404, "duration": "<25ms"},
    ),
    (
        "5xx with exception, old semconv",
        span(
            {"http.method": "GET", "http.route": "boom/", "http.status_code": 500},
            status="error",
            exceptions=("ZeroDivisionError",),
            ms=3000,
        ),
        {
            "kind": "http",
            "method": "GET",
            "route": "boom/",
            "status": 500,
            "duration": "<5s",
            "error": "ZeroDivisionError",
        },
    ),
    (
        "5xx, new semconv error.type",
        span(
            {
                "http.request.method": "GET",
                "http.route": "boom/",
                "http.response.status_code": 503,
                "error.type": "503",
            },
            status="error",
        ),
        {"kind": "http", "method": "GET", "route": "boom/", "status": 503, "duration": "<25ms", "error": "503"},
    ),
    (
        "unknown method",
        span(
            {
                "http.request.method": "_OTHER",
                "http.request.method_original": "PROPFIND",
                "http.response.status_code": 405,
                "url.path": "/",
            }
        ),
        {"kind": "http", "method": "PROPFIND", "route": "/", "status": 405, "duration": "<25ms"},
    ),
    (
        "celery success",
        span(
            {
                "celery.action": "run",
                "celery.task_name": "shop.tasks.send_mail",
                "celery.state": "SUCCESS",
                "messaging.message.id": "id-1",
            },
            kind="consumer",
            ms=800,
            name="run/shop.tasks.send_mail",
        ),
        {"kind": "task", "task": "shop.tasks.send_mail", "state": "SUCCESS", "retries": 0, "duration": "<1s"},
    ),
    (
        "celery failure",
        span(
            {"celery.action": "run", "celery.task_name": "shop.tasks.charge", "celery.state": "FAILURE"},
            kind="consumer",
            status="error",
            exceptions=("ValueError",),
        ),
        {
            "kind": "task",
            "task": "shop.tasks.charge",
            "state": "FAILURE",
            "retries": 0,
            "duration": "<25ms",
            "error": "ValueError",
        },
    ),
    (
        "celery retry",
        span(
            {
                "celery.action": "run",
                "celery.task_name": "shop.tasks.charge",
                "celery.retry.reason": "timeout",
                "celery.retries": 2,
            },
            kind="consumer",
            ms=20_000,
        ),
        {"kind": "task", "task": "shop.tasks.charge", "state": "RETRY", "retries": 2, "duration": ">=10s"},
    ),
    ("internal span: skipped by default", span({}, kind="internal", name="render"), None),
    (
        "celery producer span: skipped by default",
        span({"celery.action": "apply_async", "celery.task_name": "t"}, kind="producer"),
        None,
    ),
]


@pytest.mark.parametrize(("case", "record", "body"), CASES, ids=[c[0] for c in CASES])
def test_mapping(case: str, record: SpanRecord, body: dict[str, Any] | None) -> None:
    event = span_to_event(record)
    if body is None:
        assert event is None
        return
    assert event is not None
    assert event["body"] == body
    assert event["type"] == "trace" and event["attributes"] == {"service": "shop"}
    assert event["timestamp"] == "2025-11-24T16:00:00.000Z"
    assert "ab" * 16 not in str(event) and "cd" * 8 not in str(event)  # ids stay client-side


def test_generic_spans_when_configured() -> None:
    event = span_to_event(span({}, kind="internal", name="load user 123", status="ok"), span_kinds=("internal",))
    assert event is not None and event["body"] == {
        "kind": "internal",
        "name": "load user 123",
        "status": "ok",
        "duration": "<25ms",
    }


def test_exclude_paths_are_anchored_prefixes() -> None:
    assert path_excluded("/health/", ["/health/"])
    assert path_excluded("/health/x", ["/health/"])
    assert path_excluded("/health", ["/health/"])
    assert not path_excluded("/api/health/", ["/health/"])
    assert not path_excluded("/healthz", ["/health"])
    excluded = span({"http.method": "GET", "http.target": "/admin/login/", "http.status_code": 200})
    assert span_to_event(excluded, exclude_paths=["/admin/"]) is None
    assert span_to_event(excluded, exclude_paths=["/health/"]) is not None


def test_streams() -> None:
    plain = span({"http.method": "GET"})
    assert stream_for(plain) == "shop"
    assert stream_for(plain, stream_id="django-app") == "django-app"
    tagged = span({"http.method": "GET", "driftlock.stream_id": "payments"})
    assert stream_for(tagged, stream_id="django-app") == "payments"
    task = span({"celery.task_name": "t"}, kind="consumer")
    assert stream_for(task, stream_id="django-app") == "django-app.celery"
    assert stream_for(task, stream_id="django-app", celery_stream_id="jobs") == "jobs"
    from_resource = span({"http.method": "GET"}, resource={"service.name": "s", "driftlock.stream_id": "r"})
    assert stream_for(from_resource) == "r"


def test_helpers() -> None:
    assert normalize_path("/u/42/orders/9f86d081884c7d65/") == "/u/{int}/orders/{hex}/"
    assert scrub_query("a=1&api_key=s&sessionid=x&long=" + "y" * 150)["long"].endswith("…")
    assert scrub_query("api_key=s&sessionid=x") == {"api_key": "[REDACTED]", "sessionid": "[REDACTED]"}
