"""The FastAPI app of benchmarks/overhead_fastapi.py, in the configuration OVERHEAD_MODE names.

bare       FastAPI alone (no tracer provider: FastAPI's own telemetry stays off)
otel       OpenTelemetry's ASGI middleware, batch processor, OTLP/HTTP exporter to OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
driftlock  DriftlockMiddleware to DRIFTLOCK_BASE_URL
"""

import os

from fastapi import FastAPI

MODE = os.environ.get("OVERHEAD_MODE", "driftlock")

app = FastAPI()

if MODE == "otel-asgi":  # benchmarks/fastapi_request_path.py: its tracer provider is set already
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    app.add_middleware(OpenTelemetryMiddleware, exclude_spans=["receive", "send"])
elif MODE == "otel":
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "overhead"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    app.add_middleware(OpenTelemetryMiddleware, exclude_spans=["receive", "send"])
elif MODE == "driftlock":
    from driftlock.fastapi import DriftlockMiddleware

    app.add_middleware(DriftlockMiddleware, stream_id="overhead", exclude_paths=["/health"])


def _route(n: int) -> None:
    async def endpoint(item_id: int) -> dict[str, int]:
        return {"route": n, "item_id": item_id}

    app.add_api_route(f"/r{n}/{{item_id}}", endpoint, methods=["GET"])


for n in range(30):  # a route table of a realistic size: the middleware matches the route before the app does
    _route(n)


@app.get("/products/{product_id}")
async def product(product_id: int) -> dict[str, object]:
    return {"id": product_id, "name": f"Product {product_id}", "price": 12.5, "tags": ["a", "b"]}


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
