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

__all__ = ["LATENCY_BUCKETS", "Metrics"]

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


class Metrics:
    """The app's counters and histogram, in a registry of its own; ``render()`` gives the exposition.

    The HTTP layer calls :meth:`observe_detect` once per detect call (API or OTLP); :meth:`on_incident` is a
    detection-service listener (``service.add_listener(metrics.on_incident)``).
    """

    def __init__(self, *, process: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.events = Counter("driftlock_events_processed", "Events received for detection.", registry=self.registry)
        self.anomalies = Counter("driftlock_anomalies_detected", "Anomalies found.", registry=self.registry)
        self.detect_requests = Counter(
            "driftlock_detect_requests", "Detect calls answered (API and OTLP).", registry=self.registry
        )
        self.detect_errors = Counter(
            "driftlock_detect_errors", "Detect calls refused with an API error.", registry=self.registry
        )
        self.incidents_opened = Counter("driftlock_incidents_opened", "Incidents opened.", registry=self.registry)
        self.incidents_resolved = Counter("driftlock_incidents_resolved", "Incidents resolved.", registry=self.registry)
        self.detection_seconds = Histogram(
            "driftlock_detection_seconds",
            "Time to answer one detect call, seconds.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.console_sign_in_failures = Counter(
            "driftlock_console_sign_in_failures", "Console sign-ins refused (wrong key).", registry=self.registry
        )
        if process:
            ProcessCollector(registry=self.registry)
        self._lock = threading.Lock()
        self._notifiers: list[object] = []

    def observe_detect(self, seconds: float, *, events: int, anomalies: int) -> None:
        self.detect_requests.inc()
        self.detection_seconds.observe(seconds)
        if events:
            self.events.inc(events)
        if anomalies:
            self.anomalies.inc(anomalies)

    def observe_error(self) -> None:
        self.detect_errors.inc()

    def on_incident(self, kind: str, incident: Mapping[str, Any]) -> None:
        """A detection-service listener: counts incidents opened and resolved."""
        if kind == "opened":
            self.incidents_opened.inc()
        elif kind == "resolved":
            self.incidents_resolved.inc()

    def add_notifier(self, stats: NotifierStats) -> None:
        """Expose a notifier's counters (``Notifier.stats``); at most one notifier per registry."""
        with self._lock:
            if self._notifiers:
                raise ValueError("a notifier is already registered with these metrics")
            collector = _NotifierCollector(stats)
            self._notifiers.append(collector)
            self.registry.register(collector)

    def add_gauge(self, name: str, documentation: str, value: Callable[[], float]) -> None:
        """An aggregate gauge read at scrape time (e.g. the number of streams, open incidents)."""
        self.registry.register(_GaugeCollector(name, documentation, value))

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
