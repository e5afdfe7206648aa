"""Adaptive windowing (API-AND-CBAD.md §2.10): sizes chosen from what a stream's events look like.

A stream with ``adaptive_window_enabled`` gets its baseline and window from its first batch after it
was enabled, as the reference does without stored statistics: the arrival rate (6 x the batch size,
events an hour) and, from up to 200 of the batch's events, the diversity of their lengths (coefficient
of variation, at most 1), their byte entropy and their size each propose a baseline; the baseline is
their mean, bounded by what 50 MiB of such events allow, within 100 to 2000 events, and the window an
eighth of it within 10 to 200. The sizes are kept in the stream's ``meta["adaptive"]`` and replace the
sizes of the profile and of ``config_override`` (adaptive windowing is applied after overrides).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from driftlock.engine.settings import MAX_STATE_EVENTS, DetectionSettings
from driftlock.service.meta import Sizes, StreamMeta

__all__ = ["adaptive_sizes", "apply", "sizes_for"]

SAMPLE = 200
BOUNDS = (100, 2000)
WINDOW_BOUNDS = (10, 200)
MEMORY_BYTES = 50 * 1024 * 1024


def _clamp(value: float, low: int = BOUNDS[0], high: int = BOUNDS[1]) -> int:
    return int(min(high, max(low, value)))


def _entropy(data: bytes) -> float:
    """Shannon entropy in bits per byte."""
    if not data:
        return 0.0
    total = len(data)
    return -sum(n / total * math.log2(n / total) for n in Counter(data).values())


def sizes_for(events: Sequence[bytes]) -> Sizes:
    """The baseline and window adaptive windowing gives a stream whose batch is ``events`` (serialized)."""
    sample = list(events[:SAMPLE])
    lengths = [len(e) for e in sample] or [1]
    mean = sum(lengths) / len(lengths)
    spread = math.sqrt(sum((n - mean) ** 2 for n in lengths) / len(lengths))
    diversity = min(1.0, spread / mean) if mean else 0.0
    entropy = _entropy(b"".join(sample))
    by_rate = _clamp(math.floor(0.1 * 6 * len(events)))
    by_diversity = _clamp(math.floor(200 * (1 + 0.5 * diversity)))
    by_entropy = _clamp(math.floor(200 * (1 + 0.1 * (entropy - 6)))) if entropy > 6 else 200
    by_memory = _clamp(MEMORY_BYTES / max(mean, 1.0) / 4)
    baseline = _clamp(min((by_rate + by_diversity + by_entropy) / 3, by_memory))
    window = _clamp(math.floor(baseline / 8), *WINDOW_BOUNDS)
    baseline = min(baseline, MAX_STATE_EVENTS - window)
    return {"baseline_size": baseline, "window_size": window}


def adaptive_sizes(meta: StreamMeta, events: Sequence[bytes]) -> Sizes | None:
    """The stream's adaptive sizes (chosen from ``events`` and kept in ``meta`` the first time), or None when
    adaptive windowing is off for it."""
    if not meta.get("adaptive_window_enabled"):
        return None
    sizes = meta.get("adaptive")
    if sizes is None:
        sizes = meta["adaptive"] = sizes_for(events)
    return sizes


def apply(settings: DetectionSettings, sizes: Sizes | None) -> DetectionSettings:
    """``settings`` with the adaptive sizes (the hop kept within the window)."""
    if sizes is None:
        return settings
    window = sizes["window_size"]
    return replace(
        settings, baseline_size=sizes["baseline_size"], window_size=window, hop_size=min(settings.hop_size, window)
    )
