"""collector-config/: the files are sound, and what a collector forwards becomes events and anomalies.

The collector binary is not installed here; the end-to-end tests send what it sends: the OpenTelemetry
SDK's standard OTLP/HTTP exporters (protobuf and JSON, gzip on and off), in a separate process, with
the resource and span attributes the configurations add.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.support import ServerProcess, clean_env, wait_for

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "collector-config").glob("*.yaml"))

# Component types of the otelcol-contrib distribution (its builder manifest, v0.136), for the kinds
# these files may reasonably use.
CONTRIB = {
    "receivers": {"otlp", "nop", "filelog", "hostmetrics", "jaeger", "kafka", "prometheus", "zipkin"},
    "processors": {
        "attributes", "batch", "filter", "groupbyattrs", "groupbytrace", "k8sattributes", "memory_limiter",
        "probabilistic_sampler", "redaction", "resource", "resourcedetection", "span", "tail_sampling",
        "transform",
    },
    "exporters": {"debug", "nop", "otlp", "otlphttp", "file", "kafka", "loadbalancing", "zipkin"},
    "extensions": {"health_check", "pprof", "zpages", "headers_setter", "basicauth", "bearertokenauth", "file_storage"},
}  # fmt: skip
SECRET_KEYS = re.compile(r"(api[-_]?key|authorization|token|secret|password)", re.IGNORECASE)
ENV_ONLY = re.compile(r"^\$\{env:[A-Z_][A-Z0-9_]*(:-[^}]*)?\}$")


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def strings(node: Any, key: str = "") -> list[tuple[str, str]]:
    """(key, value) for every string value in the document."""
    if isinstance(node, dict):
        return [pair for k, v in node.items() for pair in strings(v, str(k))]
    if isinstance(node, list):
        return [pair for v in node for pair in strings(v, key)]
    return [(key, node)] if isinstance(node, str) else []


def test_the_three_topologies_are_there() -> None:
    assert [p.name for p in CONFIGS] == ["fanout.yaml", "hosted-grpc.yaml", "local.yaml"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_pipelines_name_defined_contrib_components(path: Path) -> None:
    config = load(path)
    pipelines = config["service"]["pipelines"]
    assert pipelines, "no pipeline"
    for name, pipeline in pipelines.items():
        assert name.split("/")[0] == "traces", name
        assert pipeline["receivers"] and pipeline["exporters"], name
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                assert component in config.get(kind, {}), f"{path.name}: {name} uses undefined {kind[:-1]} {component}"
                assert component.split("/")[0] in CONTRIB[kind], f"{path.name}: {component} is not in otelcol-contrib"
        processors = pipeline.get("processors", [])
        assert processors[0] == "memory_limiter", f"{name}: memory_limiter must come first"
        assert processors[-1] == "batch", f"{name}: batch must come last"
    for kind in ("receivers", "processors", "exporters", "extensions"):
        for component in config.get(kind, {}) or {}:
            assert component.split("/")[0] in CONTRIB[kind], f"{path.name}: {component} is not in otelcol-contrib"
    for extension in config["service"].get("extensions", []):
        assert extension in config.get("extensions", {}), extension


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_secrets_and_endpoints_come_from_the_environment(path: Path) -> None:
    config = load(path)
    found = 0
    for key, value in strings(config):
        if SECRET_KEYS.search(key):
            assert ENV_ONLY.match(value), f"{path.name}: {key} must be ${{env:...}}, not {value!r}"
            found += 1
        assert "dlk_" not in value, f"{path.name}: a Driftlock key is written into the file"
    assert found >= 1, "the Driftlock exporter must send a key"
    for name, exporter in config["exporters"].items():
        assert str(exporter["endpoint"]).startswith("${env:"), f"{name}: endpoint from the environment"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_driftlock_pipelines_drop_health_checks_and_name_the_stream(path: Path) -> None:
    config = load(path)
    driftlock = [p for p in config["service"]["pipelines"].values() if any("driftlock" in e for e in p["exporters"])]
    assert len(driftlock) == 1
    processors = driftlock[0]["processors"]
    assert "filter/health" in processors and "resource/driftlock" in processors
    attributes = config["processors"]["resource/driftlock"]["attributes"]
    assert [a["key"] for a in attributes] == ["driftlock.stream_id"] and attributes[0]["action"] == "insert"
    conditions = config["processors"]["filter/health"]["traces"]["span"]
    pattern = re.compile(re.search(r'"(\^[^"]+)"', conditions[0]).group(1))  # type: ignore[union-attr]
    assert pattern.match("/health") and pattern.match("/healthz") and pattern.match("/health/db")
    assert not pattern.match("/api/health") and not pattern.match("/healthy-food")


SENDER = textwrap.dedent(
    """
    import os, random, sys
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import SpanKind

    url, encoding, stream = sys.argv[1], sys.argv[2], sys.argv[3]
    if encoding == "json":
        from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    def provider(attributes):
        p = TracerProvider(resource=Resource.create(attributes))
        p.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url + "/v1/traces")))
        return p

    # as the collector's resource/driftlock forwards them: one service names its stream, one does not
    checkout = provider({"service.name": "checkout", "driftlock.stream_id": stream})
    catalog = provider({"service.name": stream + "-catalog"})
    rng = random.Random(3)
    routes = ["/", "/cart", "/cart/{id}", "/pay", "/orders/{id}"]
    for i in range(500):
        odd = i >= 460
        attrs = {"http.request.method": rng.choice(["GET", "GET", "POST"]),
                 "http.response.status_code": 404 if odd else rng.choice([200] * 9 + [302]),
                 "url.path": rng.choice(["/.env", "/wp-login.php", "/.git/config"]) if odd else "/"}
        if not odd:
            attrs["http.route"] = rng.choice(routes)
        with checkout.get_tracer("go-service").start_as_current_span("GET", kind=SpanKind.SERVER, attributes=attrs):
            pass
    for i in range(20):
        attrs = {"http.request.method": "GET", "http.route": "/products", "http.response.status_code": 200}
        with catalog.get_tracer("node-service").start_as_current_span("GET", kind=SpanKind.SERVER, attributes=attrs):
            pass
    checkout.shutdown()
    catalog.shutdown()
    """
)


@pytest.mark.parametrize("compression", ["gzip", "none"])
@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_sdk_otlp_exporters_deliver_events_and_anomalies_to_the_right_streams(
    server: ServerProcess, encoding: str, compression: str
) -> None:
    stream = f"checkout-{encoding}-{compression}"
    result = subprocess.run(
        [sys.executable, "-c", SENDER, server.url, encoding, stream],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(OTEL_EXPORTER_OTLP_TRACES_COMPRESSION=compression),
    )
    assert result.returncode == 0, result.stderr
    assert "Failed to export" not in result.stderr, result.stderr
    info = wait_for(lambda: server.get(f"/v1/streams/{stream}").json(), message=f"stream {stream}")
    assert info["events_ingested"] == 500
    catalog = server.get(f"/v1/streams/{stream}-catalog").json()
    assert catalog["events_ingested"] == 20  # the service's own stream: service.name
    anomalies = server.get("/v1/anomalies", params={"stream_id": stream}).json()
    assert anomalies["total"] >= 1
    events = server.get(f"/v1/streams/{stream}/events", params={"limit": 1}).json()["events"]
    assert events[0]["body"]["status"] == 404 and events[0]["attributes"]["service"] == "checkout"


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def test_partial_success_names_the_rejected_spans(server: ServerProcess) -> None:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(_kv("service.name", "partial"))
    spans = resource_spans.scope_spans.add().spans
    for i in range(3):
        span = spans.add(name="GET", kind=Span.SPAN_KIND_SERVER, start_time_unix_nano=10**18, end_time_unix_nano=10**18)
        span.trace_id, span.span_id = bytes(16 * [i + 1]), bytes(8 * [i + 1])
        span.attributes.extend([_kv("http.request.method", "GET"), _kv("http.route", "/a")])
        if i == 2:  # a stream id the API refuses
            span.attributes.append(_kv("driftlock.stream_id", "x" * 300))
    response = httpx.post(
        server.url + "/v1/traces",
        content=request.SerializeToString(),
        headers={"content-type": "application/x-protobuf"},
        timeout=10,
    )
    assert response.status_code == 200 and response.headers["content-type"] == "application/x-protobuf"
    answer = ExportTraceServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_spans == 1
    assert "stream_id" in answer.partial_success.error_message
    assert server.get("/v1/streams/partial").json()["events_ingested"] == 2  # the rest were kept
    fine = httpx.post(server.url + "/v1/traces", content=b"", headers={"content-type": "application/x-protobuf"})
    assert fine.status_code == 200  # an empty export is a success, with no partial_success at all
    assert not ExportTraceServiceResponse.FromString(fine.content).HasField("partial_success")
