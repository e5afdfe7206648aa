"""collector-config/: the files are sound, and what a collector forwards becomes events and anomalies.

The collector binary is not installed here; the end-to-end tests send what it sends: the OpenTelemetry
SDK's standard OTLP/HTTP exporters (protobuf and JSON, gzip on and off), in a separate process, with
the resource and span attributes the configurations add. For loadbalancing.yaml, the test does what the
collector would with that file (its processors, the loadbalancing exporter's key and consistent-hash ring,
ported from the contrib source and checked against its own test vectors) and sends each replica's share to
three real `driftlock serve` replicas.
"""

from __future__ import annotations

import bisect
import gzip
import random
import re
import struct
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Iterator
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
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span

from tests.support import ServerProcess, clean_env, running_server, wait_for

CONFIG_DIR = Path(__file__).resolve().parent.parent / "collector-config"
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))
LOADBALANCING = CONFIG_DIR / "loadbalancing.yaml"

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


def test_the_four_topologies_are_there() -> None:
    assert [p.name for p in CONFIGS] == ["fanout.yaml", "hosted-grpc.yaml", "loadbalancing.yaml", "local.yaml"]


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
        if name.split("/")[0] == "loadbalancing":
            continue  # its backends are this file's own receivers: test_loadbalancing_backends_...
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


# -- loadbalancing.yaml: streams spread over several `driftlock serve` replicas -----------------------------
#
# What the loadbalancing exporter accepts, read from its source (exporter/loadbalancingexporter config.go and
# trace_exporter.go in opentelemetry-collector-contrib): routing keys for traces, its options, its only
# protocol (`otlp`, i.e. OTLP/gRPC: there is no otlphttp variant) and its resolvers with their options.
LB_TRACE_ROUTING_KEYS = {"traceID", "service", "attributes"}  # "resource", "metric", "streamID": other signals
LB_OPTIONS = {
    "protocol",
    "resolver",
    "routing_key",
    "routing_attributes",
    "timeout",
    "retry_on_failure",
    "sending_queue",
}
LB_RESOLVERS = {
    "static": {"hostnames"},
    "dns": {"hostname", "port", "interval", "timeout"},
    "k8s": {"service", "ports", "timeout", "return_hostnames"},
    "aws_cloud_map": {"namespace", "service_name", "health_status", "interval", "timeout", "port"},
}  # fmt: skip
STREAM = "driftlock.stream_id"


def test_loadbalancing_routes_by_the_attribute_that_makes_the_stream() -> None:
    config = load(LOADBALANCING)
    (name,) = [n for n in config["exporters"] if n.split("/")[0] == "loadbalancing"]
    exporter = config["exporters"][name]
    assert set(exporter) <= LB_OPTIONS, set(exporter) - LB_OPTIONS
    assert exporter["routing_key"] in LB_TRACE_ROUTING_KEYS
    # `service` would split a stream two services share, and put a service's several streams on one replica
    assert exporter["routing_key"] == "attributes" and exporter["routing_attributes"] == [STREAM]
    assert set(exporter["protocol"]) == {"otlp"}, "the exporter's only protocol is OTLP/gRPC"
    assert "endpoint" not in exporter["protocol"]["otlp"], "the exporter sets each backend's endpoint itself"
    assert exporter["protocol"]["otlp"]["tls"]["insecure"] is True  # plaintext gRPC to loopback receivers
    (kind,) = exporter["resolver"]  # exactly one resolver
    assert set(exporter["resolver"][kind]) <= LB_RESOLVERS[kind]
    # The front pipeline makes every resource carry the stream driftlock serve will judge its spans by.
    front = config["service"]["pipelines"]["traces"]
    assert front["receivers"] == ["otlp"] and front["exporters"] == [name]
    assert front["processors"] == [
        "memory_limiter",
        "filter/health",
        "groupbyattrs/driftlock",
        "resource/driftlock",
        "batch",
    ]
    assert config["processors"]["groupbyattrs/driftlock"]["keys"] == [STREAM]


def test_loadbalancing_backends_are_loopback_receivers_each_forwarding_to_one_replica() -> None:
    config = load(LOADBALANCING)
    hostnames = config["exporters"]["loadbalancing/driftlock"]["resolver"]["static"]["hostnames"]
    assert 2 <= len(hostnames) <= 3 and len(set(hostnames)) == len(hostnames)
    routes = backend_routes(config)
    assert sorted(routes) == sorted(hostnames)
    replicas = list(routes.values())
    assert len(set(replicas)) == len(replicas), "two backends must not share a replica"
    for hostname, exporter_name in routes.items():
        assert hostname.startswith("127.0.0.1:"), f"{hostname}: the internal hop stays on loopback"
        exporter = config["exporters"][exporter_name]
        assert exporter_name.split("/")[0] == "otlphttp" and exporter["encoding"] == "proto"
        assert ENV_ONLY.match(exporter["endpoint"]) and ENV_ONLY.match(exporter["headers"]["X-Api-Key"])


