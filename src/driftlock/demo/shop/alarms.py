"""What the shop's processes are told: each worker's ON_ANOMALY writes one JSON line per incident.

``driftlock demo`` names the file in DRIFTLOCK_DEMO_ALARMS and scores exactly these lines, so its
figures are what a deployed application hears, from however many worker processes.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from driftlock.anomalies import SpanDetails
from driftlock.models import Anomaly


def record(anomaly: Anomaly, span: SpanDetails) -> None:
    path = os.environ.get("DRIFTLOCK_DEMO_ALARMS")
    if not path:
        return
    incident: dict[str, Any] = anomaly.raw.get("incident") or {}
    line = {
        "pid": os.getpid(),
        "told_at": time.time(),
        "incident_id": incident.get("id"),
        "anomaly_id": anomaly.id,
        "stream_id": span.stream_id,
        "at": span.event.get("timestamp"),
        "trace_id": span.trace_id,
        "why": anomaly.why,
        "explanation": anomaly.raw.get("explanation") or {},
        "ncd": anomaly.metrics.ncd,
        "p_value": anomaly.metrics.p_value,
        "confidence": anomaly.metrics.confidence_level,
    }
    data = (json.dumps(line, default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)  # one write per line: lines never interleave
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
