"""Webhook notifications of ``driftlock serve``: a JSON POST when an incident opens and when it resolves.

Each URL has its own bounded queue and its own sender thread, so a slow or hanging receiver delays only its
own notifications and never detection: :meth:`Notifier.__call__` (the detection service's listener, called
on the detecting thread) builds the payload and puts it on each queue with ``put_nowait``; a full queue drops
the notification and counts it.

Signature (when a secret is set, ``DRIFTLOCK_SERVE_WEBHOOK_SECRET``)::

    X-Driftlock-Timestamp: <unix seconds>
    X-Driftlock-Signature: sha256=<hex of HMAC-SHA256(secret, timestamp + "." + body)>

A receiver recomputes the HMAC over the raw body bytes, compares in constant time, and refuses timestamps
older than a few minutes (replay). ``X-Driftlock-Delivery`` is the same on every retry of one notification.

The body (``Content-Type: application/json``; ``X-Driftlock-Event`` repeats ``type``)::

    {"id": "<delivery id>", "type": "incident.opened" | "incident.resolved", "sent_at": "<ISO-8601>",
     "url": "<the incident's console page>", "incident": {<the incident as GET /v1/incidents/{id} shows it>}}

URLs on ``hooks.slack.com``, or with ``format=slack`` in the query (removed before sending), get a
Slack-compatible body instead: ``{"text": ..., "blocks": [...]}``.

Deliveries that answer 408, 425, 429 or 5xx, time out, or cannot connect are retried with exponential backoff
(``Retry-After`` wins); other answers, redirects included, fail at once. ``driftlock_notifications_*`` in
``/metrics`` count what was sent, retried, failed and dropped.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import random
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

__all__ = ["Notifier", "is_slack", "sign", "verify"]

logger = logging.getLogger("driftlock.server.notify")

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
SIGNATURE_HEADER = "X-Driftlock-Signature"
TIMESTAMP_HEADER = "X-Driftlock-Timestamp"


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Driftlock-Signature`` value for one delivery."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(secret: bytes, timestamp: str, body: bytes, signature: str, *, tolerance: float = 300.0) -> bool:
    """What a receiver does: a constant-time comparison, and a timestamp within ``tolerance`` seconds."""
    try:
        age = abs(time.time() - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance and hmac.compare_digest(sign(secret, timestamp, body), signature)


def is_slack(url: str) -> bool:
    parts = urlsplit(url)
    return parts.hostname == "hooks.slack.com" or ("format", "slack") in parse_qsl(parts.query)


def _target_url(url: str) -> str:
    """The URL to POST to: our own ``format`` parameter removed."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "format"]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _redacted(url: str) -> str:
    """Webhook URLs carry their credential in the path (Slack): logs show only scheme and host."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}/…"


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class _Delivery:
    delivery_id: str
    event: str
    body: bytes


def generic_payload(kind: str, incident: Mapping[str, Any], console_url: str | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "type": f"incident.{kind}",
        "sent_at": _now_iso(),
        "incident": dict(incident),
    }
    if console_url:
        payload["url"] = f"{console_url.rstrip('/')}/incidents/{incident.get('id')}"
    return payload


def _mrkdwn(text: Any) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _event_line(event: Any) -> str:
    body = event.get("body", event) if isinstance(event, Mapping) else event
    if isinstance(body, Mapping) and "route" in body:
        bits = [str(body.get(k)) for k in ("method", "route", "status") if body.get(k) not in (None, "")]
        return " ".join(bits)
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)[:120]


def slack_payload(kind: str, incident: Mapping[str, Any], console_url: str | None = None) -> dict[str, Any]:
    stream = incident.get("stream_id", "?")
    explanation = incident.get("explanation") or {}
    summary = explanation.get("summary") or "An incident changed."
    verb = "opened" if kind == "opened" else "resolved"
    title = f"Driftlock incident {verb} on stream {stream}"
    link = f"{console_url.rstrip('/')}/incidents/{incident.get('id')}" if console_url else None
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _mrkdwn(summary)[:2900]}},
    ]
    fields = [
        f"*Status*\n{_mrkdwn(incident.get('status', '?'))}",
        f"*Anomalies*\n{incident.get('anomaly_count', 0)}",
        f"*Opened*\n{_mrkdwn(incident.get('opened_at', '?'))}",
    ]
    if incident.get("resolved_at"):
        fields.append(f"*Resolved*\n{_mrkdwn(incident['resolved_at'])}")
    blocks.append({"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]})
    surges = explanation.get("surges") or []
    if surges:
        lines = [
            f"• `{_mrkdwn(_event_line(s.get('event')))}`: {s.get('count')} of {s.get('window')} "
            f"(baseline {s.get('baseline_count')} of {s.get('baseline')})"
            for s in surges[:5]
        ]
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "*Surging events*\n" + "\n".join(lines)}})
    context = f"incident {_mrkdwn(incident.get('id'))}"
    if link:
        context += f" · <{link}|open in the console>"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    text = f"{title}: {summary}" + (f" {link}" if link else "")
    return {"text": text, "blocks": blocks}


class _Target:
    """One webhook URL: its queue, its sender thread, its format."""

    def __init__(self, url: str, queue_size: int) -> None:
        self.url = url
        self.post_url = _target_url(url)
        self.slack = is_slack(url)
        self.queue: queue.Queue[_Delivery] = queue.Queue(maxsize=queue_size)
        self.thread: threading.Thread | None = None


class Notifier:
    """Sends incident notifications to webhook URLs; usable as a detection-service listener.

    ``notifier(kind, incident)`` never blocks and never raises: it enqueues (or drops and counts) and returns.
    Deliveries are retried on connection errors, timeouts, 408/425/429/5xx with exponential backoff and
    jitter (``Retry-After`` wins, capped by ``max_backoff``), up to ``max_attempts`` attempts in all; other
    answers fail at once. ``stop(timeout)`` sends what is queued until the deadline, then gives up.
    """

    def __init__(
        self,
        urls: Iterable[str],
        secret: bytes | str | None = None,
        *,
        queue_size: int = 1000,
        timeout: float = 5.0,
        max_attempts: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        console_url: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        urls = [u.strip() for u in urls if u and u.strip()]
        for url in urls:
            if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
                raise ValueError(f"webhook URL must be http:// or https:// with a host, got {_redacted(url)!r}")
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.secret = secret.encode() if isinstance(secret, str) else secret
        self.timeout, self.max_attempts = timeout, max_attempts
        self.backoff, self.max_backoff = backoff, max_backoff
        self.console_url = console_url
        self._transport = transport
        self._targets = [_Target(url, queue_size) for url in dict.fromkeys(urls)]
        self._lock = threading.Lock()
        self._counts = {"sent": 0, "failed": 0, "retried": 0, "dropped": 0}
        self._closing = threading.Event()
        self._abort = threading.Event()
        self._started = False
        self._warned_drop = 0.0

    @property
    def urls(self) -> Sequence[str]:
        return [t.url for t in self._targets]

    def stats(self) -> dict[str, int]:
        """``sent``, ``failed``, ``retried``, ``dropped`` (totals) and ``queued`` (now)."""
        with self._lock:
            counts = dict(self._counts)
        counts["queued"] = sum(t.queue.qsize() for t in self._targets)
        return counts

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def start(self) -> Notifier:
        if self._started:
            return self
        if self._targets and not self.secret:
            logger.warning(
                "webhook notifications are not signed: set DRIFTLOCK_SERVE_WEBHOOK_SECRET so receivers can verify them"
            )
        self._started = True
        for index, target in enumerate(self._targets):
            target.thread = threading.Thread(
                target=self._run, args=(target,), name=f"driftlock-notify-{index}", daemon=True
            )
            target.thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Deliver what is queued within ``timeout`` seconds, then abandon the rest (counted as failed)."""
        self._closing.set()
        deadline = time.monotonic() + timeout
        for target in self._targets:
            if target.thread is not None:
                target.thread.join(max(0.0, deadline - time.monotonic()))
        self._abort.set()
        for target in self._targets:
            if target.thread is not None:
                target.thread.join(self.timeout + 1.0)
            abandoned = 0
            while True:
                try:
                    target.queue.get_nowait()
                except queue.Empty:
                    break
                abandoned += 1
            if abandoned:
                self._count("failed", abandoned)

    def __call__(self, kind: str, incident: Mapping[str, Any]) -> None:
        """The listener: ``kind`` is ``"opened"`` or ``"resolved"``. Returns at once; never raises."""
        try:
            self._enqueue(kind, incident)
        except Exception:  # a bug here must never reach the detecting thread
            logger.exception("could not queue a webhook notification")

    def _enqueue(self, kind: str, incident: Mapping[str, Any]) -> None:
        if kind not in ("opened", "resolved") or not self._targets or self._closing.is_set():
            return
        delivery_id = str(uuid.uuid4())
        generic: bytes | None = None
        slack: bytes | None = None
        for target in self._targets:
            if target.slack:
                slack = slack or _dumps(slack_payload(kind, incident, self.console_url))
                body = slack
            else:
                generic = generic or _dumps({"id": delivery_id, **generic_payload(kind, incident, self.console_url)})
                body = generic
            try:
                target.queue.put_nowait(_Delivery(delivery_id, f"incident.{kind}", body))
            except queue.Full:
                self._count("dropped")
                now = time.monotonic()
                if now - self._warned_drop > 60:
                    self._warned_drop = now
                    logger.warning("webhook queue for %s is full: notifications are dropped", _redacted(target.url))

    def _run(self, target: _Target) -> None:
        with httpx.Client(timeout=self.timeout, transport=self._transport, follow_redirects=False) as client:
            while not self._abort.is_set():
                try:
                    delivery = target.queue.get(timeout=0.1)
                except queue.Empty:
                    if self._closing.is_set():
                        return
                    continue
                self._deliver(client, target, delivery)

    def _headers(self, delivery: _Delivery) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "driftlock-serve",
            "X-Driftlock-Event": delivery.event,
            "X-Driftlock-Delivery": delivery.delivery_id,
        }
        timestamp = str(int(time.time()))
        headers[TIMESTAMP_HEADER] = timestamp
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, timestamp, delivery.body)
        return headers

    def _deliver(self, client: httpx.Client, target: _Target, delivery: _Delivery) -> None:
        for attempt in range(1, self.max_attempts + 1):
            retry_after: float | None = None
            try:
                response = client.post(target.post_url, content=delivery.body, headers=self._headers(delivery))
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}"
            else:
                if 200 <= response.status_code < 300:
                    self._count("sent")
                    return
                problem = f"HTTP {response.status_code}"
                if response.status_code not in RETRY_STATUSES:
                    break
                retry_after = _retry_after(response.headers.get("retry-after"))
            if attempt == self.max_attempts or self._abort.is_set():
                break
            self._count("retried")
            delay = retry_after if retry_after is not None else self.backoff * 2 ** (attempt - 1)
            delay = min(self.max_backoff, delay) * (1.0 if retry_after is not None else random.uniform(0.5, 1.0))
            if self._abort.wait(delay):
                break
        self._count("failed")
        logger.warning("webhook %s failed for %s: %s", delivery.event, _redacted(target.url), problem)


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), default=str).encode()
