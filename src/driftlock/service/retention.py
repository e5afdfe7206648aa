"""Retention: what is older than ``driftlock serve --retention`` is deleted, in the background.

Every process of ``driftlock serve`` runs a :class:`Retention` thread; at each sweep the store lets one
process at a time go on (SQLite: a file lock beside the database; PostgreSQL: an advisory lock held by
one replica's connection), and the others skip that sweep. The store deletes in transactions of a
bounded number of rows (:meth:`~driftlock.service.store.Store.expire`), so calls are never held up by a
long delete, and an idle stream is deleted under its own lock, so no call is between its read and its
commit. A stream's profile may set its own ``retention_seconds``: its rows and its idleness are judged by
that instead (longer or shorter), and with ``--retention forever`` only such streams are swept. A sweep that
fails (the database is down) is logged and tried again at the next one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from driftlock.service.store import Store

__all__ = ["Retention", "sweep_interval"]

logger = logging.getLogger("driftlock.server")


FOREVER_SWEEP = 1200.0
"""With ``--retention forever``, sweep as for 20 minutes' retention (every minute): streams with their own
``retention_seconds`` (at least 60) are still swept."""


def sweep_interval(retention: float) -> float:
    """A twentieth of the retention, from 1 s to 5 min: rows live at most about 5% past it."""
    return min(300.0, max(1.0, retention / 20))


class Retention:
    def __init__(
        self,
        store: Store,
        retention: float | None,
        *,
        interval: float | None = None,
        batch: int = 500,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.retention = retention
        # forever: only streams with their own retention (at least a minute) are swept
        self.interval = interval if interval is not None else sweep_interval(retention or FOREVER_SWEEP)
        self.batch = batch
        self.clock = clock
        self.sweeps = 0  # sweeps this process ran (others' are skipped)
        self.deleted: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep(self) -> dict[str, int] | None:
        """One sweep now: the counts deleted, or None when another process is sweeping."""
        now = self.clock()
        before = None if self.retention is None else now - self.retention
        counts = self.store.expire(before, batch=self.batch, now=now)
        if counts is not None:
            self.sweeps += 1
            for what, n in counts.items():
                self.deleted[what] = self.deleted.get(what, 0) + n
            if any(counts.values()):
                logger.info("retention: deleted %s", ", ".join(f"{n} {what}" for what, n in counts.items() if n))
        return counts

    def start(self) -> Retention:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="driftlock-retention", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sweep()
            except Exception as exc:  # the database is down or busy: the next sweep tries again
                logger.warning("retention sweep failed (%s: %s); trying again in %.0f s", type(exc).__name__, exc,
                               self.interval)  # fmt: skip
