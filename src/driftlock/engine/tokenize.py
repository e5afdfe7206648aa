"""Canonical, tokenized event bytes: what the compressor judges.

Values that are unique by nature (ids, hashes, tokens, timestamps, addresses, long numbers) are
replaced by fixed tokens, so compression measures the structure of traffic rather than its
randomness (Driftlock's tokenizer, API-AND-CBAD.md §2.9). JSON is canonicalized: keys sorted,
compact separators, so equal events give equal bytes whatever their key order. Tokens replace
values inside the JSON value, string by string (a long number becomes the string ``"<NUM>"``), so
the bytes stay JSON: what is stored can always be read back.
"""

from __future__ import annotations

import bisect
import functools
import json
import math
import re
from typing import Any

__all__ = ["canonical_json", "coarse", "event_bytes", "measurement", "neighbour", "tokenize"]

# Order matters: the most specific patterns first.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"), "<TS>"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]*\.eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"), "<JWT>"),
    (
        re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"),
        "<UUID>",
    ),
    (re.compile(r"\b[0-9a-fA-F]{32,64}\b"), "<HASH>"),
    (re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"), "<EMAIL>"),
    (re.compile(r"\b(?:25[0-5]|2[0-4]\d|1?\d?\d)(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3}\b"), "<IP>"),
    (re.compile(r"(?<![\w:])(?:[0-9a-fA-F]{1,4}:){2,7}[0-9a-fA-F]{1,4}(?![\w:])"), "<IP>"),
    # base64: long, and mixing digits with both letter cases, so ordinary words and paths survive
    (
        re.compile(
            r"(?<![A-Za-z0-9+/])(?=[A-Za-z0-9+/]*\d)(?=[A-Za-z0-9+/]*[a-z])(?=[A-Za-z0-9+/]*[A-Z])"
            r"[A-Za-z0-9+/]{20,}={0,2}"
        ),
        "<B64>",
    ),
    (re.compile(r"(?<![\w.])\d{4,}(?:\.\d+)?(?![\w.])"), "<NUM>"),
    # a path segment that is a number is an id, whatever its length (/api/products/419/lines)
    (re.compile(r"(?<=/)\d+(?=[/?#\s]|$)"), "<NUM>"),
)


@functools.lru_cache(maxsize=8192)
def tokenize(text: str) -> str:
    """Replace ids, hashes, JWTs, base64, timestamps, IPs, emails and long numbers with tokens.

    Cached: traffic repeats itself, and once timestamps are tokens most events are texts seen before."""
    for pattern, token in _PATTERNS:
        text = pattern.sub(token, text)
    return text


_CANONICAL = json.JSONEncoder(separators=(",", ":"), sort_keys=True, ensure_ascii=False, default=str)
"""One encoder: ``json.dumps`` with options builds a new one per call."""


def canonical_json(value: Any) -> str:
    return _CANONICAL.encode(value)


LONG_NUMBER = 1000
"""Numbers with four or more digits before the point are tokens, as the reference's ``<NUM>``."""

CATEGORICAL = re.compile(r"(?:^|_)(?:status|code|level|severity|priority|port|version|kind|type)(?:$|_)", re.I)
"""Keys whose numbers name a category (an HTTP status, a log level): kept exactly. Every other number
is a measurement (a duration, an amount, a count, a size), judged by its order of magnitude."""
_MAGNITUDES = tuple(m * 10**e for e in range(-3, 13) for m in (1, 2.5, 5))
_NUMBER_IN_TEXT = re.compile(r"\d+(?:\.\d+)?")


def magnitude(number: float) -> str:
    """``"<50"`` for 45, ``"<5000"`` for 3333: a number's place on a 1-2.5-5 scale. Exact measurements
    differ on every event; their order of magnitude is what a change in them shows."""
    size = abs(number)
    if size == 0:
        return "0"
    bound = next((m for m in _MAGNITUDES if size < m), _MAGNITUDES[-1])
    text = f"{bound:g}"
    return ("-<" if number < 0 else "<") + text


_MAGNITUDE = re.compile(r"(-?)<(\d+(?:\.\d+)?)([A-Za-z%]*)")


_SCALE: tuple[float, ...] = tuple(float(m) for m in (*sorted(-m for m in _MAGNITUDES), 0, *_MAGNITUDES))


