"""The console's routes: server-rendered pages over the detection service, and the forms that act on it."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote, urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from driftlock.server.console import format as fmt
from driftlock.server.console.auth import (
    COOKIE,
    OPEN,
    Session,
    SessionSigner,
    SignInLimiter,
    cross_origin_message,
    loopback_host,
    same_origin,
)
from driftlock.server.console.integrations import WebhookConsole, integration_routes
from driftlock.server.metrics import Metrics
from driftlock.service.console_sessions import ConsoleSessionStore, SharedSecret
from driftlock.service.errors import ApiError, ServiceError
from driftlock.vocabulary import FEEDBACK_TYPES, INCIDENT_STATUSES

__all__ = ["ConsoleService", "console_routes"]

MUTE_CHOICES = ((15, "15 minutes"), (60, "1 hour"), (240, "4 hours"), (1440, "1 day"))
RANGES = {"hour": 3600, "day": 86400}
PAGE_SIZE = 50
MAX_FORM_BYTES = 16 * 1024
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class ConsoleService(Protocol):
    """What the console needs of the detection service (the typed core, ``driftlock.service.detection.Service``)."""

    def list_streams(self, limit: int = 100, offset: int = 0) -> dict[str, Any]: ...
    def stream_info(self, stream_id: str) -> dict[str, Any] | None: ...
    def stream_timeline(self, stream_id: str, since_seconds: int = 3600) -> dict[str, Any]: ...
    def list_incidents(
        self, stream_id: str | None = None, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> dict[str, Any]: ...
    def get_incident(self, incident_id: str) -> dict[str, Any]: ...
    def incident_feedback(self, incident_id: str, feedback_type: str, reason: str | None = None) -> dict[str, Any]: ...
    def resolve_incident(self, incident_id: str) -> dict[str, Any]: ...
    def mute_stream(self, stream_id: str, seconds: int) -> dict[str, Any]: ...


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _status_of(exc: BaseException) -> int | None:
    """The HTTP status of what the service refused (None for anything else: a bug, answered as one)."""
    if not isinstance(exc, ServiceError):
        return None
    status = ApiError.of(exc).status
    return status if 400 <= status < 500 else None


def _message_of(exc: BaseException) -> str:
    return exc.message if isinstance(exc, ServiceError) else str(exc)


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("driftlock.server.console", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        ago=fmt.ago,
        when=fmt.when,
        headline=fmt.headline,
        clause=fmt.clause,
        number=fmt.number,
        event_summary=fmt.event_summary,
        event_json=fmt.event_json,
        field_summary=fmt.field_summary,
    )
    env.filters["q"] = lambda value: quote(str(value), safe="")
    env.filters["path"] = lambda value: quote(str(value), safe="/")
    return env


async def _form(request: Request) -> dict[str, str]:
    """The fields of a URL-encoded form, read up to :data:`MAX_FORM_BYTES` (else 413); the console's forms are
    small, and sign-in is reachable without a session, so nothing reads an unbounded body."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    unsupported = _Refused(415, "The console accepts only its own forms (application/x-www-form-urlencoded).")
    if content_type not in ("application/x-www-form-urlencoded", ""):
        raise unsupported
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise _Refused(413, "That form is too large.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise _Refused(413, "That form is too large.")
    if body and not content_type:
        raise unsupported
    fields: dict[str, str] = {}
    for key, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=50):
        fields.setdefault(key, value)
    return fields


def _local_path(value: str | None, default: str = "/") -> str:
    """Only a path on this site (no scheme, no ``//host``): sign-in's ``next`` must not redirect elsewhere."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    return value


def _timeline_data(timeline: Mapping[str, Any], since: int, now: float) -> dict[str, Any]:
    """The plot's data: epoch seconds, aligned columns, incidents as bands (an open one ends now)."""
    minutes = [(fmt.epoch(m.get("minute")), m.get("events", 0)) for m in timeline.get("minutes", [])]
    minutes = [(t, n) for t, n in minutes if t is not None]
    detections = [
        (fmt.epoch(d.get("at")), d.get("ncd"), d.get("p_value"), bool(d.get("anomaly")))
        for d in timeline.get("detections", [])
    ]
    detections = [d for d in detections if d[0] is not None]
    incidents = []
    for incident in timeline.get("incidents", []):
        start = fmt.epoch(incident.get("opened_at"))
        if start is None:
            continue
        end = fmt.epoch(incident.get("resolved_at"))
        incidents.append(
            {"id": incident.get("id"), "status": incident.get("status"), "start": start, "end": end or now}
        )
    return {
        "from": now - since,
        "to": now,
        "minutes": [[t for t, _ in minutes], [n for _, n in minutes]],
        "detections": [
            [d[0] for d in detections],
            [d[1] for d in detections],
            [d[1] if d[3] else None for d in detections],
            [d[2] for d in detections],
        ],
        "incidents": incidents,
    }


