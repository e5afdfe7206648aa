"""Opt-in client metrics in Prometheus: ``DriftlockClient(..., metrics=True)`` (or a ``CollectorRegistry``).

Off by default, and then ``prometheus_client`` is never imported. When on, every API call counts in

- ``driftlock_client_requests_total{operation}``: calls made (one per call, whatever its retries),
- ``driftlock_client_errors_total{operation, error}``: calls that failed, by error type,
- ``driftlock_client_retries_total{operation, reason}``: retries, by what caused them (the HTTP status or
  ``network``),
- ``driftlock_client_request_duration_seconds{operation}``: how long calls took, retries included,

where ``operation`` is the method and the path template (``POST /v1/detect``, ``GET /v1/anomalies/{id}``),
so ids never become labels. Every client on one registry shares the same four families.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

from driftlock import _protocol as protocol
from driftlock.exceptions import (
    DriftlockAuthenticationError,
    DriftlockError,
    DriftlockNetworkError,
    DriftlockRateLimitError,
    DriftlockValidationError,
)
from driftlock.registry import REGISTRY

__all__ = ["ClientMetrics", "error_kind", "metrics_for", "operation_label"]

_COLLECTIONS = frozenset({"anomalies", "exports", "streams", "incidents"})
_LITERALS = frozenset({"export"})  # /v1/anomalies/export is a route, not an anomaly id


def operation_label(method: str, path: str) -> str:
    """``GET /v1/anomalies/{id}`` for ``GET /v1/anomalies/3f2a...``: ids replaced by ``{id}`` (pure)."""
    parts = path.split("?", 1)[0].split("/")
    shown = [
        "{id}" if i > 0 and parts[i - 1] in _COLLECTIONS and part and part not in _LITERALS else part
        for i, part in enumerate(parts)
    ]
    return f"{method} {'/'.join(shown)}"


def error_kind(error: DriftlockError) -> str:
    """The ``error`` label of a failed call."""
    if isinstance(error, DriftlockAuthenticationError):
        return "authentication"
    if isinstance(error, DriftlockRateLimitError):
        return "rate_limit"
    if isinstance(error, DriftlockValidationError):
        return "validation"
    if isinstance(error, DriftlockNetworkError):
        return "deadline" if error.code == "deadline_exceeded" else "network"
    if error.code == "invalid_response":
        return "invalid_response"
    return "server" if error.status is not None and error.status >= 500 else "api"


class ClientMetrics:
    """The four metric families on one registry. Thread-safe (prometheus_client's metrics are)."""

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Histogram

        self.requests = Counter(
            "driftlock_client_requests", "Driftlock API calls made by this process", ["operation"], registry=registry
        )
        self.errors = Counter(
            "driftlock_client_errors",
            "Driftlock API calls that failed, by error type",
            ["operation", "error"],
            registry=registry,
        )
        self.retries = Counter(
            "driftlock_client_retries", "Driftlock API retries, by cause", ["operation", "reason"], registry=registry
        )
        self.duration = Histogram(
            "driftlock_client_request_duration_seconds",
            "Driftlock API call duration, retries included",
            ["operation"],
            registry=registry,
        )

    def observe(self, flow: protocol.Flow, operation: str) -> protocol.Flow:
        """``flow`` unchanged, counted: the call, each retry and its cause, the error if any, the duration."""
        self.requests.labels(operation).inc()
        started = time.perf_counter()
        sent = False
        last: Any = None
        try:
            action = next(flow)
            while True:
                if isinstance(action, protocol.Send):
                    if sent:
                        reason = str(last.status) if isinstance(last, protocol.Response) else "network"
                        self.retries.labels(operation, reason).inc()
                    sent = True
                outcome = yield action
                if isinstance(action, protocol.Send):
                    last = outcome
                action = flow.send(outcome)
        except StopIteration as stop:
            return stop.value
        except DriftlockError as exc:
            self.errors.labels(operation, error_kind(exc)).inc()
            raise
        finally:
            self.duration.labels(operation).observe(time.perf_counter() - started)


def _by_registry() -> weakref.WeakKeyDictionary[Any, ClientMetrics]:
    """Each Prometheus registry's families, made once (under ``REGISTRY.lock``) and shared by its clients."""
    made: weakref.WeakKeyDictionary[Any, ClientMetrics] = REGISTRY.slot("client.metrics", weakref.WeakKeyDictionary)
    return made


def metrics_for(option: Any) -> ClientMetrics | None:
    """The client's ``metrics=`` option: False/None (off), True (the default registry) or a ``CollectorRegistry``."""
    if option is None or option is False:
        return None
    try:
        import prometheus_client
    except ImportError:
        raise ModuleNotFoundError(
            "Driftlock client metrics need prometheus_client, which is not installed: pip install 'driftlock[metrics]'",
            name="prometheus_client",
        ) from None
    registry = prometheus_client.REGISTRY if option is True else option
    if not isinstance(registry, prometheus_client.CollectorRegistry):
        raise TypeError(f"metrics= takes True, False or a prometheus_client CollectorRegistry, not {option!r}")
    with REGISTRY.lock:
        made = _by_registry()
        found = made.get(registry)
        if found is None:
            found = made[registry] = ClientMetrics(registry)
        return found
