"""The notifier: a detection-service listener that turns incident changes into webhook deliveries.

The listener (:meth:`Notifier.__call__`, on the detecting thread) only counts and hands the change to the
notifier's own thread, which runs an event loop: a dispatcher reads the webhooks (the ``--notify`` ones
and the store's, so every replica sends to those configured on any of them), builds each event's body once,
and puts a delivery on each selecting webhook's bounded queue; each webhook has its own sender, so a slow
receiver delays only its own deliveries. Every attempt runs under one overall deadline (``timeout``: connect,
send and the whole answer), so a receiver that trickles its answer cannot hold its queue. As the webhooks page
says, a non-2xx answer (redirects included: they are not followed), a timeout or a connection error is retried
up to ``max_retries`` (5) times with exponential backoff and jitter (``Retry-After`` wins, seconds or an HTTP
date, capped by ``max_backoff``). ``driftlock_notifications_*`` in ``/metrics`` count what was sent, retried,
failed and dropped.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from driftlock._protocol import backoff, retry_after_seconds
from driftlock._version import __version__
from driftlock.server.notify import payloads
from driftlock.server.notify.jsonbody import dumps
from driftlock.server.notify.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    TIMESTAMP_SIGNATURE_HEADER,
    sign_body,
    sign_timestamped,
)
from driftlock.server.notify.slack import slack_payload
from driftlock.server.notify.targets import Target, check_url, from_flag, from_webhook, redacted, shown_url
from driftlock.service.webhooks import EVENT_TYPES, Webhook, WebhookStore, check_events

__all__ = ["KIND_EVENTS", "Configured", "Notifier", "NotifierStore"]

logger = logging.getLogger("driftlock.server.notify")

KIND_EVENTS: Mapping[str, tuple[str, ...]] = {
    "opened": ("anomaly.detected", "incident.opened"),
    "updated": ("incident.updated",),
    "resolved": ("incident.resolved",),
}
"""The events one incident change makes (the service's listener kinds)."""
IDLE_SECONDS = 60.0
"""A webhook's sender ends after this long with nothing to send (a new delivery starts another)."""
MAX_SECRET_CHARS = 256


class NotifierStore(Protocol):
    """What the notifier reads from the store: the configured webhooks, and an incident's opening anomaly."""

    @property
    def webhooks(self) -> WebhookStore: ...

    def get_incident(self, incident_id: str) -> dict[str, Any] | None: ...
    def get_anomaly(self, anomaly_id: str) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class Configured:
    """A webhook as the console lists it (never its secret)."""

    key: str
    shown_url: str
    events: tuple[str, ...]
    signed: bool
    slack: bool
    stored: bool
    last_result: str | None = None
    last_result_at: float | None = None


@dataclass(frozen=True)
class _Delivery:
    target: Target
    event_id: str
    event_type: str
    body: bytes


@dataclass
class _Outcome:
    ok: bool
    retry: bool
    result: str
    retry_after: float | None = None


@dataclass
class _Sender:
    queue: asyncio.Queue[_Delivery]
    task: asyncio.Task[None] | None = None
    current: _Delivery | None = None


class Notifier:
    """Sends webhook events; usable as a detection-service listener. Thread-safe.

    ``urls``: the ``--notify`` webhooks, signed with ``secret``. ``store``: where the console's webhooks live
    and where an incident's opening anomaly is read (without one, only ``urls``). ``notifier(kind,
    incident)`` never blocks and never raises: it counts, hands over (or drops, counted, past ``queue_size``
    waiting changes) and returns. ``stop(timeout)`` sends what is queued until the deadline, then gives up.
    """

    def __init__(
        self,
        urls: Iterable[str] = (),
        secret: bytes | str | None = None,
        *,
        store: NotifierStore | None = None,
        console_url: str | None = None,
        queue_size: int = 1000,
        timeout: float = 10.0,
        max_retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        key = secret.encode() if isinstance(secret, str) else secret
        self.secret = key or None
        given = [u for u in urls if u and u.strip()]
        self._flag_targets = [from_flag(n, url, self.secret) for n, url in enumerate(dict.fromkeys(given), start=1)]
        self.store = store
        self.console_url = console_url
        self.queue_size, self.timeout, self.max_retries = queue_size, timeout, max_retries
        self.backoff, self.max_backoff = backoff, max_backoff
        self._transport = transport
        self._rng = random.Random()
        self._lock = threading.Lock()
        self._counts = {"sent": 0, "failed": 0, "retried": 0, "dropped": 0}
        self._waiting = 0  # changes handed over, not yet dispatched
        self._closing = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: httpx.AsyncClient | None = None
        self._intake: asyncio.Queue[tuple[str, dict[str, Any]]] | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._senders: dict[str, _Sender] = {}
        self._warned_drop = 0.0
        self._flag_results: dict[str, tuple[str, float]] = {}  # the last test of each --notify webhook

    @property
    def urls(self) -> Sequence[str]:
        return [t.url for t in self._flag_targets]

    # -- counters -----------------------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """``sent``, ``failed``, ``retried``, ``dropped`` (totals) and ``queued`` (now)."""
        with self._lock:
            counts = dict(self._counts)
            waiting = self._waiting
        counts["queued"] = waiting + sum(s.queue.qsize() for s in list(self._senders.values()))
        return counts

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def _dropped(self, where: str) -> None:
        self._count("dropped")
        now = time.monotonic()
        if now - self._warned_drop > 60:
            self._warned_drop = now
            logger.warning("webhook queue %s is full: notifications are dropped", where)

    # -- life cycle ---------------------------------------------------------------------------------------

    def start(self) -> Notifier:
        if self._loop is not None:
            return self
        if self._flag_targets and not self.secret:
            logger.warning(
                "webhook notifications are not signed: set DRIFTLOCK_SERVE_WEBHOOK_SECRET so receivers can verify them"
            )
        loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="driftlock-notify", daemon=True)
        self._thread.start()
        self._loop = loop
        self._call(self._setup(), 10.0)
        return self

    async def _setup(self) -> None:
        self._client = httpx.AsyncClient(
            timeout=self.timeout, transport=self._transport, follow_redirects=False, trust_env=False
        )
        self._intake = asyncio.Queue()
        self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch_forever())

    def _call(self, coro: Any, timeout: float) -> Any:
        assert self._loop is not None
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Deliver what is queued within ``timeout`` seconds, then abandon the rest (counted as failed)."""
        self._closing.set()
        loop = self._loop
        if loop is None or self._thread is None:
            return
        try:
            self._call(self._shutdown(timeout), timeout + self.timeout + 5.0)
        except Exception:  # a stuck loop must not stop the server from exiting
            logger.exception("the webhook notifier did not stop cleanly")
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(5.0)
        if not self._thread.is_alive():
            loop.close()

    async def _shutdown(self, timeout: float) -> None:
        deadline = time.monotonic() + max(0.0, timeout)
        while time.monotonic() < deadline and self._busy():
            await asyncio.sleep(0.02)
        tasks = [t for t in (self._dispatcher, *(s.task for s in self._senders.values())) if t is not None]
        abandoned = sum(s.queue.qsize() + (s.current is not None) for s in self._senders.values())
        for task in tasks:  # no await since the count: nothing has finished in between
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with self._lock:
            abandoned += self._waiting
            self._waiting = 0
            self._counts["failed"] += abandoned
        self._senders.clear()
        if self._client is not None:
            await self._client.aclose()

    def _busy(self) -> bool:
        with self._lock:
            waiting = self._waiting
        return bool(waiting) or any(s.current is not None or s.queue.qsize() for s in self._senders.values())

    # -- the listener -------------------------------------------------------------------------------------

    def __call__(self, kind: str, incident: Mapping[str, Any]) -> None:
        """The listener: ``kind`` is ``"opened"``, ``"updated"`` or ``"resolved"``. Returns at once; never raises."""
        try:
            self._hand_over(kind, incident)
        except Exception:  # a bug here must never reach the detecting thread
            logger.exception("could not queue a webhook notification")

    def _hand_over(self, kind: str, incident: Mapping[str, Any]) -> None:
        loop, intake = self._loop, self._intake
        if kind not in KIND_EVENTS or loop is None or intake is None or self._closing.is_set():
            return
        with self._lock:
            if self._waiting >= self.queue_size:
                full = True
            else:
                full = False
                self._waiting += 1
        if full:
            self._dropped("of incident changes")
            return
        try:
            loop.call_soon_threadsafe(intake.put_nowait, (kind, dict(incident)))
        except RuntimeError:  # the loop has just closed
            with self._lock:
                self._waiting -= 1

    async def _dispatch_forever(self) -> None:
        assert self._intake is not None
        while True:
            kind, incident = await self._intake.get()
            try:
                deliveries = await asyncio.to_thread(self._prepare, kind, incident)
            except Exception:
                logger.exception("could not prepare the webhook events of incident %s", incident.get("id"))
                deliveries = []
            finally:
                with self._lock:
                    self._waiting -= 1
            for delivery in deliveries:
                self._enqueue(delivery)

    # -- what to send -------------------------------------------------------------------------------------

    def targets(self) -> list[Target]:
        """The ``--notify`` webhooks, then the store's (read now)."""
        stored = self.store.webhooks.list_webhooks() if self.store is not None else []
        return [*self._flag_targets, *(from_webhook(w) for w in stored)]

    def _reachable_targets(self) -> list[Target]:
        """:meth:`targets`, or only the ``--notify`` ones while the store cannot be read (counted as failed)."""
        try:
            return self.targets()
        except Exception as exc:
            self._count("failed")
            logger.warning("webhooks: the store cannot be read (%s); sending to --notify webhooks only", exc)
            return list(self._flag_targets)

    def _prepare(self, kind: str, incident: dict[str, Any]) -> list[_Delivery]:
        """The deliveries of one incident change (on a worker thread: it reads the store)."""
        chosen = [(t, e) for t in self._reachable_targets() for e in KIND_EVENTS[kind] if e in t.events]
        if not chosen:
            return []
        anomaly = None
        if any(e == "anomaly.detected" for _, e in chosen):
            anomaly = self._opening_anomaly(incident)
            if anomaly is None:
                logger.warning(
                    "incident %s: its opening anomaly is not in the store; no anomaly.detected", incident.get("id")
                )
                chosen = [(t, e) for t, e in chosen if e != "anomaly.detected"]
        created = payloads.now_iso()
        ids = {e: payloads.event_id() for _, e in chosen}
        bodies: dict[tuple[str, bool], bytes] = {}
        out = []
        for target, event_type in chosen:
            body = bodies.get((event_type, target.slack))
            if body is None:
                if target.slack:
                    payload = slack_payload(event_type, incident, anomaly, self.console_url)
                elif event_type == "anomaly.detected":
                    assert anomaly is not None
                    payload = payloads.anomaly_detected(
                        anomaly, incident, eid=ids[event_type], created_at=created, console_url=self.console_url
                    )
                else:
                    payload = payloads.incident_event(
                        event_type, incident, eid=ids[event_type], created_at=created, console_url=self.console_url
                    )
                body = bodies[(event_type, target.slack)] = dumps(payload)
            out.append(_Delivery(target, ids[event_type], event_type, body))
        return out

    def _opening_anomaly(self, incident: Mapping[str, Any]) -> dict[str, Any] | None:
        if self.store is None:
            return None
        try:
            row = self.store.get_incident(str(incident.get("id")))
            opened_by = row.get("opened_by") if row else None
            return self.store.get_anomaly(str(opened_by)) if opened_by else None
        except Exception as exc:  # the store is busy or down: the incident events still go
            logger.warning("webhooks: the opening anomaly of incident %s cannot be read: %s", incident.get("id"), exc)
            return None

    # -- sending ------------------------------------------------------------------------------------------

    def _enqueue(self, delivery: _Delivery) -> None:
        key = delivery.target.key
        sender = self._senders.get(key)
        if sender is None:
            sender = self._senders[key] = _Sender(asyncio.Queue(self.queue_size))
            sender.task = asyncio.get_running_loop().create_task(self._send_forever(key, sender))
        try:
            sender.queue.put_nowait(delivery)
        except asyncio.QueueFull:
            self._dropped(f"for {redacted(delivery.target.url)}")

    async def _send_forever(self, key: str, sender: _Sender) -> None:
        while True:
            try:
                delivery = await asyncio.wait_for(sender.queue.get(), IDLE_SECONDS)
            except TimeoutError:
                if sender.queue.empty():
                    del self._senders[key]
                    return
                continue
            sender.current = delivery
            try:
                await self._deliver(delivery)
            finally:
                sender.current = None

    async def _deliver(self, delivery: _Delivery) -> None:
        outcome = _Outcome(False, False, "not sent")
        for attempt in range(self.max_retries + 1):
            outcome = await self._attempt(delivery)
            if outcome.ok:
                self._count("sent")
                break
            if not outcome.retry or attempt == self.max_retries:
                self._count("failed")
                logger.warning(
                    "webhook %s failed for %s: %s", delivery.event_type, redacted(delivery.target.url), outcome.result
                )
                break
            self._count("retried")
            wait = outcome.retry_after
            if wait is None:
                wait = backoff(attempt, self._rng, initial=self.backoff, cap=self.max_backoff)
            await asyncio.sleep(min(wait, self.max_backoff))
        if delivery.target.stored:
            await self._record(delivery.target.key, f"{delivery.event_type}: {outcome.result}")

    def _headers(self, delivery: _Delivery) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"driftlock-serve/{__version__}",
            "X-Driftlock-Event": delivery.event_type,
            "X-Driftlock-Delivery": delivery.event_id,
        }
        secret = delivery.target.secret
        if secret:
            timestamp = str(int(time.time()))
            headers[SIGNATURE_HEADER] = sign_body(secret, delivery.body)
            headers[TIMESTAMP_HEADER] = timestamp
            headers[TIMESTAMP_SIGNATURE_HEADER] = sign_timestamped(secret, timestamp, delivery.body)
        return headers

    async def _attempt(self, delivery: _Delivery) -> _Outcome:
        """One POST under one overall deadline: connecting, sending and reading the whole answer."""
        assert self._client is not None
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout):
                response = await self._client.post(
                    delivery.target.post_url, content=delivery.body, headers=self._headers(delivery)
                )
        except TimeoutError:
            return _Outcome(False, True, f"no complete answer within {self.timeout:g}s")
        except httpx.TransportError as exc:
            return _Outcome(False, True, f"{type(exc).__name__} (could not deliver)")
        except httpx.HTTPError as exc:  # the URL itself cannot be sent to: retrying will not help
            return _Outcome(False, False, type(exc).__name__)
        took = f"{(time.monotonic() - started) * 1000:.0f} ms"
        status = response.status_code
        if 200 <= status < 300:
            return _Outcome(True, False, f"HTTP {status} in {took}")
        wait = retry_after_seconds(response.headers.get("retry-after"))
        return _Outcome(False, True, f"HTTP {status} in {took}", wait)

    async def _record(self, key: str, result: str) -> None:
        if self.store is None:
            return
        try:
            await asyncio.to_thread(self.store.webhooks.record_result, key, result, time.time())
        except Exception as exc:  # the store may be busy or gone: the delivery itself is done
            logger.debug("could not record webhook %s's last result: %s", key, exc)

    # -- what the console does ----------------------------------------------------------------------------

    def configured(self) -> list[Configured]:
        """The ``--notify`` webhooks, then the console's."""
        out = []
        for t in self._flag_targets:
            result, at = self._flag_results.get(t.key, (None, None))
            out.append(Configured(t.key, shown_url(t.url), t.events, bool(t.secret), t.slack, False, result, at))
        for w in self.store.webhooks.list_webhooks() if self.store is not None else []:
            slack, signed = from_webhook(w).slack, bool(w.secret)
            out.append(
                Configured(w.id, shown_url(w.url), w.events, signed, slack, True, w.last_result, w.last_result_at)
            )
        return out

    def add_webhook(self, url: str, secret: str, events: Iterable[str]) -> Webhook:
        """Store a webhook (every replica sends to it from its next event on); ValueError for bad input."""
        if self.store is None:
            raise ValueError("this server keeps no webhooks of its own: give them with --notify")
        if len(secret) > MAX_SECRET_CHARS:
            raise ValueError(f"the secret is longer than {MAX_SECRET_CHARS} characters")
        if any(not c.isprintable() for c in secret):
            raise ValueError("the secret must be printable text")
        webhook = Webhook.new(check_url(url), secret, check_events(events))
        self.store.webhooks.add_webhook(webhook)
        return webhook

    def delete_webhook(self, key: str) -> bool:
        if self.store is None or not key.startswith("wh_"):
            raise ValueError("only webhooks added in the console can be deleted here; --notify ones with the flag")
        return self.store.webhooks.delete_webhook(key)

    def send_test(self, key: str) -> str:
        """Send one made-up event (the webhook's first selected type) now, once; what the receiver answered."""
        target = next((t for t in self.targets() if t.key == key), None)
        if target is None:
            raise LookupError(f"no webhook {key}")
        if self._loop is None or self._closing.is_set():
            raise RuntimeError("the notifier is not running")
        event_type = target.events[0] if target.events else EVENT_TYPES[0]
        payload = payloads.test_event(event_type)
        if target.slack:
            body = dumps(slack_payload(event_type, payloads.sample_incident(), payloads.sample_anomaly(), test=True))
        else:
            body = dumps(payload)
        delivery = _Delivery(target, str(payload["id"]), event_type, body)
        outcome: _Outcome = self._call(self._attempt(delivery), self.timeout + 5.0)
        result = f"test {event_type}: {'delivered, ' if outcome.ok else 'failed, '}{outcome.result}"
        if target.stored and self.store is not None:
            self.store.webhooks.record_result(key, result, time.time())
        else:
            self._flag_results[key] = (result, time.time())
        return result
