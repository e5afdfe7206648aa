"""``driftlock.configure()``: idempotent programmatic set-up of tracing with the Driftlock exporter."""

from __future__ import annotations

import os
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from driftlock.config import Config
from driftlock.exporter import DriftlockBatchSpanProcessor, DriftlockSpanExporter, live_exporters
from driftlock.registry import REGISTRY

__all__ = ["configure", "sdk_disabled"]

DEFAULT_SCHEDULE_DELAY_MS = 1000
"""Fresher than the SDK's 5 s default: an anomaly is worth knowing within seconds."""


def sdk_disabled() -> bool:
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def _env_selects_driftlock() -> bool:
    names = os.environ.get("OTEL_TRACES_EXPORTER", "")
    return "driftlock" in [n.strip() for n in names.split(",")]


def configure(config: Config | None = None, **options: Any) -> DriftlockSpanExporter | None:
    """Make sure spans reach Driftlock exactly once, and return the exporter doing it.

    Creates the SDK tracer provider when none is set, or joins the one that exists; adds one batch
    processor (ASYNC_MODE, the default) or one simple processor. Calling it again only updates the
    settings. When ``OTEL_TRACES_EXPORTER=driftlock`` already put an exporter in place (for example
    under ``opentelemetry-instrument``), that exporter adopts these settings and nothing is added.
    Returns None when driftlock (ENABLED) or the OpenTelemetry SDK (OTEL_SDK_DISABLED) is off.
    """
    config = config.replace(**options) if config is not None and options else config or Config.resolve(**options)
    if not config.enabled or sdk_disabled():
        return None
    installed: dict[int, DriftlockSpanExporter] = REGISTRY.slot("configure", dict)  # by tracer provider
    with REGISTRY.lock:
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            trace.set_tracer_provider(TracerProvider(resource=Resource.create()))
            provider = trace.get_tracer_provider()
            if not isinstance(provider, TracerProvider):  # pragma: no cover - another SDK won the race
                return None
        existing = installed.get(id(provider))
        if existing is not None:
            existing.configure(config)
            return existing
        if _env_selects_driftlock():
            from_env = [e for e in live_exporters() if e.from_environment]
            if from_env:
                for exporter in from_env:
                    exporter.configure(config)
                installed[id(provider)] = from_env[0]
                return from_env[0]
        exporter = DriftlockSpanExporter(config)
        if config.async_mode:
            delay = None if os.environ.get("OTEL_BSP_SCHEDULE_DELAY") else DEFAULT_SCHEDULE_DELAY_MS
            provider.add_span_processor(DriftlockBatchSpanProcessor(exporter, schedule_delay_millis=delay))
        else:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        installed[id(provider)] = exporter
        return exporter
