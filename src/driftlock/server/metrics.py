"""``/metrics`` of ``driftlock serve``: Prometheus exposition through ``prometheus_client``.

One :class:`Metrics` per app owns its own registry (never the global one, so two apps in one process, as in
tests, do not collide). Every series is an aggregate: stream ids are chosen by clients and unbounded, so
they never become label values.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["COUNTERS", "LATENCY_BUCKETS", "Metrics"]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Seconds; the detection-latency histogram's upper bounds (``+Inf`` is added)."""

NotifierStats = Callable[[], Mapping[str, int]]
"""A function returning the notifier's counters: ``sent``, ``failed``, ``retried``, ``dropped``, ``queued``."""


class _NotifierCollector:
    """Reads the notifier's own counters at scrape time, so the notifier needs no Prometheus import."""

    def __init__(self, stats: NotifierStats) -> None:
        self._stats = stats

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        stats = self._stats()
        for key, name, doc in (
            ("sent", "driftlock_notifications_sent", "Webhook notifications delivered (a 2xx answer)."),
            ("failed", "driftlock_notifications_failed", "Webhook notifications given up after their last attempt."),
            ("retried", "driftlock_notification_retries", "Webhook delivery attempts that failed and were retried."),
            ("dropped", "driftlock_notifications_dropped", "Webhook notifications dropped because the queue was full."),
        ):
            family = CounterMetricFamily(name, doc)
            family.add_metric([], stats.get(key, 0))
            yield family
        queued = GaugeMetricFamily("driftlock_notifications_queued", "Webhook notifications waiting to be sent.")
        queued.add_metric([], stats.get("queued", 0))
        yield queued


class _GaugeCollector:
    def __init__(self, name: str, documentation: str, value: Callable[[], float]) -> None:
        self._name, self._doc, self._value = name, documentation, value

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        try:
            value = float(self._value())
        except Exception:  # a scrape must not fail because one source is unavailable
            return
        family = GaugeMetricFamily(self._name, self._doc)
        family.add_metric([], value)
        yield family


COUNTERS = (
    ("events", "driftlock_events_processed", "Events received for detection."),
    ("anomalies", "driftlock_anomalies_detected", "Anomalies found."),
    ("detect_calls", "driftlock_detect_requests", "Detect calls answered (API and OTLP)."),
    ("incidents_opened", "driftlock_incidents_opened", "Incidents opened."),
    ("incidents_updated", "driftlock_incidents_updated", "Open incidents whose evidence changed."),
    ("incidents_resolved", "driftlock_incidents_resolved", "Incidents resolved."),
)
"""(key in the totals, metric name without ``_total``, help)."""
SERVICE_TOTALS = frozenset({"events", "anomalies", "detect_calls"})
"""The keys read from the service's ``totals``; incidents are counted here, by :meth:`Metrics.on_incident`."""


class _TotalsCollector:
    def __init__(self, totals: Callable[[], Mapping[str, int]], own: Callable[[], Mapping[str, int]]) -> None:
        self._totals, self._own = totals, own

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        totals = {**self._own(), **{k: v for k, v in self._totals().items() if k in SERVICE_TOTALS}}
        for key, name, doc in COUNTERS:
            family = CounterMetricFamily(name, doc)
            family.add_metric([], totals.get(key, 0))
            yield family


class Metrics:
    """The app's metrics, in a registry of its own; ``render()`` gives the exposition.

    Events, anomalies and detect calls are read at scrape time from ``totals`` (the detection service's own
    ``service.totals``, the one source of truth) when given; without it they count what :meth:`observe_detect`
    is told. Incidents opened and resolved are counted by :meth:`on_incident`, a detection-service listener
    (``service.add_listener(metrics.on_incident)``). The detection-latency histogram is fed by
    :meth:`observe_detect`, which the HTTP layer calls once per detect call (API and OTLP).
    """

    def __init__(self, totals: Callable[[], Mapping[str, int]] | None = None, *, process: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._lock = threading.Lock()
        self._counts = {key: 0 for key, _, _ in COUNTERS}
        self._own_totals = totals is None
        self.registry.register(_TotalsCollector(totals or self._snapshot, self._snapshot))
        self.detection_seconds = Histogram(
            "driftlock_detection_seconds",
            "Time to answer one detect call, seconds.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.console_sign_in_failures = Counter(
            "driftlock_console_sign_in_failures", "Console sign-ins refused (wrong key).", registry=self.registry
        )
        self.auth_failures = Counter(
            "driftlock_auth_failures",
            "API requests refused for their key, by reason: missing, invalid, throttled, scope (never by key).",
            ["reason"],
            registry=self.registry,
        )
        for reason in ("missing", "invalid", "throttled", "scope"):
            self.auth_failures.labels(reason)
        if process:
            ProcessCollector(registry=self.registry)
        self._notifier = False

    def _snapshot(self) -> Mapping[str, int]:
        with self._lock:
            return dict(self._counts)

    def _add(self, key: str, n: int) -> None:
        if (self._own_totals or key not in SERVICE_TOTALS) and n:
            with self._lock:
                self._counts[key] += n

    def observe_detect(self, seconds: float, *, events: int = 0, anomalies: int = 0) -> None:
        """One detect call answered in ``seconds``."""
        self.detection_seconds.observe(seconds)
        self._add("detect_calls", 1)
        self._add("events", events)
        self._add("anomalies", anomalies)

    def on_incident(self, kind: str, incident: Mapping[str, Any]) -> None:
        """A detection-service listener: counts incidents opened, updated and resolved."""
        if kind in ("opened", "updated", "resolved"):
            self._add(f"incidents_{kind}", 1)

    def add_notifier(self, stats: NotifierStats) -> None:
        """Expose a notifier's counters (``Notifier.stats``); at most one notifier per registry."""
        with self._lock:
            if self._notifier:
                raise ValueError("a notifier is already registered with these metrics")
            self._notifier = True
        self.registry.register(_NotifierCollector(stats))

    def add_gauge(self, name: str, documentation: str, value: Callable[[], float]) -> None:
        """An aggregate gauge read at scrape time (e.g. the number of streams, open incidents)."""
        self.registry.register(_GaugeCollector(name, documentation, value))

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
