"""The console's Integrations page: the webhooks of this server, added, deleted and tested from the browser.

Webhooks added here are kept in the store, so every process and replica over it sends to them; those given
with ``--notify`` are listed too, read-only. A secret is never shown back (the page says only whether
a webhook signs). "Send test webhook" sends one made-up event of the webhook's first selected type, now, and
the page shows what the receiver answered.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from driftlock.server.notify import Configured
from driftlock.service.webhooks import DEFAULT_EVENTS, EVENT_TYPES, MAX_WEBHOOKS

__all__ = ["WebhookConsole", "integration_routes"]

EVENT_LABELS = {
    "anomaly.detected": "the anomaly that opens an incident (the payload of Driftlock's webhooks page)",
    "incident.opened": "an incident opens",
    "incident.updated": "an open incident changes",
    "incident.resolved": "an incident resolves",
}


class WebhookConsole(Protocol):
    """What the page needs (``driftlock.server.notify.Notifier``)."""

    def configured(self) -> list[Configured]: ...
    def add_webhook(self, url: str, secret: str, events: Sequence[str]) -> Any: ...
    def delete_webhook(self, key: str) -> bool: ...
    def send_test(self, key: str) -> str: ...


def _when(at: float | None) -> str | None:
    return None if at is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at))


def integration_routes(
    webhooks: WebhookConsole,
    *,
    page: Callable[[Callable[[Request, Any], Awaitable[Response]]], Callable[[Request], Awaitable[Response]]],
    action: Callable[[Callable[[Request, Any, Mapping[str, str]], Awaitable[str]]], Any],
    render: Callable[..., Response],
    refused: Callable[[int, str], Exception],
) -> list[BaseRoute]:
    """The page and its three forms, wrapped by the console's own ``page`` and ``action`` (sessions, Host and
    Origin checks, CSRF); ``refused(status, message)`` makes the error the wrappers show."""

    async def integrations_page(request: Request, session: Any) -> Response:
        listed = await run_in_threadpool(webhooks.configured)
        rows = [{"hook": hook, "last_at": _when(hook.last_result_at)} for hook in listed]
        done = request.query_params.get("done")
        return render(
            request,
            "integrations.html",
            session=session,
            rows=rows,
            events=[(e, EVENT_LABELS[e], e in DEFAULT_EVENTS) for e in EVENT_TYPES],
            max_webhooks=MAX_WEBHOOKS,
            done=done if done in ("added", "deleted", "tested") else None,
            tested=request.query_params.get("webhook") if done == "tested" else None,
        )

    async def add(request: Request, session: Any, form: Mapping[str, str]) -> str:
        url = (form.get("url") or "").strip()
        secret = form.get("secret") or ""
        chosen = [e for e in EVENT_TYPES if form.get(f"event:{e}")]
        try:
            await run_in_threadpool(webhooks.add_webhook, url, secret, chosen)
        except ValueError as exc:
            raise refused(400, str(exc)) from None
        return "/integrations?done=added"

    async def delete(request: Request, session: Any, form: Mapping[str, str]) -> str:
        key = request.path_params["key"]
        try:
            found = await run_in_threadpool(webhooks.delete_webhook, key)
        except ValueError as exc:
            raise refused(400, str(exc)) from None
        if not found:
            raise refused(404, f"No webhook {key!r}: it may have been deleted already.")
        return "/integrations?done=deleted"

    async def test(request: Request, session: Any, form: Mapping[str, str]) -> str:
        key = request.path_params["key"]
        try:
            await run_in_threadpool(webhooks.send_test, key)
        except LookupError:
            raise refused(404, f"No webhook {key!r}: it may have been deleted.") from None
        except RuntimeError as exc:
            raise refused(503, f"Webhooks are not being sent right now ({exc}).") from None
        return f"/integrations?done=tested&webhook={quote(key, safe='')}#webhook-{quote(key, safe='')}"

    return [
        Route("/integrations", page(integrations_page), methods=["GET"]),
        Route("/integrations/webhooks", action(add), methods=["POST"]),
        Route("/integrations/webhooks/{key}/delete", action(delete), methods=["POST"]),
        Route("/integrations/webhooks/{key}/test", action(test), methods=["POST"]),
    ]