def backend_routes(config: dict[str, Any]) -> dict[str, str]:
    """hostname in the resolver -> the otlphttp exporter its receiver's pipeline sends to."""
    by_endpoint = {
        r["protocols"]["grpc"]["endpoint"]: name
        for name, r in config["receivers"].items()
        if name != "otlp" and set(r["protocols"]) == {"grpc"}
    }
    routes = {}
    for hostname in config["exporters"]["loadbalancing/driftlock"]["resolver"]["static"]["hostnames"]:
        receiver = by_endpoint[hostname]
        (pipeline,) = [p for p in config["service"]["pipelines"].values() if receiver in p["receivers"]]
        assert pipeline["receivers"] == [receiver] and len(pipeline["exporters"]) == 1
        routes[hostname] = pipeline["exporters"][0]
    return routes


# The exporter's consistent-hash ring, ported from its consistent_hashing.go as the releases the manifest names
# have it (v0.136: crc32 IEEE over endpoint + 4-byte little-endian index, 100 points per endpoint on 36000
# positions, linear probing on collisions; a 2026 rework changed the constants). Its own test vectors below.
RING_POSITIONS, RING_WEIGHT, RING_PROBES = 36000, 100, 10


def ring(endpoints: list[str], weight: int = RING_WEIGHT) -> list[tuple[int, str]]:
    used: set[int] = set()
    items = []
    for endpoint in endpoints:
        for i in range(weight):
            pos = zlib.crc32(endpoint.encode() + struct.pack("<I", i)) % RING_POSITIONS
            probed = 0
            while pos in used and probed < RING_PROBES:
                pos, probed = (pos + 1) % RING_POSITIONS, probed + 1
            if probed < RING_PROBES:
                used.add(pos)
                items.append((pos, endpoint))
    return sorted(items)


def endpoint_for(items: list[tuple[int, str]], identifier: bytes) -> str:
    pos = zlib.crc32(identifier) % RING_POSITIONS
    i = bisect.bisect_left([p for p, _ in items], pos)
    return items[i if i < len(items) else 0][1]


def test_the_ring_port_reproduces_the_exporters_own_test_vectors() -> None:
    assert [p for p, _ in ring(["endpoint-1"], 5)] == [0x21CA, 0x29D3, 0x3984, 0x5EAF, 0x8BC1]
    assert [p for p, _ in ring(["endpoint-1", "endpoint-1"], 5)] == [
        0x21CA, 0x21CB, 0x29D3, 0x29D4, 0x3984, 0x3985, 0x5EAF, 0x5EB0, 0x8BC1, 0x8BC2,
    ]  # fmt: skip
    assert ring(["endpoint-A", "endpoint-B"], 5) == [
        (0xDDE, "endpoint-B"), (0x162E, "endpoint-A"), (0x21F5, "endpoint-B"), (0x34E5, "endpoint-A"),
        (0x61FB, "endpoint-B"), (0x6910, "endpoint-B"), (0x76A0, "endpoint-A"), (0x7E2B, "endpoint-A"),
        (0x7F7C, "endpoint-A"), (0x85AC, "endpoint-B"),
    ]  # fmt: skip
    two = ring(["endpoint-1", "endpoint-2"])
    assert len(two) == 200
    ids = [bytes([1, 2, 0, 0]), bytes([128, 128, 0, 0]), b"ad-service-7", b"get-recommendations-1"]
    assert [endpoint_for(two, i) for i in ids] == ["endpoint-2", "endpoint-1", "endpoint-2", "endpoint-1"]


def _attrs(kvs: Any) -> dict[str, AnyValue]:
    return {kv.key: kv.value for kv in kvs}


def front_pipeline(request: ExportTraceServiceRequest, config: dict[str, Any]) -> ExportTraceServiceRequest:
    """The front pipeline's groupbyattrs and resource (insert from_attribute) processors, in the file's order,
    as the contrib processors do them (the others pass this traffic through unchanged)."""
    for name in config["service"]["pipelines"]["traces"]["processors"]:
        kind, settings = name.split("/")[0], config["processors"][name]
        if kind == "groupbyattrs":
            request = group_by_attributes(request, settings["keys"])
        elif kind == "resource":
            for action in settings["attributes"]:
                assert action["action"] == "insert" and "from_attribute" in action, action
                for rs in request.resource_spans:
                    attributes = _attrs(rs.resource.attributes)
                    if action["key"] not in attributes and action["from_attribute"] in attributes:
                        rs.resource.attributes.append(
                            KeyValue(key=action["key"], value=attributes[action["from_attribute"]])
                        )
    return request


