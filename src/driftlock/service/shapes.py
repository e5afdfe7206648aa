"""The JSON shapes of the API's answers, made from what the store keeps (one home for each)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

__all__ = ["anomaly_detail", "anomaly_summary", "go_duration", "incident_mark", "incident_view", "iso"]


def iso(ts: float | None) -> str | None:
    """Epoch seconds as ISO-8601 UTC with milliseconds (``2025-01-01T00:00:00.000Z``)."""
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def go_duration(seconds: float) -> str:
    """Format like Go's time.Duration: ``850µs``, ``1.234ms``, ``2.5s``."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f}µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3f}".rstrip("0").rstrip(".") + "ms"
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"


def anomaly_summary(record: Mapping[str, Any]) -> dict[str, Any]:
    """An anomaly as ``GET /v1/anomalies`` lists it."""
    m = record["metrics"]
    return {
        "id": record["id"],
        "stream_id": record["stream_id"],
        "ncd": m["ncd"],
        "compression_ratio": m["window_compression_ratio"],
        "entropy_change": m["entropy_change"],
        "p_value": m["p_value"],
        "confidence": m["confidence_level"],
        "status": record.get("status", "open"),
        "explanation": record["why"],
        "detected_at": record["detected_at"],
        "incident_id": record.get("incident_id"),
    }


def anomaly_detail(record: Mapping[str, Any]) -> dict[str, Any]:
    """An anomaly as ``GET /v1/anomalies/{id}`` shows it."""
    return {
        **anomaly_summary(record),
        "batch_id": record.get("batch_id"),
        "index": record.get("index"),
        "position": record.get("position"),
        "metrics": record["metrics"],
        "event": record.get("event"),
        "why": record["why"],
        "details": record.get("details"),
        "trace_id": record.get("trace_id"),
        "feedback": record.get("feedback", []),
    }


def incident_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """An incident as the API shows it (the stored row less its bookkeeping)."""
    return {
        "id": row["id"],
        "stream_id": row["stream_id"],
        "status": row["status"],
        "opened_at": iso(row["opened_ts"]),
        "last_seen_at": iso(row["last_seen_ts"]),
        "resolved_at": iso(row.get("resolved_ts")),
        "resolution": row.get("resolution"),
        "anomaly_count": row["anomaly_count"],
        "opened_position": row["opened_position"],
        "last_position": row["last_position"],
        "explanation": row.get("explanation") or {},
        "feedback": row.get("feedback", []),
    }


def incident_mark(incident_id: str | None, opened: bool) -> dict[str, Any] | None:
    return None if incident_id is None else {"id": incident_id, "opened": opened}
