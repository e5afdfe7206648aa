"""Detection settings: the documented profiles and ``config_override`` validation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["DEMO_SETTINGS", "PROFILES", "DetectionSettings", "SettingsError", "resolve_settings"]

MAX_STATE_EVENTS = 2000
"""Events a stream remembers; baseline + window may not exceed it."""

PERMUTATION_CAP = 300
"""Permutations per detection on ``/v1/detect``, as the reference server caps them."""

COMPRESSORS = ("zstd", "zlab", "lz4", "gzip", "openzl")


class SettingsError(ValueError):
    """A ``config_override`` value is out of range; the message names the field."""


@dataclass(frozen=True)
class DetectionSettings:
    baseline_size: int = 400
    window_size: int = 50
    hop_size: int = 10
    ncd_threshold: float = 0.30
    p_value_threshold: float = 0.05
    permutation_count: int = 1000
    compressor: str = "zstd"
    tokenizer: bool = True
    seed: int = 42
    confirm_p_value: float | None = None  # a second level the permutation test settles p at
    dependence: float = 1.0  # how much wider the stream's ordinary statistics run than relabelling predicts

    @property
    def min_events(self) -> int:
        return self.baseline_size + self.window_size


PROFILES: dict[str, DetectionSettings] = {
    "sensitive": DetectionSettings(200, 30, 10, 0.20, 0.10, 500),
    "balanced": DetectionSettings(400, 50, 10, 0.30, 0.05, 1000),
    "strict": DetectionSettings(800, 100, 20, 0.45, 0.01, 1000),
}
DEMO_SETTINGS = DetectionSettings(30, 10, 5, 0.30, 0.05, 1000)

_INT_RANGES = {
    "baseline_size": (10, 10000),
    "window_size": (1, 1000),
    "hop_size": (1, 1000),
    "permutation_count": (1, 10000),
}
_FLOAT_RANGES = {"ncd_threshold": (0.0, 1.0), "p_value_threshold": (0.0, 1.0)}
_KNOWN = {*_INT_RANGES, *_FLOAT_RANGES, "compressor", "profile", "tokenizer", "seed"}


def resolve_settings(
    override: Mapping[str, Any] | None,
    *,
    base: DetectionSettings | None = None,
    permutation_cap: int | None = PERMUTATION_CAP,
) -> DetectionSettings:
    """Apply ``config_override`` (optionally naming a ``profile``) to ``base`` (default: balanced)."""
    settings = base or PROFILES["balanced"]
    if override is None:
        override = {}
    if not isinstance(override, Mapping):
        raise SettingsError("config_override must be an object")
    unknown = sorted(set(override) - _KNOWN)
    if unknown:
        raise SettingsError(
            f"config_override has unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(_KNOWN))}"
        )
    if "profile" in override:
        name = override["profile"]
        if name not in PROFILES:
            raise SettingsError(f"config_override.profile must be one of {', '.join(PROFILES)}, got {name!r}")
        settings = PROFILES[name]
    changes: dict[str, Any] = {}
    for key, (low, high) in _INT_RANGES.items():
        if key in override:
            value = override[key]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise SettingsError(f"config_override.{key} must be an integer from {low} to {high}, got {value!r}")
            changes[key] = value
    for key, (flow, fhigh) in _FLOAT_RANGES.items():
        if key in override:
            number = override[key]
            if isinstance(number, bool) or not isinstance(number, int | float) or not flow < number < fhigh:
                raise SettingsError(
                    f"config_override.{key} must be a number between {flow} and {fhigh}, got {number!r}"
                )
            changes[key] = float(number)
    if "compressor" in override:
        name = str(override["compressor"]).lower()
        if name not in COMPRESSORS:
            raise SettingsError(f"config_override.compressor must be one of {', '.join(COMPRESSORS)}, got {name!r}")
        changes["compressor"] = name
    for key, kind in (("tokenizer", bool), ("seed", int)):
        if key in override:
            if not isinstance(override[key], kind) or (kind is int and isinstance(override[key], bool)):
                raise SettingsError(f"config_override.{key} must be {kind.__name__}, got {override[key]!r}")
            changes[key] = override[key]
    settings = replace(settings, **changes)
    if settings.window_size > settings.baseline_size:
        raise SettingsError(
            f"config_override.window_size ({settings.window_size}) must not exceed baseline_size "
            f"({settings.baseline_size})"
        )
    if settings.hop_size > settings.window_size:
        raise SettingsError(
            f"config_override.hop_size ({settings.hop_size}) must not exceed window_size ({settings.window_size})"
        )
    if settings.min_events > MAX_STATE_EVENTS:
        raise SettingsError(f"baseline_size + window_size ({settings.min_events}) must not exceed {MAX_STATE_EVENTS}")
    if permutation_cap is not None and settings.permutation_count > permutation_cap:
        settings = replace(settings, permutation_count=permutation_cap)
    return settings
