"""DriftlockSpanExporter against a real `driftlock serve`, in process and in other processes."""

from __future__ import annotations

import logging
import random
import re
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import driftlock
from driftlock import DriftlockSpanExporter
from driftlock.exporter import DriftlockBatchSpanProcessor
from tests import traffic
from tests.support import INSTRUMENT, FaultServer, Reply, ServerProcess, clean_env, free_port_url, wait_for


def make_spans(bodies: list[dict[str, Any]], service: str = "exp-svc") -> list[ReadableSpan]:
    """Real SDK spans with the attributes the Django instrumentation sets, from traffic bodies."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    for body in bodies:
        route = body["route"]
        attributes = {"http.method": body["method"], "http.status_code": body["status"]}
        if route.startswith("/"):
            attributes["http.target"] = route
        else:
            attributes["http.route"] = route
            attributes["http.target"] = "/" + route
        with tracer.start_as_current_span(f"{body['method']} {route}", kind=SpanKind.SERVER, attributes=attributes):
            pass
    return list(memory.get_finished_spans())


def test_sdk_spans_arrive_as_events(server: ServerProcess) -> None:
    exporter = DriftlockSpanExporter(base_url=server.url, stream_id="exp-inproc")
    spans = make_spans(
        [
            {"method": "GET", "route": "items/<int:id>/", "status": 200},
            {"method": "POST", "route": "/wp-login.php", "status": 404},
        ]
    )
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    events = server.get("/v1/streams/exp-inproc/events").json()["events"]
    assert [(e["body"]["method"], e["body"]["route"], e["body"]["status"]) for e in events] == [
        ("GET", "items/<int:id>/", 200),
        ("POST", "/wp-login.php", 404),
    ]
    assert events[0]["attributes"] == {"service": "exp-svc"} and exporter.exported_events == 2


def test_anomalies_reach_log_callback_and_handlers(server: ServerProcess, caplog: pytest.LogCaptureFixture) -> None:
    rng = random.Random(2)
    bodies = [traffic.normal(rng)["body"] for _ in range(460)] + [traffic.scanner(rng)["body"] for _ in range(30)]
    spans = make_spans(bodies)
    seen: list[tuple[Any, Any]] = []
    handled: list[Any] = []

    def broken(anomaly: Any, span: Any) -> None:
        raise RuntimeError("handler bug")

    def handle(anomaly: Any, span: Any) -> None:
        handled.append(anomaly)

    driftlock.add_anomaly_handler(broken)
    driftlock.add_anomaly_handler(handle)
    try:
        exporter = DriftlockSpanExporter(
            base_url=server.url, stream_id="exp-anomalies", on_anomaly=lambda a, s: seen.append((a, s))
        )
        with caplog.at_level(logging.WARNING):
            assert exporter.export(spans) is SpanExportResult.SUCCESS
    finally:
        driftlock.remove_anomaly_handler(broken)
        driftlock.remove_anomaly_handler(handle)
    assert seen and len(handled) == len(seen)
    anomaly, details = seen[0]
    trace_ids = {format(s.context.trace_id, "032x"): s for s in spans}
    assert details.trace_id in trace_ids and details.stream_id == "exp-anomalies"
    assert details.event == {**details.event, "type": "trace"} and anomaly.index >= 460
    assert trace_ids[details.trace_id] is spans[anomaly.index]
    records = [r for r in caplog.records if r.name == "driftlock.anomalies"]
    assert records and records[0].levelno == logging.WARNING
    assert "exp-anomalies" in records[0].getMessage() and details.trace_id in records[0].getMessage()
    assert any("handler" in r.getMessage() and r.name == "driftlock.exporter" for r in caplog.records)


def test_handlers_hear_of_an_incident_once_after_it_is_confirmed(server: ServerProcess) -> None:
    rng = random.Random(5)
    bodies = [traffic.normal(rng)["body"] for _ in range(460)] + [traffic.scanner(rng)["body"] for _ in range(30)]
    spans = make_spans(bodies)
    position = {format(s.context.trace_id, "032x"): i for i, s in enumerate(spans)}
    told: list[int] = []
    exporter = DriftlockSpanExporter(
        base_url=server.url, stream_id="exp-incident", on_anomaly=lambda a, s: told.append(position[s.trace_id])
    )
    for start in range(0, len(spans), 40):  # batch after batch, as the batch processor sends them
        assert exporter.export(spans[start : start + 40]) is SpanExportResult.SUCCESS
    detections = server.get("/v1/anomalies", params={"stream_id": "exp-incident"}).json()["total"]
    assert detections >= 3 and len(told) == 1  # every detection is on the server; the application is told once
    eager = DriftlockSpanExporter(base_url=server.url, stream_id="exp-incident-1", confirmations=1)
    first: list[int] = []
    eager.configure(eager.config.replace(on_anomaly=lambda a, s: first.append(position[s.trace_id])))
    for start in range(0, len(spans), 40):
        eager.export(spans[start : start + 40])
    assert len(first) == 1 and 460 <= first[0] < told[0]  # one confirmation: told at the first detection


def test_api_down_fails_within_the_deadline_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    exporter = DriftlockSpanExporter(base_url=free_port_url(), timeout=1.0)
    spans = make_spans([{"method": "GET", "route": "x/", "status": 200}] * 3)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        assert exporter.export(spans) is SpanExportResult.FAILURE
        assert exporter.export(spans) is SpanExportResult.FAILURE
    assert time.monotonic() - started < 2 * 1.0 + 0.5
    assert exporter.dropped_events == 6
    assert len([r for r in caplog.records if "dropped" in r.getMessage()]) == 1  # at most once a minute
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="driftlock.exporter"):
        exporter.shutdown()
    assert time.monotonic() - started < 1.0 + 1.0
    summary = [r for r in caplog.records if "shut down" in r.getMessage()]
    assert [(r.levelno, r.getMessage()) for r in summary] == [
        (logging.WARNING, "Driftlock exporter shut down: 0 events exported, 6 dropped")
    ]  # the loss is said once more at exit, whatever the once-a-minute limit held back
    assert exporter.export(spans) is SpanExportResult.FAILURE


def test_spans_the_full_queue_drops_are_counted_at_shutdown(caplog: pytest.LogCaptureFixture) -> None:
    """The SDK's batch processor drops spans when its queue is full and only logs that; they are
    events lost all the same, and the shutdown summary says so."""
    with FaultServer(default=Reply(delay=0.5)) as api:
        exporter = DriftlockSpanExporter(base_url=api.url, timeout=5.0)
        processor = DriftlockBatchSpanProcessor(
            exporter, max_queue_size=8, max_export_batch_size=4, schedule_delay_millis=10
        )
        provider = TracerProvider(resource=Resource.create({"service.name": "queue"}))
        provider.add_span_processor(processor)
        tracer = provider.get_tracer("opentelemetry.instrumentation.django")

        def requests(count: int) -> None:
            attributes = {"http.method": "GET", "http.route": "x/", "http.status_code": 200}
            for _ in range(count):
                with tracer.start_as_current_span("GET x/", kind=SpanKind.SERVER, attributes=attributes):
                    pass
            with tracer.start_as_current_span("internal work"):  # not an event kind: not counted
                pass

        requests(4)
        wait_for(lambda: len(api.seen) == 1, message="the first batch's request")  # now held for 0.5 s
        requests(40)  # the queue keeps 8 of them
        with caplog.at_level(logging.INFO, logger="driftlock.exporter"):
            provider.shutdown()
    [summary] = [r.getMessage() for r in caplog.records if "shut down" in r.getMessage()]
    found = re.fullmatch(
        r"Driftlock exporter shut down: (\d+) events exported, (\d+) dropped "
        r"\((\d+) never left the span processor's full queue\)",
        summary,
    )
    assert found, summary
    exported, dropped, in_queue = map(int, found.groups())
    assert exported + dropped == 44 and dropped == in_queue >= 30  # 8 queue slots, some held by internal spans
    assert (exported, dropped) == (exporter.exported_events, exporter.dropped_events)


def test_after_a_failure_batches_are_dropped_without_a_try_until_the_pause_ends() -> None:
    limited = Reply(429, {"error": {"code": "rate_limit_exceeded", "message": "slow down"}}, {"Retry-After": "1"})
    with FaultServer(limited, default=Reply()) as fs:
        exporter = DriftlockSpanExporter(base_url=fs.url, max_retries=0, timeout=5.0)
        spans = make_spans([{"method": "GET", "route": "x/", "status": 200}] * 2)
        paused_at = time.monotonic()
        assert exporter.export(spans) is SpanExportResult.FAILURE
        assert exporter.export(spans) is SpanExportResult.FAILURE  # paused: the API is not asked
        assert len(fs.seen) == 1 and exporter.dropped_events == 4
        wait_for(lambda: exporter.export(spans) is SpanExportResult.SUCCESS, timeout=5, interval=0.1)
        assert time.monotonic() - paused_at >= 1.0  # as long as Retry-After said
        assert len(fs.seen) == 2 and exporter.exported_events == 2


def test_exports_after_interpreter_exit_begins_share_one_timeout() -> None:
    with FaultServer(default=Reply(delay=3.0)) as fs:
        exporter = DriftlockSpanExporter(base_url=fs.url, timeout=1.5, max_retries=0)
        spans = make_spans([{"method": "GET", "route": "x/", "status": 200}])
        exporter.begin_closing()  # what the exit hook does
        started = time.monotonic()
        results = [exporter.export(spans) for _ in range(4)]  # the batch processor's final drain
        assert time.monotonic() - started < 1.5 + 1.0
        assert results == [SpanExportResult.FAILURE] * 4 and exporter.dropped_events == 4


def test_the_exit_hook_bounds_a_real_process_exit() -> None:
    script = textwrap.dedent(
        """
        import sys, time
        from opentelemetry import trace
        import driftlock
        driftlock.configure(base_url=sys.argv[1], timeout=2.0, max_retries=0, max_batch_size=512, stream_id="exit")
        tracer = trace.get_tracer("t")
        for i in range(3000):  # more than one batch is queued when the process exits
            with tracer.start_as_current_span("GET", kind=trace.SpanKind.SERVER, attributes={"http.method": "GET"}):
                pass
        print(time.monotonic(), flush=True)  # the exit begins: start-up and imports are behind us
        """
    )
    with FaultServer(default=Reply(delay=1.0)) as fs:  # slow but successful: no pause to help
        result = subprocess.run([sys.executable, "-c", script, fs.url], capture_output=True, text=True, timeout=60)
        ended = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process of the machine
    assert result.returncode == 0, result.stderr
    took = ended - float(result.stdout.split()[-1])
    assert took < 2.0 + 0.75, f"exit took {took:.1f}s"  # one TIMEOUT for the drain (not 4 x 1 s)
    assert re.search(r"Driftlock exporter shut down: \d+ events exported, [1-9]\d* dropped", result.stderr)


def test_shutdown_interrupts_backoff() -> None:
    with FaultServer(
        default=Reply(503, {"error": {"code": "service_unavailable", "message": "down"}}, {"Retry-After": "5"})
    ) as fs:
        exporter = DriftlockSpanExporter(base_url=fs.url, timeout=20.0, max_retries=5)
        spans = make_spans([{"method": "GET", "route": "x/", "status": 200}])
        results: list[SpanExportResult] = []
        worker = threading.Thread(target=lambda: results.append(exporter.export(spans)))
        worker.start()
        wait_for(lambda: fs.seen, message="first attempt")
        started = time.monotonic()
        exporter.shutdown(timeout_millis=1000)
        worker.join(5)
        assert not worker.is_alive() and time.monotonic() - started < 1.5
    assert results == [SpanExportResult.FAILURE] and exporter.dropped_events == 1


def test_force_flush_returns_at_once() -> None:
    exporter = DriftlockSpanExporter(base_url=free_port_url())
    assert exporter.force_flush(timeout_millis=10) is True


def test_built_without_arguments_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLOCK_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("DRIFTLOCK_STREAM_ID", "env-stream")
    exporter = DriftlockSpanExporter()
    assert exporter.from_environment
    assert exporter.config.base_url == "http://127.0.0.1:9" and exporter.config.stream_id == "env-stream"


def test_entry_point_is_registered() -> None:
    from importlib.metadata import entry_points

    (ep,) = entry_points(group="opentelemetry_traces_exporter", name="driftlock")
    assert ep.load() is DriftlockSpanExporter


PLAIN_SERVICE = textwrap.dedent(
    """
    import sys
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind
    configure = len(sys.argv) > 1 and sys.argv[1] == "configure"
    if configure:
        import driftlock
        driftlock.configure(stream_id="both")
        driftlock.configure(stream_id="both")
    tracer = trace.get_tracer("plain")
    for i in range(7):
        attrs = {"http.request.method": "GET", "http.route": "/items/{id}", "http.response.status_code": 200,
                 "url.path": f"/items/{i}"}
        with tracer.start_as_current_span("GET /items/{id}", kind=SpanKind.SERVER, attributes=attrs):
            pass
    """
)


def run_script(script: str, *args: str, instrument: bool = False, **env: str) -> None:
    cmd = [sys.executable, "-c", script, *args]
    if instrument:
        cmd = [*INSTRUMENT, *cmd]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=clean_env(**env))
    assert result.returncode == 0, result.stdout + result.stderr


def test_opentelemetry_instrument_with_the_driftlock_exporter(server: ServerProcess) -> None:
    run_script(PLAIN_SERVICE, instrument=True, DRIFTLOCK_BASE_URL=server.url, OTEL_SERVICE_NAME="plain-svc")
    events = wait_for(lambda: server.get("/v1/streams/plain-svc/events").json().get("events"), message="events")
    assert len(events) == 7 and events[0]["body"]["route"] == "/items/{id}"


def test_configure_together_with_otel_traces_exporter_sends_each_span_once(server: ServerProcess) -> None:
    run_script(PLAIN_SERVICE, "configure", instrument=True, DRIFTLOCK_BASE_URL=server.url)
    assert server.get("/v1/streams/both").json()["events_ingested"] == 7


CONFIGURE_TWICE = textwrap.dedent(
    """
    import sys, driftlock
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind
    first = driftlock.configure(base_url=sys.argv[1], stream_id="twice")
    second = driftlock.configure(base_url=sys.argv[1], stream_id="twice")
    assert first is second
    tracer = trace.get_tracer("t")
    for i in range(5):
        with tracer.start_as_current_span("GET", kind=SpanKind.SERVER,
                                          attributes={"http.method": "GET", "http.route": "a/", "http.status_code": 200}):
            pass
    trace.get_tracer_provider().shutdown()
    """
)


def test_configure_twice_sends_each_span_once(server: ServerProcess) -> None:
    run_script(CONFIGURE_TWICE, server.url)
    assert server.get("/v1/streams/twice").json()["events_ingested"] == 5


FORKED = textwrap.dedent(
    """
    import os, sys, driftlock
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind
    exporter = driftlock.configure(base_url=sys.argv[1], stream_id="fork-parent")
    tracer = trace.get_tracer("t")
    def request(stream):
        attrs = {"http.method": "GET", "http.route": "a/", "http.status_code": 200, "driftlock.stream_id": stream}
        with tracer.start_as_current_span("GET", kind=SpanKind.SERVER, attributes=attrs):
            pass
    request("fork-parent")
    trace.get_tracer_provider().force_flush()
    assert exporter._client is not None  # the HTTP client exists before fork()
    pid = os.fork()
    if pid == 0:
        for _ in range(4):
            request("fork-child")
        trace.get_tracer_provider().force_flush()
        os._exit(0 if exporter.exported_events == 1 + 4 else 3)  # counters are inherited
    _, status = os.waitpid(pid, 0)
    trace.get_tracer_provider().shutdown()
    sys.exit(os.waitstatus_to_exitcode(status))
    """
)


def test_a_process_forked_after_setup_exports_from_the_child(server: ServerProcess) -> None:
    run_script(FORKED, server.url)
    assert server.get("/v1/streams/fork-child").json()["events_ingested"] == 4
    assert server.get("/v1/streams/fork-parent").json()["events_ingested"] == 1


SHUTDOWN_DOWN = textwrap.dedent(
    """
    import sys, time, driftlock
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind
    driftlock.configure(base_url=sys.argv[1], timeout=2.0)
    tracer = trace.get_tracer("t")
    with tracer.start_as_current_span("GET", kind=SpanKind.SERVER, attributes={"http.method": "GET"}):
        pass
    started = time.monotonic()
    trace.get_tracer_provider().shutdown()
    print(round(time.monotonic() - started, 3))
    """
)


def test_shutdown_with_the_api_down_finishes_within_timeout_plus_one_second() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SHUTDOWN_DOWN, free_port_url()],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    assert result.returncode == 0, result.stderr
    assert float(result.stdout.strip().splitlines()[-1]) < 2.0 + 1.0
