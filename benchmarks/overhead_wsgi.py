"""WSGI entry of benchmarks/overhead.py: sets up the standard OpenTelemetry pipeline in ``otel`` mode,
before Django builds its handler (as ``opentelemetry-instrument`` would)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "overhead_settings")

if os.environ.get("OVERHEAD_MODE") == "otel":
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "overhead"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    DjangoInstrumentor().instrument(excluded_urls="/health/")

from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()
