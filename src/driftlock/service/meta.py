"""What the store keeps of a stream's settings and learnt state (``StreamRecord.meta``), typed.

Every key is optional (absent: the default) and the whole is JSON, changed only under the stream's
lock. Each module owns its keys: :mod:`.profiles` ``profile``, ``custom``, ``auto_tune_enabled``,
``adaptive_window_enabled``, ``retention_seconds``; :mod:`.adaptive` ``adaptive``; :mod:`.tuning` ``tuning``;
:mod:`.anchors` ``anchor``; :mod:`.calibration` ``calibration``; the service ``muted_until`` and ``sizes``.
"""

from __future__ import annotations

from typing import Any, TypedDict, cast

__all__ = ["Sizes", "StreamMeta", "meta_of", "retention_cutoff", "retention_override"]


class Sizes(TypedDict):
    baseline_size: int
    window_size: int


class StreamMeta(TypedDict, total=False):
    profile: str  # sensitive | balanced | strict | custom
    custom: dict[str, Any]  # the custom profile's settings (auto-tuning's)
    auto_tune_enabled: bool
    adaptive_window_enabled: bool
    adaptive: Sizes  # the sizes adaptive windowing chose for the stream
    tuning: dict[str, Any]  # feedback counted for auto-tuning, and its history
    anchor: dict[str, Any]  # the active anchor
    calibration: dict[str, Any]  # the p-values of ordinary detections
    muted_until: float | None  # epoch seconds
    sizes: Sizes  # the sizes of the stream's last detection
    retention_seconds: int  # the stream's own retention (absent: the server's --retention)


def meta_of(stored: Any) -> StreamMeta:
    """The meta of a stored JSON value (None or absent: empty)."""
    return cast(StreamMeta, dict(stored) if stored else {})


def retention_override(meta: Any) -> int | None:
    """The stream's own retention in seconds (``retention_seconds``), or None to follow ``--retention``."""
    seconds = meta.get("retention_seconds") if isinstance(meta, dict) else None
    return seconds if isinstance(seconds, int) and not isinstance(seconds, bool) and seconds > 0 else None


def retention_cutoff(meta: Any, now: float) -> float | None:
    """What is older than this is deleted from the stream, by its own retention (None: the server's)."""
    seconds = retention_override(meta)
    return None if seconds is None else now - seconds
