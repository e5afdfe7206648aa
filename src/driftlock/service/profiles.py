"""Per-stream detection profiles (API-AND-CBAD.md §1.9, §2.10), kept in the stream's ``meta``.

A stream's settings are, in order of precedence: the request's ``config_override`` > the stream's
profile > the defaults (``balanced``). The profiles are the engine's :data:`PROFILES` (sizes and
thresholds together) plus ``custom``: the values auto-tuning set (:mod:`driftlock.service.tuning`),
or ``balanced`` while nothing was tuned.

What ``meta`` holds (JSON, changed only under the stream's lock):

* ``profile``: ``sensitive`` | ``balanced`` | ``strict`` | ``custom`` (absent: ``balanced``);
* ``custom``: the custom profile's settings, ``{ncd_threshold, p_value_threshold, baseline_size,
  window_size, hop_size, permutation_count}``;
* ``auto_tune_enabled``, ``adaptive_window_enabled``: booleans (absent: false);
* ``retention_seconds``: the stream's own retention (absent: the server's ``--retention``), which the
  retention sweep applies to the stream's rows (:mod:`.retention`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, replace
from typing import Any

from driftlock.engine.settings import PROFILES, DetectionSettings, SettingsError, resolve_settings
from driftlock.service import adaptive
from driftlock.service.meta import StreamMeta, retention_override

__all__ = [
    "CUSTOM_FIELDS",
    "DEFAULT_PROFILE",
    "DESCRIPTIONS",
    "PROFILE_NAMES",
    "custom_settings",
    "last_detection_settings",
    "patch_profile",
    "profile_listing",
    "profile_name",
    "profile_settings",
    "profile_view",
    "stream_settings",
]

DEFAULT_PROFILE = "balanced"
PROFILE_NAMES = (*PROFILES, "custom")
CUSTOM_FIELDS = ("ncd_threshold", "p_value_threshold", "baseline_size", "window_size", "hop_size", "permutation_count")
DESCRIPTIONS = {
    "sensitive": "Catches more anomalies: lower thresholds and a shorter baseline (200 events, window 30).",
    "balanced": "The default: NCD 0.30, p 0.05, baseline 400, window 50.",
    "strict": "Fewer false positives: higher NCD, p 0.01 and a longer baseline (800 events, window 100).",
    "custom": "The thresholds auto-tuning learnt from feedback on this stream, over the sizes of the profile it "
    "tuned (balanced until it has tuned).",
}


def profile_name(meta: Mapping[str, Any]) -> str:
    name = meta.get("profile")
    return name if isinstance(name, str) and name in PROFILE_NAMES else DEFAULT_PROFILE


def custom_settings(meta: Mapping[str, Any]) -> DetectionSettings:
    """The custom profile: the stored values over ``balanced`` (values out of range are ignored)."""
    stored = meta.get("custom")
    values = {k: v for k, v in stored.items() if k in CUSTOM_FIELDS} if isinstance(stored, Mapping) else {}
    try:
        return resolve_settings(values, permutation_cap=None)
    except SettingsError:
        return PROFILES[DEFAULT_PROFILE]


def profile_settings(meta: Mapping[str, Any]) -> DetectionSettings:
    """The settings the stream's profile gives, before any ``config_override``."""
    name = profile_name(meta)
    return custom_settings(meta) if name == "custom" else PROFILES[name]


def stream_settings(meta: Mapping[str, Any], override: Mapping[str, Any] | None = None) -> DetectionSettings:
    """The settings a detection on the stream uses: ``config_override`` over its profile, then its adaptive
    sizes (:mod:`.adaptive`), capped as ``/v1/detect`` caps them. SettingsError names a bad override field."""
    settings = resolve_settings(override, base=profile_settings(meta))
    return adaptive.apply(settings, meta.get("adaptive") if meta.get("adaptive_window_enabled") else None)


def last_detection_settings(meta: Mapping[str, Any]) -> DetectionSettings:
    """The defaults with the sizes of the stream's last detection (balanced's before any)."""
    sizes = meta.get("sizes") or {}
    try:
        return resolve_settings({k: v for k, v in sizes.items() if k in ("baseline_size", "window_size")})
    except SettingsError:
        return resolve_settings(None)


def _summary(name: str, settings: DetectionSettings) -> dict[str, Any]:
    return {
        "name": name,
        "description": DESCRIPTIONS[name],
        "ncd_threshold": settings.ncd_threshold,
        "pvalue_threshold": settings.p_value_threshold,
        "p_value_threshold": settings.p_value_threshold,
        "baseline_size": settings.baseline_size,
        "window_size": settings.window_size,
        "hop_size": settings.hop_size,
    }


def profile_listing(meta: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Every profile by name (``custom`` as the stream's, when a stream's ``meta`` is given)."""
    out = {name: _summary(name, settings) for name, settings in PROFILES.items()}
    out["custom"] = _summary("custom", custom_settings(meta or {}))
    return out


def profile_view(meta: Mapping[str, Any]) -> dict[str, Any]:
    """``GET /v1/streams/{id}/profile``."""
    settings = profile_settings(meta)
    return {
        "profile": profile_name(meta),
        "auto_tune_enabled": bool(meta.get("auto_tune_enabled", False)),
        "adaptive_window_enabled": bool(meta.get("adaptive_window_enabled", False)),
        "retention_seconds": retention_override(meta),  # None: the server's --retention
        "current_thresholds": {
            "ncd_threshold": settings.ncd_threshold,
            "pvalue_threshold": settings.p_value_threshold,
            "baseline_size": settings.baseline_size,
            "window_size": settings.window_size,
        },
        "profile_descriptions": profile_listing(meta),
    }


def patch_profile(meta: StreamMeta, fields: Mapping[str, Any]) -> list[str]:
    """Apply the checked fields of a ``PATCH /v1/streams/{id}/profile`` to ``meta``; the changes, said in words."""
    said = []
    if "profile" in fields:
        name = str(fields["profile"])
        meta["profile"] = name
        said.append(f"profile {name}")
    if "auto_tune_enabled" in fields:
        meta["auto_tune_enabled"] = bool(fields["auto_tune_enabled"])
        said.append(f"auto_tune_enabled {'on' if fields['auto_tune_enabled'] else 'off'}")
    if "adaptive_window_enabled" in fields:
        meta["adaptive_window_enabled"] = bool(fields["adaptive_window_enabled"])
        meta.pop("adaptive", None)  # chosen again from the next batch
        said.append(f"adaptive_window_enabled {'on' if fields['adaptive_window_enabled'] else 'off'}")
    if "retention_seconds" in fields:
        seconds = fields["retention_seconds"]
        if seconds is None:
            meta.pop("retention_seconds", None)
            said.append("retention_seconds the server's")
        else:
            meta["retention_seconds"] = int(seconds)
            said.append(f"retention_seconds {int(seconds)}")
    return said


def settings_values(settings: DetectionSettings) -> dict[str, Any]:
    """The custom profile's stored values for ``settings``."""
    values = asdict(settings)
    return {k: values[k] for k in CUSTOM_FIELDS}


def with_thresholds(settings: DetectionSettings, ncd: float, p: float) -> DetectionSettings:
    return replace(settings, ncd_threshold=ncd, p_value_threshold=p)
