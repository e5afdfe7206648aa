"""Alarms counted by one process: the fallback for an API that marks no incidents.

The detection service decides incidents for a whole stream (:mod:`driftlock.service.incidents`).
Against an API that does not, the exporter applies the same confirmation rule to the anomalies that
come back for its own batches: an alarm when ``confirmations`` anomalous detections, each at
p <= ALARM_P_VALUE, fall within one window of events, and none more within a window after it. Each
process then sees only its share of the stream, which is why the service's incidents are the rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from driftlock.engine.settings import PROFILES
from driftlock.incident_rule import ALARM_P_VALUE, DEFAULT_CONFIRMATIONS, IncidentRule, IncidentState

__all__ = ["ALARM_P_VALUE", "DEFAULT_CONFIRMATIONS", "DEFAULT_WINDOW", "IncidentTracker", "raised", "window_for"]

DEFAULT_WINDOW = PROFILES["balanced"].window_size


def window_for(config_override: Mapping[str, Any] | None) -> int:
    """The detection window, in events, that these detection settings use."""
    override = config_override or {}
    size = override.get("window_size")
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        return size
    profile = PROFILES.get(str(override.get("profile", "balanced")))
    return profile.window_size if profile else DEFAULT_WINDOW


class IncidentTracker:
    """One stream's incidents, by :class:`~driftlock.incident_rule.IncidentRule`'s confirmations, with no
    resolution to wait for: an alarm's incident lasts one window. Positions are event counts, rising."""

    def __init__(
        self, confirmations: int = DEFAULT_CONFIRMATIONS, window: int = DEFAULT_WINDOW, p_value: float = ALARM_P_VALUE
    ) -> None:
        if confirmations < 1 or window < 1:
            raise ValueError(f"confirmations and window must be at least 1, got {confirmations} and {window}")
        self.rule = IncidentRule(confirmations=confirmations, p_value=p_value, window=window, quiet=window)
        self._state = IncidentState()
        self._incident_end = -1  # position up to which the current incident runs

    @property
    def confirmations(self) -> int:
        return self.rule.confirmations

    @property
    def window(self) -> int:
        return self.rule.window

    @property
    def p_value(self) -> float:
        return self.rule.p_value

    def observe(self, position: int, p_value: float | None = None) -> bool:
        """An anomalous detection at ``position``; True when it raises an alarm."""
        if position <= self._incident_end:
            return False  # the incident already raised its alarm within the last window
        if p_value is not None and not self.rule.confirms(p_value):
            return False
        if self._state.confirm(self.rule, position, "") is None:
            return False
        self._incident_end = position + self.rule.window
        return True


def raised(
    detections: Iterable[tuple[int, float | None]],
    *,
    confirmations: int = DEFAULT_CONFIRMATIONS,
    window: int = DEFAULT_WINDOW,
    p_value: float = ALARM_P_VALUE,
) -> list[int]:
    """The positions of the anomalous detections, given as (position, p-value), that raise alarms."""
    tracker = IncidentTracker(confirmations, window, p_value)
    return [position for position, p in sorted(detections) if tracker.observe(position, p)]
