"""`/metrics` through prometheus_client: an app-owned registry, aggregate series only, process metrics."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from driftlock.server.metrics import LATENCY_BUCKETS, Metrics
from tests import traffic
from tests.support import running_server


def families(metrics: Metrics) -> dict[str, object]:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain; version=")
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, _ = metrics.render()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(body.decode())
        for s in f.samples
    }


def test_counters_histogram_and_incidents() -> None:
    metrics = Metrics()
    metrics.observe_detect(0.003, events=480, anomalies=2)
    metrics.observe_detect(0.2, events=20, anomalies=0)
    metrics.on_incident("opened", {"id": "a"})
    metrics.on_incident("opened", {"id": "b"})
    metrics.on_incident("resolved", {"id": "a"})
    metrics.on_incident("changed", {"id": "a"})
    seen = samples(metrics)
    assert seen[("driftlock_events_processed_total", ())] == 500
    assert seen[("driftlock_anomalies_detected_total", ())] == 2
    assert seen[("driftlock_detect_requests_total", ())] == 2
    assert seen[("driftlock_incidents_opened_total", ())] == 2
    assert seen[("driftlock_incidents_resolved_total", ())] == 1
    assert seen[("driftlock_detection_seconds_count", ())] == 2
    assert abs(seen[("driftlock_detection_seconds_sum", ())] - 0.203) < 1e-9
    assert seen[("driftlock_detection_seconds_bucket", (("le", "0.005"),))] == 1
    assert seen[("driftlock_detection_seconds_bucket", (("le", "0.25"),))] == 2
    assert seen[("driftlock_detection_seconds_bucket", (("le", "+Inf"),))] == 2
    assert len([k for k in seen if k[0] == "driftlock_detection_seconds_bucket"]) == len(LATENCY_BUCKETS) + 1
    assert seen[("process_resident_memory_bytes", ())] > 0
    # aggregate only: no label but the histogram's own "le" and the fixed reasons of refused keys
    assert {name for key in seen for name, _ in key[1]} <= {"le", "reason"}
    reasons = {value for key in seen for name, value in key[1] if name == "reason"}
    assert reasons == {"missing", "invalid", "throttled", "scope"}


def test_counters_can_come_from_the_services_totals() -> None:
    totals = {"events": 10, "anomalies": 1, "detect_calls": 2, "incidents_opened": 7}
    metrics = Metrics(lambda: totals, process=False)
    metrics.observe_detect(0.01, events=999, anomalies=999)  # the histogram only: totals are the service's
    metrics.on_incident("opened", {"id": "a"})  # incidents are the listener's
    seen = samples(metrics)
    assert seen[("driftlock_events_processed_total", ())] == 10
    assert seen[("driftlock_incidents_opened_total", ())] == 1
    assert seen[("driftlock_detection_seconds_count", ())] == 1
    totals["events"] = 11
    assert samples(metrics)[("driftlock_events_processed_total", ())] == 11


def test_each_app_owns_its_registry_and_gauges_are_read_at_scrape_time() -> None:
    first, second = Metrics(process=False), Metrics(process=False)
    first.observe_detect(0.01, events=5, anomalies=0)
    assert samples(second)[("driftlock_events_processed_total", ())] == 0
    assert "driftlock_events_processed_total" not in {s.name for f in REGISTRY.collect() for s in f.samples}
    streams = [3]
    first.add_gauge("driftlock_streams", "Streams known to the server.", lambda: streams[0])
    first.add_gauge("driftlock_broken", "A source that fails.", lambda: 1 / 0)
    assert samples(first)[("driftlock_streams", ())] == 3
    streams[0] = 4
    assert samples(first)[("driftlock_streams", ())] == 4
    assert ("driftlock_broken", ()) not in samples(first)
    assert "process_cpu_seconds" not in families(first)
    stats = {"sent": 7, "failed": 1, "retried": 2, "dropped": 3, "queued": 4}
    first.add_notifier(lambda: stats)
    seen = samples(first)
    assert seen[("driftlock_notifications_sent_total", ())] == 7
    assert seen[("driftlock_notifications_failed_total", ())] == 1
    assert seen[("driftlock_notification_retries_total", ())] == 2
    assert seen[("driftlock_notifications_dropped_total", ())] == 3
    assert seen[("driftlock_notifications_queued", ())] == 4


def test_driftlock_serve_metrics_are_aggregate(tmp_path: Path) -> None:
    with running_server(tmp_path / "db.sqlite3") as server:
        for stream in ("metrics-a", "metrics-b", "metrics-c"):
            response = server.post("/v1/detect", json={"stream_id": stream, "events": traffic.events(30)})
            assert response.status_code == 200
        response = server.get("/metrics")
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain; version=")
        text = response.text
        assert "metrics-a" not in text and "stream_id" not in text
        seen = {
            s.name: s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if not s.labels or s.labels == {"le": "+Inf"}
        }
        assert seen["driftlock_events_processed_total"] == 90
        assert seen["driftlock_detect_requests_total"] == 3
        assert seen["driftlock_detection_seconds_count"] == 3
        assert seen["driftlock_detection_seconds_bucket"] == 3
        assert seen["driftlock_notifications_sent_total"] == 0  # no webhook yet (the console can add one at any time)
        assert seen["process_resident_memory_bytes"] > 0 and seen["process_open_fds"] > 0