def group_by_attributes(request: ExportTraceServiceRequest, keys: list[str]) -> ExportTraceServiceRequest:
    """groupbyattrs: a span's attributes named in `keys` move to a copy of its resource (overriding the
    resource's own values); spans whose resources end up equal share one ResourceSpans."""
    out = ExportTraceServiceRequest()
    groups: dict[tuple[tuple[str, bytes], ...], ResourceSpans] = {}
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                attributes = _attrs(rs.resource.attributes)
                attributes.update({k: v for k, v in _attrs(span.attributes).items() if k in keys})
                moved = Span()
                moved.CopyFrom(span)
                del moved.attributes[:]
                moved.attributes.extend(kv for kv in span.attributes if kv.key not in keys)
                group = tuple(sorted((k, v.SerializeToString()) for k, v in attributes.items()))
                if group not in groups:
                    groups[group] = out.resource_spans.add()
                    groups[group].resource.attributes.extend(KeyValue(key=k, value=v) for k, v in attributes.items())
                target = groups[group]
                same = [
                    s
                    for s in target.scope_spans
                    if (s.scope.name, s.scope.version) == (ss.scope.name, ss.scope.version)
                ]
                scope = same[0] if same else target.scope_spans.add(scope=ss.scope)
                scope.spans.append(moved)
    return out


def route(
    request: ExportTraceServiceRequest, items: list[tuple[int, str]], exporter: dict[str, Any]
) -> dict[str, ExportTraceServiceRequest]:
    """The loadbalancing exporter for traces: split per resource, scope and trace id; for `attributes` (and
    `service`, which is service.name) the key is each attribute's value, looked up on the resource, then the
    scope, then the batch's first span, concatenated (the v0.136 encoding); for traceID, the trace id."""
    names = {"service": ["service.name"], "attributes": exporter.get("routing_attributes", [])}.get(
        exporter.get("routing_key", "traceID"), []
    )
    out: dict[str, ExportTraceServiceRequest] = {}
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            traces: dict[bytes, list[Span]] = {}
            for span in ss.spans:
                traces.setdefault(span.trace_id, []).append(span)
            for trace_id, spans in traces.items():
                key = trace_id
                if names:
                    places = [_attrs(rs.resource.attributes), _attrs(ss.scope.attributes), _attrs(spans[0].attributes)]
                    found = [next((p[n] for p in places if n in p), None) for n in names]
                    key = "".join(v.string_value for v in found if v is not None).encode()
                batch = out.setdefault(endpoint_for(items, key), ExportTraceServiceRequest()).resource_spans.add()
                batch.resource.CopyFrom(rs.resource)
                batch.scope_spans.add(scope=ss.scope).spans.extend(spans)
    return out


def _resolve_env(value: str, env: dict[str, str]) -> str:
    match = re.match(r"^\$\{env:([A-Z0-9_]+)(?::-([^}]*))?\}$", value)
    assert match, value
    return env.get(match.group(1), match.group(2) or "")


