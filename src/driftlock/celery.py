"""Celery workers: task executions become Driftlock events in their own stream.

    # celery.py of your project, after the app is created
    import driftlock.celery
    driftlock.celery.setup(app)

``setup`` connects to the worker's signals. When the worker starts (``worker_init``, in the main
process, before a prefork pool forks) and in every pool process (``worker_process_init``), it
configures the Driftlock exporter (from the Django ``DRIFTLOCK`` settings when Django is present,
else the environment and the options given) and instruments Celery. Prefork children inherit both;
the batch processor restarts its thread and the client its connections after ``fork()``. When a pool
process ends (``worker_process_shutdown``, sent inside the child before billiard's ``os._exit``,
which skips atexit) and when the worker stops (``worker_shutdown``, for the solo and threads pools),
it flushes within a bounded time, so a ``worker_max_tasks_per_child`` recycle loses no task span.
Under ``opentelemetry-instrument celery worker`` the instrumentation is already there and only the
settings and the flush are added.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace

import driftlock
from driftlock.config import Config
from driftlock.registry import REGISTRY

__all__ = ["FLUSH_TIMEOUT", "flush", "setup"]

logger = logging.getLogger("driftlock.celery")

FLUSH_TIMEOUT = 5.0
"""Seconds a finishing worker process waits for its spans to be exported."""


@dataclass
class _Celery:
    """This process's Celery integration (the registry's slot ``celery``)."""

    options: dict[str, Any] | None = None  # given to setup(); None until it is called
    started: bool = False


def _state() -> _Celery:
    return REGISTRY.slot("celery", _Celery)


def setup(app: Any = None, **options: Any) -> None:
    """Watch this worker's task executions. Idempotent; options are ``driftlock.configure``'s.

    ``app`` is accepted for symmetry with Celery's own integrations; the worker signals are global.
    Options are validated now, so a mistake shows when the worker module is imported.
    """
    from celery import signals

    if options:
        Config.resolve(**options)  # validate now; resolved again in the worker, with Django settings
    state = _state()
    with REGISTRY.lock:
        first = state.options is None
        state.options = dict(options)
    if not first:
        return
    signals.worker_init.connect(_start, weak=False, dispatch_uid="driftlock.worker_init")
    signals.worker_process_init.connect(_start, weak=False, dispatch_uid="driftlock.worker_process_init")
    signals.worker_process_shutdown.connect(_flush, weak=False, dispatch_uid="driftlock.worker_process_shutdown")
    signals.worker_shutdown.connect(_flush, weak=False, dispatch_uid="driftlock.worker_shutdown")


def _start(*args: Any, **kwargs: Any) -> None:
    """Configure the exporter and instrument Celery once; prefork children inherit what the worker's
    main process set up, so for them ``worker_process_init`` finds it done. Never raises into Celery."""
    state = _state()
    with REGISTRY.lock:
        if state.started:
            return
        state.started = True
        options = dict(state.options or {})
    try:
        _load_django_settings()
        driftlock.configure(**options)
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        instrumentor = CeleryInstrumentor()  # type: ignore[no-untyped-call]
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()
    except Exception:
        logger.exception("Driftlock could not set up Celery tracing; tasks run unwatched")


def _flush(*args: Any, **kwargs: Any) -> None:
    flush(FLUSH_TIMEOUT)


def flush(timeout: float = FLUSH_TIMEOUT) -> bool:
    """Export what the span processors hold, waiting at most ``timeout`` seconds.

    The SDK's batch processor ignores ``force_flush``'s timeout and exports in the caller's thread,
    so the flush runs on a daemon thread that is abandoned when the time is up.
    """
    provider = trace.get_tracer_provider()
    force_flush = getattr(provider, "force_flush", None)
    if force_flush is None:
        return True
    done = threading.Event()

    def run() -> None:
        try:
            force_flush(int(timeout * 1000))
        except Exception:
            logger.exception("Driftlock flush failed")
        finally:
            done.set()

    threading.Thread(target=run, name="driftlock-flush", daemon=True).start()
    if not done.wait(timeout):
        logger.warning("Driftlock flush did not finish within %.1f s; unsent task spans are dropped", timeout)
        return False
    return True


def _load_django_settings() -> None:
    """Read Django settings now when the worker runs a Django project, so DRIFTLOCK applies."""
    if not os.environ.get("DJANGO_SETTINGS_MODULE"):
        return
    try:
        from django.conf import settings

        settings.INSTALLED_APPS  # noqa: B018 - configures settings from DJANGO_SETTINGS_MODULE
    except Exception:
        logger.debug("Django settings could not be loaded", exc_info=True)
