"""The JSON shapes of the API's answers, made from what the store keeps (one home for each)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from driftlock.service.detection import DemoOutcome, Outcome

__all__ = ["anomaly_detail", "anomaly_summary", "demo_answer", "detect_answer", "go_duration", "incident_view", "iso"]


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
        "updates": [{**u, "at": iso(u["at"])} for u in row.get("updates", [])],
    }


def public_anomaly(record: Mapping[str, Any]) -> dict[str, Any]:
    """An anomaly as the detect answer lists it."""
    return {
        "id": record["id"],
        "index": record["index"],
        "metrics": record["metrics"],
        "event": record["event"],
        "why": record["why"],
        "detected": True,
        "explanation": record["explanation"],
        "incident": record.get("incident"),
    }


def detect_answer(outcome: Outcome, min_baseline_size: int) -> dict[str, Any]:
    """``POST /v1/detect``'s answer (without its ``request_id``)."""
    state, settings = outcome.stream, outcome.settings
    calibrating = state.events_ingested < min_baseline_size
    need = settings.min_events
    ready = len(state.events) >= need
    anomalies = [public_anomaly(a) for a in outcome.anomalies]
    answer: dict[str, Any] = {
        "success": True,
        "stream_id": state.stream_id,
        "total_events": outcome.total_events,
        "anomaly_count": len(anomalies),
        "processing_time": go_duration(outcome.elapsed),
        "compression_algo": settings.compressor,
        "anomalies": anomalies,
        "incidents": [{**incident_view(row), "change": kind} for kind, row in outcome.changes],
        "status": "calibrating" if calibrating else "ready",
        "detection_ready": ready,
    }
    if outcome.drift is not None:
        answer["drift"] = outcome.drift
    if settings.compressor in ("lz4", "openzl"):
        answer["compression_algo"] = "zstd"
        answer["fallback_from_algo"] = settings.compressor
    if not calibrating:
        answer["batch_id"] = outcome.batch_id
    if not ready:
        answer["detection_events_needed"] = need - len(state.events)
        answer["calibration"] = {
            "events_ingested": state.events_ingested,
            "events_needed": max(0, min_baseline_size - state.events_ingested),
            "min_baseline_size": min_baseline_size,
            "progress_percent": min(100, 100 * state.events_ingested // min_baseline_size),
            "detection_ready": ready,
            "detection_events_needed": need - len(state.events),
            "detection_min_events": need,
            "message": f"Collecting a baseline: detection starts after {need} events.",
        }
    return answer


def demo_answer(outcome: DemoOutcome, remaining_calls: int, limit: int, max_events: int) -> dict[str, Any]:
    """``POST /v1/demo/detect``'s answer (without its ``request_id``)."""
    return {
        "success": True,
        "total_events": outcome.total_events,
        "anomaly_count": len(outcome.anomalies),
        "processing_time": go_duration(outcome.elapsed),
        "compression_algo": outcome.settings.compressor,
        "anomalies": [public_anomaly(a) for a in outcome.anomalies],
        "demo": {
            "message": "Demo detection: nothing is stored. Run `driftlock serve` for streams.",
            "remaining_calls": remaining_calls,
            "limit_per_minute": limit,
            "max_events_per_request": max_events,
            "signup_url": "https://driftlock.net",
        },
    }