def _rate(timeline: Mapping[str, Any], now: float, window: int = 300) -> float:
    """Events per minute over the last ``window`` seconds."""
    total = 0
    for minute in timeline.get("minutes", []):
        at = fmt.epoch(minute.get("minute"))
        if at is not None and at >= now - window:
            total += int(minute.get("events", 0))
    return total / (window / 60)


def console_routes(
    service: ConsoleService,
    *,
    api_keys: Sequence[str],
    secret: bytes | SharedSecret,
    sessions: ConsoleSessionStore | None = None,
    metrics: Metrics | None = None,
    session_max_age: int = 12 * 3600,
    webhooks: WebhookConsole | None = None,
    throttle: SignInLimiter | None = None,
) -> list[BaseRoute]:
    """The console's routes, to mount at ``/`` beside the API's (``/v1``, ``/api``, ``/healthz``, ...).

    With ``api_keys`` every page and action needs a session (sign in at ``/sign-in`` with one of the keys);
    without, the server is loopback-only and so is the console (the ``Host`` must be a loopback name).
    ``secret`` signs session cookies and CSRF tokens: one for every process and replica (the store's
    :class:`~driftlock.service.console_sessions.SharedSecret`, or the operator's ``--console-secret``), else a
    cookie from one process is refused by the others. ``sessions`` (the store's session table) makes sign-out
    revoke a session in every process. ``metrics`` (a :class:`~driftlock.server.metrics.Metrics`) counts
    refused sign-ins.
    ``webhooks`` (the notifier) adds the Integrations page (:mod:`~driftlock.server.console.integrations`).
    """
    signer = SessionSigner(api_keys, secret, max_age=session_max_age, sessions=sessions)
    headers = {**SECURITY_HEADERS, "X-Driftlock-Pid": str(os.getpid())}  # which worker answered, as the API says
    limiter = throttle if throttle is not None else SignInLimiter()  # the API's failure throttle (server/access.py)
    env = _environment()

    def render(
        request: Request, template: str, http_status: int = 200, session: Session | None = None, **context: Any
    ) -> HTMLResponse:
        html = env.get_template(template).render(
            request=request,
            session=session,
            csrf=session.csrf if session else "",
            signed_in=session is not None and not signer.open,
            now=datetime.now(UTC),
            path=request.url.path,
            **context,
        )
        return HTMLResponse(html, status_code=http_status, headers=headers)

    def refused(request: Request, status: int, message: str, session: Session | None = None) -> HTMLResponse:
        return render(request, "error.html", http_status=status, session=session, status_code=status, message=message)

    def set_cookie(request: Request, response: Response, value: str) -> None:
        response.set_cookie(
            COOKIE,
            value,
            max_age=signer.max_age,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    async def current(request: Request) -> Session | None:
        cookie = request.cookies.get(COOKIE)
        return await run_in_threadpool(signer.load, cookie) if cookie else None  # the store's session table

    Handler = Callable[[Request, Session], Awaitable[Response]]

    def page(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if signer.open and not loopback_host(request):
                return refused(request, 403, "This console answers only on a loopback address.")
            found = await current(request)
            fresh = None
            session: Session
            if found is not None:
                session = found
            elif signer.open:
                fresh, session = await run_in_threadpool(signer.issue, OPEN)  # the secret may be re-read
            else:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse("/sign-in?" + urlencode({"next": target}), status_code=303, headers=headers)
            try:
                response = await handler(request, session)
            except _Refused as exc:
                response = refused(request, exc.status, exc.message, session)
            except Exception as exc:
                status = _status_of(exc)
                if status is None:
                    raise
                response = refused(request, status, _message_of(exc), session)
            if fresh is not None:
                set_cookie(request, response, fresh)
            return response

        return endpoint

    def action(handler: Callable[[Request, Session, Mapping[str, str]], Awaitable[str]]) -> Any:
        async def endpoint(request: Request) -> Response:
            if signer.open and not loopback_host(request):
                return refused(request, 403, "This console answers only on a loopback address.")
            session = await current(request)
            if session is None:
                return refused(request, 403, "Sign in first: this action needs a console session.")
            if not same_origin(request):
                return refused(request, 403, cross_origin_message(request, "the form"), session)
            try:
                fields = await _form(request)
                if not signer.csrf_ok(session, fields.get("csrf")):
                    raise _Refused(403, "Refused: the form's token is missing or stale. Reload the page.")
                target = await handler(request, session, fields)
            except _Refused as exc:
                return refused(request, exc.status, exc.message, session)
            except Exception as exc:
                status = _status_of(exc)
                if status is None:
                    raise
                return refused(request, status, _message_of(exc), session)
            return RedirectResponse(target, status_code=303, headers=headers)

        return endpoint

    # -- sign-in ---------------------------------------------------------------------------------------------

    async def sign_in_page(request: Request) -> Response:
        target = _local_path(request.query_params.get("next"))
        if signer.open or await current(request) is not None:
            return RedirectResponse(target, status_code=303, headers=headers)
        return render(request, "sign_in.html", next=target, error=None)

    async def sign_in(request: Request) -> Response:
        if not same_origin(request):
            return refused(request, 403, cross_origin_message(request, "the sign-in form"))
        try:
            form = await _form(request)
        except _Refused as exc:
            return refused(request, exc.status, exc.message)
        target = _local_path(form.get("next") or "/")
        if signer.open:
            return RedirectResponse(target, status_code=303, headers=headers)
        client = request.client.host if request.client else "unknown"
        # first: others' failures never lock out the key
        fingerprint = await run_in_threadpool(signer.check_key, form.get("api_key") or "")
        if fingerprint is None and limiter.blocked(client):
            limiter.failed(client)
            return render(
                request,
                "sign_in.html",
                http_status=429,
                next=target,
                error="Too many failed sign-ins; wait a few minutes.",
            )
        if fingerprint is None:
            limiter.failed(client)
            if metrics is not None:
                metrics.console_sign_in_failures.inc()
            return render(request, "sign_in.html", http_status=401, next=target, error="That key is not accepted here.")
        value, _ = await run_in_threadpool(signer.issue, fingerprint)
        response = RedirectResponse(target, status_code=303, headers=headers)
        set_cookie(request, response, value)
        return response

    async def sign_out(request: Request) -> Response:
        session = await current(request)
        if session is not None:
            try:
                token = (await _form(request)).get("csrf") if same_origin(request) else None
            except _Refused:
                token = None
            if not signer.csrf_ok(session, token):
                return refused(request, 403, "Refused: the form's token is missing or stale.", session)
            await run_in_threadpool(signer.revoke, session)  # signed out in every process, not only this browser
        response = RedirectResponse("/sign-in", status_code=303, headers=headers)
        response.delete_cookie(COOKIE, path="/")
        return response

    # -- pages -----------------------------------------------------------------------------------------------

    async def streams_page(request: Request, session: Session) -> Response:
        offset = _int(request.query_params.get("offset"), 0, 0, 10**9)

        def load() -> dict[str, Any]:
            listed = service.list_streams(limit=PAGE_SIZE, offset=offset)
            now = time.time()
            rows = []
            for info in listed.get("streams", []):
                timeline = service.stream_timeline(info["stream_id"], since_seconds=3600)
                rows.append(
                    {
                        "info": info,
                        "rate": _rate(timeline, now),
                        "spark": _timeline_data(timeline, 3600, now),
                    }
                )
            incidents = service.list_incidents(status="open", limit=10)
            return {"rows": rows, "total": listed.get("total", len(rows)), "open_incidents": incidents}

        data = await run_in_threadpool(load)
        return render(request, "streams.html", session=session, offset=offset, page_size=PAGE_SIZE, **data)

    async def stream_page(request: Request, session: Session) -> Response:
        stream_id = request.path_params["stream_id"]
        range_name = request.query_params.get("range", "hour")
        since = RANGES.get(range_name, 3600)
        range_name = range_name if range_name in RANGES else "hour"

        def load() -> dict[str, Any] | None:
            info = service.stream_info(stream_id)
            if info is None:
                return None
            timeline = service.stream_timeline(stream_id, since_seconds=since)
            incidents = service.list_incidents(stream_id=stream_id, limit=20)
            return {"info": info, "timeline": timeline, "incidents": incidents}

        data = await run_in_threadpool(load)
        if data is None:
            raise _Refused(404, f"No stream {stream_id!r} has sent events to this server.")
        plot = _timeline_data(data["timeline"], since, time.time())
        return render(
            request,
            "stream.html",
            session=session,
            range_name=range_name,
            plot=plot,
            mute_choices=MUTE_CHOICES,
            **data,
        )

    async def incidents_page(request: Request, session: Session) -> Response:
        status = request.query_params.get("status") or None
        if status not in (None, *INCIDENT_STATUSES):
            status = None
        stream_id = (request.query_params.get("stream_id") or "").strip() or None
        offset = _int(request.query_params.get("offset"), 0, 0, 10**9)
        listed = await run_in_threadpool(
            lambda: service.list_incidents(stream_id=stream_id, status=status, limit=PAGE_SIZE, offset=offset)
        )
        total = int(listed.get("total", 0))
        base = {k: v for k, v in (("status", status), ("stream_id", stream_id)) if v}
        pages = {
            "prev": "/incidents?" + urlencode({**base, "offset": max(0, offset - PAGE_SIZE)}) if offset else None,
            "next": "/incidents?" + urlencode({**base, "offset": offset + PAGE_SIZE})
            if offset + PAGE_SIZE < total
            else None,
            "page": offset // PAGE_SIZE + 1,
            "pages": max(1, math.ceil(total / PAGE_SIZE)),
        }
        return render(
            request,
            "incidents.html",
            session=session,
            incidents=listed.get("incidents", []),
            total=total,
            status=status,
            stream_id=stream_id or "",
            statuses=INCIDENT_STATUSES,
            pages=pages,
        )

    async def incident_page(request: Request, session: Session) -> Response:
        incident_id = request.path_params["incident_id"]
        incident = await run_in_threadpool(service.get_incident, incident_id)
        done = request.query_params.get("done")
        return render(
            request,
            "incident.html",
            session=session,
            incident=incident,
            explanation=incident.get("explanation") or {},
            mute_choices=MUTE_CHOICES,
            done=done if done in (*FEEDBACK_TYPES, "resolved", "muted") else None,
        )

    # -- actions ---------------------------------------------------------------------------------------------

    async def feedback(request: Request, session: Session, form: Mapping[str, str]) -> str:
        incident_id = request.path_params["incident_id"]
        kind = form.get("feedback_type", "")
        if kind not in FEEDBACK_TYPES:
            raise _Refused(400, f"feedback_type must be one of {', '.join(FEEDBACK_TYPES)}")
        reason = (form.get("reason") or "").strip()[:500] or None
        await run_in_threadpool(service.incident_feedback, incident_id, kind, reason)
        return f"/incidents/{quote(incident_id, safe='')}?done={kind}"

    async def resolve(request: Request, session: Session, form: Mapping[str, str]) -> str:
        incident_id = request.path_params["incident_id"]
        await run_in_threadpool(service.resolve_incident, incident_id)
        return f"/incidents/{quote(incident_id, safe='')}?done=resolved"

    async def mute(request: Request, session: Session, form: Mapping[str, str]) -> str:
        stream_id = form.get("stream_id", "")
        minutes = _int(form.get("minutes"), -1, 1, 7 * 1440)
        if not stream_id or minutes < 1:
            raise _Refused(400, "Choose a stream and a duration between 1 minute and 7 days.")
        await run_in_threadpool(service.mute_stream, stream_id, minutes * 60)
        return _local_path(form.get("next"), f"/streams/{quote(stream_id, safe='/')}")

    routes: list[BaseRoute] = [
        Route("/", page(streams_page), methods=["GET"], name="console:streams"),
        Route("/sign-in", sign_in_page, methods=["GET"]),
        Route("/sign-in", sign_in, methods=["POST"]),
        Route("/sign-out", sign_out, methods=["POST"]),
        Route("/incidents", page(incidents_page), methods=["GET"]),
        Route("/incidents/{incident_id}", page(incident_page), methods=["GET"]),
        Route("/incidents/{incident_id}/feedback", action(feedback), methods=["POST"]),
        Route("/incidents/{incident_id}/resolve", action(resolve), methods=["POST"]),
        Route("/mute", action(mute), methods=["POST"]),
        Route("/streams/{stream_id:path}", page(stream_page), methods=["GET"]),
        Mount("/static", StaticFiles(packages=[("driftlock.server.console", "static")]), name="console:static"),
    ]
    if webhooks is not None:
        routes += integration_routes(webhooks, page=page, action=action, render=render, refused=_Refused)
    return routes


def _int(value: str | None, default: int, low: int, high: int) -> int:
    try:
        parsed = int(value) if value is not None else default
    except ValueError:
        return default
    return parsed if low <= parsed <= high else default
