"""Budgets in bytes and time: what one event, one stream, the record cache and the database may hold.

Counting events alone let a client that sends large events fill memory and disk (270 events of
about 1 MB to one calibrating stream took a server from 108 MB to 644 MB of RSS), and nothing was
ever deleted. :class:`Budgets` bounds each of them; ``driftlock serve`` takes them from its flags.

- ``event_bytes``: one event as the engine keeps it; a larger one is refused (413, naming the limit),
  because a stored excerpt would change what the stream detects.
- ``stream_bytes``: a stream's kept history (and, separately, its frozen baseline); the oldest events
  go first. A stream whose events are so large that a baseline and a window do not fit stays not ready.
- ``cache_bytes``: the records the service keeps in memory, in total.
- ``excerpt_bytes``: what an anomaly keeps of its event (:func:`excerpt`).
- ``retention``: anomalies, incidents, detections, per-minute counts, feedback and idle streams older
  than this are deleted in the background (:mod:`driftlock.service.retention`); None keeps them forever.
  A stream's profile ``retention_seconds`` overrides it for that stream.
"""

from __future__ import annotations

import json
import re
from collections import deque
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_RETENTION",
    "Budgets",
    "excerpt",
    "human_bytes",
    "parse_duration",
    "parse_size",
    "trim_history",
]

KIB = 1024
MIB = 1024 * KIB
DEFAULT_RETENTION = 30 * 86_400.0
"""Thirty days: a month of incidents to look back on, and a database that stops growing after it."""


@dataclass(frozen=True)
class Budgets:
    event_bytes: int = 64 * KIB
    stream_bytes: int = 8 * MIB
    cache_bytes: int = 256 * MIB
    excerpt_bytes: int = 2 * KIB
    retention: float | None = DEFAULT_RETENTION  # seconds

    def __post_init__(self) -> None:
        if self.event_bytes < 1 * KIB:
            raise ValueError(f"--max-event-bytes must be at least 1 KiB, got {self.event_bytes}")
        if self.stream_bytes < self.event_bytes:
            raise ValueError(
                f"--max-stream-bytes ({human_bytes(self.stream_bytes)}) must hold at least one event of "
                f"--max-event-bytes ({human_bytes(self.event_bytes)})"
            )
        if self.cache_bytes < self.stream_bytes:
            raise ValueError(
                f"--cache-bytes ({human_bytes(self.cache_bytes)}) must hold at least one stream of "
                f"--max-stream-bytes ({human_bytes(self.stream_bytes)})"
            )
        if self.retention is not None and self.retention < 1:
            raise ValueError(f"--retention must be at least 1s (or 'forever'), got {self.retention}")


_SIZE = re.compile(r"^\s*(\d+)\s*(|b|k|kb|kib|m|mb|mib|g|gb|gib)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": KIB, "kb": KIB, "kib": KIB, "m": MIB, "mb": MIB, "mib": MIB}
_UNITS |= {"g": 1024 * MIB, "gb": 1024 * MIB, "gib": 1024 * MIB}


def parse_size(text: str) -> int:
    """``65536``, ``64KiB``, ``8MiB``, ``1g`` as bytes (K, M, G are powers of 1024); ValueError otherwise."""
    found = _SIZE.match(text)
    if not found:
        raise ValueError(f"{text!r} is not a size: give bytes, or a number with KiB, MiB or GiB (such as 64KiB)")
    return int(found.group(1)) * _UNITS[found.group(2).lower()]


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$", re.IGNORECASE)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


def parse_duration(text: str) -> float | None:
    """``30d``, ``12h``, ``15m``, ``90s`` (or bare seconds) as seconds; ``forever``/``off``/``0``: None."""
    if text.strip().lower() in ("forever", "off", "none", "0"):
        return None
    found = _DURATION.match(text)
    if not found:
        raise ValueError(f"{text!r} is not a duration: give a number with s, m, h, d or w (such as 30d), or forever")
    return float(found.group(1)) * _SECONDS[(found.group(2) or "s").lower()]


def human_bytes(n: int) -> str:
    for unit, size in (("GiB", 1024 * MIB), ("MiB", MIB), ("KiB", KIB)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


def trim_history(events: deque[bytes], max_bytes: int) -> int:
    """Drop the oldest events until the rest hold at most ``max_bytes``; how many went. The result is the
    longest suffix within the budget, so trimming after every call or once at the end keeps the same events."""
    total = sum(len(e) for e in events)
    dropped = 0
    while total > max_bytes and events:
        total -= len(events.popleft())
        dropped += 1
    return dropped


_MAX_STRING = 200
_MAX_ITEMS = 20
_MAX_DEPTH = 6


def _shrink(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return value if len(value) <= _MAX_STRING else f"{value[:_MAX_STRING]}… ({len(value)} characters)"
    if isinstance(value, dict):
        if depth >= _MAX_DEPTH:
            return f"… (an object of {len(value)} keys)"
        items = list(value.items())
        out = {str(k)[:_MAX_STRING]: _shrink(v, depth + 1) for k, v in items[:_MAX_ITEMS]}
        if len(items) > _MAX_ITEMS:
            out["…"] = f"{len(items) - _MAX_ITEMS} more keys"
        return out
    if isinstance(value, list):
        if depth >= _MAX_DEPTH:
            return f"… (an array of {len(value)} items)"
        shown = [_shrink(v, depth + 1) for v in value[:_MAX_ITEMS]]
        if len(value) > _MAX_ITEMS:
            shown.append(f"… {len(value) - _MAX_ITEMS} more items")
        return shown
    return value


def _size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass"))


def excerpt(event: Any, max_bytes: int) -> Any:
    """The event as an anomaly keeps it: itself when it serializes within ``max_bytes``, else the same shape
    with long strings cut and long arrays and objects shortened (each cut says how much it left out), and
    if even that is too large, ``{"excerpt": <the start of its JSON>, "bytes": <its size>}``."""
    size = _size(event)
    if size <= max_bytes:
        return event
    shrunk = _shrink(event, 0)
    if _size(shrunk) <= max_bytes:
        return shrunk
    text = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    return {"excerpt": text[: max(64, max_bytes // 2)] + "…", "bytes": size}
