"""OTLP/HTTP trace requests (protobuf or JSON) → :class:`~driftlock.events.SpanRecord` per span."""

from __future__ import annotations

import base64
import contextlib
import json
import math
from collections.abc import Iterator
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from driftlock.events import SpanRecord
from driftlock.service.errors import ApiError
from driftlock.service.validation import parse_json

__all__ = ["OtlpError", "decode_request", "encode_response", "records"]

_KINDS = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
_STATUS = {0: "unset", 1: "ok", 2: "error"}
_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


class OtlpError(ValueError):
    """The body is not a valid OTLP trace export request."""


def decode_request(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    if "json" in content_type:
        try:
            data = parse_json(body)
        except ApiError as exc:
            raise OtlpError(f"invalid OTLP JSON: {exc.message.removeprefix('invalid json: ')}") from None
        if not isinstance(data, dict):
            raise OtlpError(
                f"invalid OTLP JSON: the body must be an object (an ExportTraceServiceRequest), got {_kind(data)}"
            )
        try:
            _hex_ids_to_base64(data)
            json_format.ParseDict(data, request, ignore_unknown_fields=True)
        except (ValueError, TypeError, RecursionError, json_format.ParseError) as exc:
            raise OtlpError(f"invalid OTLP JSON: {exc}") from None
    else:
        try:
            request.ParseFromString(body)
        except DecodeError as exc:
            raise OtlpError(f"invalid OTLP protobuf: {exc}") from None
    return request


def _kind(value: Any) -> str:
    return (
        "null" if value is None else {bool: "a boolean", str: "a string", list: "an array"}.get(type(value), "a number")
    )


def encode_response(rejected: int, message: str, content_type: str) -> bytes:
    response = ExportTraceServiceResponse()
    if rejected or message:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    if "json" in content_type:
        return json.dumps(json_format.MessageToDict(response)).encode()
    return bytes(response.SerializeToString())


def _hex_ids_to_base64(data: Any) -> None:
    """OTLP/JSON carries ids as hex; protobuf's JSON mapping expects base64 for bytes fields."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key in _ID_FIELDS and isinstance(value, str) and value:
                with contextlib.suppress(ValueError):
                    data[key] = base64.b64encode(bytes.fromhex(value)).decode()
            else:
                _hex_ids_to_base64(value)
    elif isinstance(data, list):
        for item in data:
            _hex_ids_to_base64(item)


def _value(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    if which == "bytes_value":
        return v.bytes_value.hex()
    if which == "double_value" and not math.isfinite(v.double_value):
        return str(v.double_value)  # "nan", "inf": JSON has no such number, and what is stored is read back
    return getattr(v, which)


def _attrs(items: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in items}


def records(request: ExportTraceServiceRequest) -> Iterator[SpanRecord]:
    for resource_spans in request.resource_spans:
        resource = _attrs(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope.name
            for span in scope_spans.spans:
                exceptions = tuple(
                    str(attrs["exception.type"])
                    for event in span.events
                    if event.name == "exception" and (attrs := _attrs(event.attributes)).get("exception.type")
                )
                yield SpanRecord(
                    name=span.name,
                    kind=_KINDS.get(span.kind, "internal"),
                    start_ns=span.start_time_unix_nano,
                    end_ns=span.end_time_unix_nano or span.start_time_unix_nano,
                    status=_STATUS.get(span.status.code, "unset"),
                    attributes=_attrs(span.attributes),
                    resource=resource,
                    exception_types=exceptions,
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    scope=scope,
                )