class Traffic:
    """Spans from many services, as they reach the collector: streams named by service, resource and span."""

    def __init__(self) -> None:
        self.sent: dict[str, int] = {}  # stream -> spans sent (what driftlock serve must count)
        self.rng = random.Random(3)
        self._ids = iter(range(1, 10**6))

    def request(self, round_: int) -> ExportTraceServiceRequest:
        request = ExportTraceServiceRequest()
        for n in range(6):  # six services, each its own stream (service.name)
            self._resource(request, {"service.name": f"svc-{n}"}, [self._normal() for _ in range(10)])
        # the resource names the stream; 500 spans over five rounds, the last 40 from a scanner
        checkout = [self._scanner() if round_ * 100 + i >= 460 else self._normal() for i in range(100)]
        self._resource(request, {"service.name": "checkout", STREAM: "shop-eu"}, checkout)
        # one gateway, a stream per tenant named on each span (the span wins over the resource's own)
        tenants = [{**self._normal(), STREAM: f"tenant-{t}"} for t in "abc" for _ in range(5)]
        self._resource(request, {"service.name": "gateway", STREAM: "gateway"}, tenants)
        for service in ("web-a", "web-b"):  # two services, one stream
            self._resource(request, {"service.name": service, STREAM: "shared"}, [self._normal() for _ in range(8)])
        return request

    def _normal(self) -> dict[str, Any]:
        return {
            "http.request.method": self.rng.choice(["GET", "GET", "POST"]),
            "http.route": self.rng.choice(["/", "/cart", "/cart/{id}", "/pay", "/orders/{id}"]),
            "url.path": "/",
            "http.response.status_code": self.rng.choice([200] * 9 + [302]),
        }

    def _scanner(self) -> dict[str, Any]:
        path = self.rng.choice(["/.env", "/wp-login.php", "/.git/config"])
        return {"http.request.method": "GET", "url.path": path, "http.response.status_code": 404}

    def _resource(self, request: ExportTraceServiceRequest, resource: dict[str, str], spans: list[Any]) -> None:
        rs = request.resource_spans.add()
        rs.resource.attributes.extend(_kv(k, v) for k, v in resource.items())
        scope = rs.scope_spans.add()
        scope.scope.name = "test-service"
        for attributes in spans:
            n = next(self._ids)
            span = scope.spans.add(name="GET", kind=Span.SPAN_KIND_SERVER)
            span.trace_id, span.span_id = n.to_bytes(16, "big"), n.to_bytes(8, "big")
            span.start_time_unix_nano = span.end_time_unix_nano = 10**18 + n * 10**6
            for key, value in attributes.items():
                any_value = AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value)
                span.attributes.append(KeyValue(key=key, value=any_value))
            owner = attributes.get(STREAM) or resource.get(STREAM) or resource["service.name"]
            self.sent[owner] = self.sent.get(owner, 0) + 1


@pytest.fixture(scope="module")
def replicas() -> Iterator[list[ServerProcess]]:
    """Three real `driftlock serve` replicas, each with its own store: the case routing is for."""
    with running_server() as one, running_server() as two, running_server() as three:
        yield [one, two, three]


def test_each_stream_lands_whole_on_the_replica_the_ring_names(replicas: list[ServerProcess]) -> None:
    config = load(LOADBALANCING)
    exporter = config["exporters"]["loadbalancing/driftlock"]
    items = ring(
        sorted(exporter["resolver"]["static"]["hostnames"])
    )  # the static resolver sorts its hostnames before building the ring
    env = {f"DRIFTLOCK_REPLICA_{i + 1}": r.url for i, r in enumerate(replicas)}
    replica_of = {h: _resolve_env(config["exporters"][e]["endpoint"], env) for h, e in backend_routes(config).items()}
    assert sorted(replica_of.values()) == sorted(r.url for r in replicas)

    traffic = Traffic()
    for round_ in range(5):  # several batches: a stream must keep its replica from one to the next
        for hostname, request in route(front_pipeline(traffic.request(round_), config), items, exporter).items():
            response = httpx.post(
                replica_of[hostname] + "/v1/traces",
                content=gzip.compress(request.SerializeToString()),
                headers={"content-type": "application/x-protobuf", "content-encoding": "gzip"},
                timeout=60,
            )
            assert response.status_code == 200, response.text
            assert not ExportTraceServiceResponse.FromString(response.content).HasField("partial_success")

    def ingested(replica: ServerProcess, stream: str) -> int:
        response = replica.get(f"/v1/streams/{stream}")
        return int(response.json()["events_ingested"]) if response.status_code == 200 else 0

    owners: dict[str, str] = {}
    for stream, count in traffic.sent.items():
        counts = {r.url: ingested(r, stream) for r in replicas}
        holders = [url for url, n in counts.items() if n]
        assert holders == [replica_of[endpoint_for(items, stream.encode())]], f"{stream}: {counts}"
        assert counts[holders[0]] == count, f"{stream}: every span of the stream on its replica"
        owners[stream] = holders[0]
    assert set(traffic.sent) == {f"svc-{n}" for n in range(6)} | {
        "shop-eu",
        "tenant-a",
        "tenant-b",
        "tenant-c",
        "shared",
    }
    assert len(set(owners.values())) == 3, "the streams spread over all the replicas"
    # routing by service would have split the shared stream over two replicas (two stores, two baselines)
    assert endpoint_for(items, b"web-a") != endpoint_for(items, b"web-b")
    # the stream that turned strange has its whole history in one store, so its replica saw it
    for replica in replicas:
        total = replica.get("/v1/anomalies", params={"stream_id": "shop-eu"}).json()["total"]
        assert (total >= 1) if replica.url == owners["shop-eu"] else (total == 0)