def neighbour(bound: float, toward: float) -> float:
    """The magnitude one step from ``bound`` toward ``toward`` on the 1-2.5-5 scale (signed)."""
    if toward < bound:
        return _SCALE[max(bisect.bisect_left(_SCALE, bound) - 1, 0)]
    if toward > bound:
        return _SCALE[min(bisect.bisect_right(_SCALE, bound), len(_SCALE) - 1)]
    return bound


_UNITS: dict[str, tuple[float, str]] = {
    "ns": (1e-6, "ms"),
    "us": (1e-3, "ms"),
    "µs": (1e-3, "ms"),
    "ms": (1.0, "ms"),
    "s": (1e3, "ms"),
    "b": (1.0, "B"),
    "kb": (1e3, "B"),
    "kib": (1024.0, "B"),
    "mb": (1e6, "B"),
    "mib": (1024.0**2, "B"),
    "gb": (1e9, "B"),
    "gib": (1024.0**3, "B"),
}
"""Units of one quantity measured on one scale (durations in ms, sizes in bytes), so a duration that crosses a
second or a size that crosses a kilobyte is judged by how far it moved, not as a value of another unit."""


@functools.lru_cache(maxsize=8192)
def measurement(value: str) -> tuple[float, str] | None:
    """The bound and unit of a magnitude (``"<5000ms"`` is (5000.0, "ms")), None for any other value:
    magnitudes are ordered, so a duration beyond every one seen before can be told from one between them."""
    m = _MAGNITUDE.fullmatch(value)
    if m is None:
        return None
    bound = float(m.group(2))
    unit = m.group(3)
    if unit.lower() in _UNITS:  # one scale per quantity: "<1s" is the step after "<500ms"
        factor, unit = _UNITS[unit.lower()]
        bound *= factor
    return (-bound if m.group(1) else bound), unit


@functools.lru_cache(maxsize=8192)
def tokenize_text(text: str) -> str:
    """Free text (a value with spaces: a message, a user agent, a search): tokenized, and every number
    in it replaced by its magnitude, so ``in 70ms`` and ``in 65ms`` read alike and ``in 3333ms`` does not."""
    return _NUMBER_IN_TEXT.sub(lambda m: magnitude(float(m.group())), tokenize(text))


def tokenized(value: Any, key: str = "") -> Any:
    """The JSON value with every string (keys too) tokenized, numbers in free text and measurements
    made magnitudes, and long categorical numbers ``"<NUM>"``."""
    if isinstance(value, str):
        return tokenize_text(value) if " " in value else tokenize(value)
    if isinstance(value, dict):
        return {tokenize(k) if isinstance(k, str) else k: tokenized(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [tokenized(v, key) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float) and math.isfinite(value):
        if not CATEGORICAL.search(key):
            return magnitude(value) if value else value
        if abs(value) >= LONG_NUMBER:
            return "<NUM>"
    return value


def event_bytes(event: Any, *, tokenizer: bool = True) -> bytes:
    """Serialize one event compactly (no newline inside), tokenized value by value."""
    return canonical_json(tokenized(event) if tokenizer else event).encode("utf-8")


_MAGNITUDE_BYTES = re.compile(rb"-?<\d+(?:\.\d+)?[A-Za-z%]*")


def _decade(match: re.Match[bytes]) -> bytes:
    measured = measurement(match.group().decode())
    if measured is None or measured[0] == 0:
        return match.group()
    bound, unit = measured
    decade = math.ceil(math.log10(abs(bound)) - 1e-9)
    return f"{'-' if bound < 0 else ''}<1e{decade}{unit}".encode()


@functools.lru_cache(maxsize=16384)
def coarse(event: bytes) -> bytes:
    """The event with every magnitude widened to its decade (``<250ms``, ``<500ms`` and ``<1s`` all read
    ``<1e3ms``): what the whole-event scores count as one kind of event.

    A loaded machine moves every duration a step or two, and a visitor's burst of pages all a step slower
    would otherwise be a burst of events never seen before. How far a measurement moved is the field surprise
    score's to judge (:mod:`.surprise`), on the fine scale."""
    return _MAGNITUDE_BYTES.sub(_decade, event)
