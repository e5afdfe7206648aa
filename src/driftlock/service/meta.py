"""What the store keeps of a stream's settings and learnt state (``StreamRecord.meta``), typed.

Every key is optional (absent: the default) and the whole is JSON, changed only under the stream's
lock. Each module owns its keys: :mod:`.profiles` ``profile``, ``custom``, ``auto_tune_enabled``,
``adaptive_window_enabled``; :mod:`.adaptive` ``adaptive``; :mod:`.tuning` ``tuning``; :mod:`.anchors`
``anchor``; :mod:`.calibration` ``calibration``; the service ``muted_until`` and ``sizes``.
"""

from __future__ import annotations

from typing import Any, TypedDict, cast

__all__ = ["Sizes", "StreamMeta", "meta_of"]


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


def meta_of(stored: Any) -> StreamMeta:
    """The meta of a stored JSON value (None or absent: empty)."""
    return cast(StreamMeta, dict(stored) if stored else {})
