"""``@client.monitor(stream_id=...)``: every call of a function becomes one event.

The event says which function ran, whether it returned or raised (and what), and how long it took
as an order of magnitude (:func:`driftlock.events.duration_bucket`, the same buckets spans get). It
is handed to a :class:`~driftlock.client._stream.SyncStream`, which only buffers: the call is never
slowed by the network, and nothing the monitor does can raise into the caller. The function's own
exceptions propagate unchanged.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from driftlock.events import duration_bucket

__all__ = ["call_event", "monitored"]

logger = logging.getLogger("driftlock.client")

F = TypeVar("F", bound=Callable[..., Any])


def call_event(function: str, error: BaseException | None, nanoseconds: int) -> dict[str, Any]:
    """The event of one call (pure)."""
    body: dict[str, Any] = {
        "function": function,
        "outcome": "ok" if error is None else "error",
        "duration": duration_bucket(nanoseconds),
    }
    if error is not None:
        body["error_type"] = type(error).__name__
    return {"type": "function_call", "body": body}


def monitored(function: F, record: Callable[[dict[str, Any]], None]) -> F:
    """Wrap ``function`` (plain or coroutine function) so that each call is passed to ``record``."""
    name = getattr(function, "__qualname__", None) or getattr(function, "__name__", None) or repr(function)

    def report(error: BaseException | None, started: int) -> None:
        try:
            record(call_event(name, error, time.perf_counter_ns() - started))
        except Exception:  # a monitor must never fail the call it watches
            logger.debug("driftlock monitor could not record a call of %s", name, exc_info=True)

    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter_ns()
            try:
                result = await function(*args, **kwargs)
            except BaseException as exc:
                report(exc, started)
                raise
            report(None, started)
            return result

        return cast(F, async_wrapper)

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter_ns()
        try:
            result = function(*args, **kwargs)
        except BaseException as exc:
            report(exc, started)
            raise
        report(None, started)
        return result

    return cast(F, wrapper)
