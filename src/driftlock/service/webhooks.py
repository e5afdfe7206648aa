"""Webhooks configured in the console, kept in the store so that every process and replica sends to the same ones.

One table, written once for both SQL stores: :class:`SqlWebhooks` runs the same statements over the SQLite
connection or a PostgreSQL pooled one (they differ only in the parameter placeholder, and PostgreSQL takes an
advisory lock while it creates the table, so replicas starting together do not race). The memory store keeps
them in a dict (:class:`MemoryWebhooks`). The table sits outside the stores' schema versions: an older
driftlock opening the database ignores it.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Any, Protocol

__all__ = [
    "DEFAULT_EVENTS",
    "EVENT_TYPES",
    "MAX_WEBHOOKS",
    "MemoryWebhooks",
    "SqlWebhooks",
    "Webhook",
    "WebhookStore",
    "check_events",
]

EVENT_TYPES = ("anomaly.detected", "incident.opened", "incident.updated", "incident.resolved")
"""What a webhook can select. ``anomaly.detected`` is sent once per incident, for the anomaly that opened it."""
DEFAULT_EVENTS = ("anomaly.detected",)
"""What the console's form selects first: the one event Driftlock's webhooks page documents."""
MAX_WEBHOOKS = 20
"""Each webhook has its own queue and sender; a bound keeps both small."""


def check_events(events: Iterable[str]) -> tuple[str, ...]:
    """The events in :data:`EVENT_TYPES` order; ValueError naming an unknown one, or none at all."""
    chosen = {e.strip() for e in events if e.strip()}
    unknown = sorted(chosen - set(EVENT_TYPES))
    if unknown:
        raise ValueError(f"unknown webhook event {unknown[0]!r}: choose from {', '.join(EVENT_TYPES)}")
    if not chosen:
        raise ValueError(f"select at least one webhook event ({', '.join(EVENT_TYPES)})")
    return tuple(e for e in EVENT_TYPES if e in chosen)


@dataclass(frozen=True)
class Webhook:
    """One receiver: where to POST, the secret that signs (empty: unsigned), the events it selects."""

    id: str
    url: str
    secret: str = ""
    events: tuple[str, ...] = DEFAULT_EVENTS
    created_at: float = 0.0
    last_result: str | None = None
    last_result_at: float | None = None

    def __repr__(self) -> str:  # never the secret
        return f"Webhook(id={self.id!r}, events={self.events!r}, signed={bool(self.secret)})"

    @classmethod
    def new(cls, url: str, secret: str, events: Iterable[str]) -> Webhook:
        return cls("wh_" + secrets.token_hex(8), url, secret, check_events(events), time.time())


class WebhookStore(Protocol):
    """What the notifier and the console need of the store's webhooks."""

    def list_webhooks(self) -> list[Webhook]: ...
    def add_webhook(self, webhook: Webhook) -> None: ...
    def delete_webhook(self, webhook_id: str) -> bool: ...
    def record_result(self, webhook_id: str, result: str, at: float) -> None: ...


class MemoryWebhooks:
    """``:memory:``: this process's webhooks only."""

    def __init__(self) -> None:
        self._hooks: dict[str, Webhook] = {}
        self._lock = threading.Lock()

    def list_webhooks(self) -> list[Webhook]:
        with self._lock:
            return sorted(self._hooks.values(), key=lambda w: (w.created_at, w.id))

    def add_webhook(self, webhook: Webhook) -> None:
        with self._lock:
            if len(self._hooks) >= MAX_WEBHOOKS:
                raise ValueError(f"at most {MAX_WEBHOOKS} webhooks: delete one first")
            self._hooks[webhook.id] = webhook

    def delete_webhook(self, webhook_id: str) -> bool:
        with self._lock:
            return self._hooks.pop(webhook_id, None) is not None

    def record_result(self, webhook_id: str, result: str, at: float) -> None:
        with self._lock:
            found = self._hooks.get(webhook_id)
            if found is not None:
                self._hooks[webhook_id] = replace(found, last_result=result[:300], last_result_at=at)


_COLUMNS = "id, url, secret, events, created_at, last_result, last_result_at"
_TABLE = (
    "CREATE TABLE IF NOT EXISTS webhooks (id TEXT PRIMARY KEY, url TEXT NOT NULL, secret TEXT NOT NULL, "
    "events TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL, last_result TEXT, last_result_at DOUBLE PRECISION)"
)


class SqlWebhooks:
    """The ``webhooks`` table over a DB-API connection: ``connection()`` yields one (in a transaction that
    commits on exit, or in autocommit); ``placeholder`` is ``?`` (SQLite) or ``%s`` (PostgreSQL); ``prelude``
    runs before the table is created, in the same transaction (PostgreSQL's advisory lock)."""

    def __init__(
        self,
        connection: Callable[[], AbstractContextManager[Any]],
        placeholder: str,
        prelude: Sequence[str] = (),
    ) -> None:
        self._connection = connection
        self._p = placeholder
        with self._connection() as conn:
            for statement in prelude:
                conn.execute(statement)
            conn.execute(_TABLE)

    def list_webhooks(self) -> list[Webhook]:
        with self._connection() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM webhooks ORDER BY created_at, id").fetchall()
        return [
            Webhook(str(r[0]), str(r[1]), str(r[2]), tuple(json.loads(r[3])), float(r[4]), r[5], r[6]) for r in rows
        ]

    def add_webhook(self, webhook: Webhook) -> None:
        p = self._p
        with self._connection() as conn:
            # one statement: the bound holds however many processes add at once
            added = conn.execute(
                f"INSERT INTO webhooks ({_COLUMNS}) SELECT {p}, {p}, {p}, {p}, {p}, NULL, NULL "
                f"WHERE (SELECT COUNT(*) FROM webhooks) < {p}",
                (
                    webhook.id,
                    webhook.url,
                    webhook.secret,
                    json.dumps(list(webhook.events)),
                    webhook.created_at,
                    MAX_WEBHOOKS,
                ),
            ).rowcount
        if not added:
            raise ValueError(f"at most {MAX_WEBHOOKS} webhooks: delete one first")

    def delete_webhook(self, webhook_id: str) -> bool:
        with self._connection() as conn:
            return bool(conn.execute(f"DELETE FROM webhooks WHERE id = {self._p}", (webhook_id,)).rowcount)

    def record_result(self, webhook_id: str, result: str, at: float) -> None:
        p = self._p
        with self._connection() as conn:
            conn.execute(
                f"UPDATE webhooks SET last_result = {p}, last_result_at = {p} WHERE id = {p}",
                (result[:300], at, webhook_id),
            )
