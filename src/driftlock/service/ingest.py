"""OTLP ingest: the spans ``driftlock serve`` receives at ``/v1/traces``, detected on as the exporter's are.

Each span becomes an event by the exporter's own mapping (:func:`driftlock.events.span_to_event`), in the
stream the exporter would send it to, and each stream's events go to :meth:`Service.detect` in chunks of
:data:`CHUNK`. A span that cannot be mapped or kept is rejected alone, and counted in the OTLP answer's
partial success; the rest of its batch is still detected on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from driftlock.events import SpanRecord, span_to_event, stream_for
from driftlock.service.detection import Service
from driftlock.service.errors import ServiceError
from driftlock.service.validation import EventError
from driftlock.service.validation import stream_id as stream_id_of

__all__ = ["CHUNK", "ingest_spans"]

CHUNK = 1000
"""Events per detect call (the API's maximum)."""


def ingest_spans(
    service: Service,
    records: Iterable[SpanRecord],
    span_kinds: tuple[str, ...],
    *,
    timed: Callable[[float], Any] | None = None,
) -> tuple[int, str]:
    """Detect on the spans; (spans rejected, what was wrong with the first five). ``timed`` is given the
    seconds of each detect call."""
    by_stream: dict[str, list[tuple[Any, str]]] = {}
    rejected, problems = 0, []
    for record in records:
        try:
            event = span_to_event(record, span_kinds=span_kinds)
        except Exception as exc:  # a malformed span must not lose the rest of the batch
            rejected += 1
            problems.append(f"span {record.span_id or record.name}: {exc}")
            continue
        if event is not None:
            by_stream.setdefault(stream_for(record), []).append((event, record.trace_id))
    for stream_id, items in by_stream.items():
        for start in range(0, len(items), CHUNK):
            chunk = items[start : start + CHUNK]
            while chunk:  # a span whose event cannot be kept is rejected alone (nothing is stored before)
                started = time.perf_counter()
                try:
                    checked = stream_id_of(stream_id)  # a span may name any stream: read it as the API would
                    service.detect(checked, [e for e, _ in chunk], trace_ids=[t for _, t in chunk])
                    if timed is not None:
                        timed(time.perf_counter() - started)
                    break
                except EventError as exc:
                    rejected += 1
                    trace = chunk[exc.index][1] or "?"
                    problems.append(f"stream {stream_id}: the span of trace {trace}: {exc.message}")
                    chunk = chunk[: exc.index] + chunk[exc.index + 1 :]
                except ServiceError as exc:
                    rejected += len(chunk)
                    problems.append(f"stream {stream_id}: {exc.message}")
                    break
    return rejected, "; ".join(problems[:5])
