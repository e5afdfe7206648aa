"""Alarms counted by one process: the fallback for an API that marks no incidents.

The detection service decides incidents for a whole stream (:mod:`driftlock.service.incidents`).
Against an API that does not, the exporter applies the same confirmation rule to the anomalies that
come back for its own batches: an alarm when ``confirmations`` anomalous detections, each at
p <= ALARM_P_VALUE, fall within one window of events, and none more within a window after it. Each
process then sees only its share of the stream, which is why the service's incidents are the rule.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from driftlock.engine.settings import PROFILES
from driftlock.service.incidents import ALARM_P_VALUE, DEFAULT_CONFIRMATIONS

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
    """One stream's incidents. Positions are event counts along the stream, rising."""

    def __init__(
        self, confirmations: int = DEFAULT_CONFIRMATIONS, window: int = DEFAULT_WINDOW, p_value: float = ALARM_P_VALUE
    ) -> None:
        if confirmations < 1 or window < 1:
            raise ValueError(f"confirmations and window must be at least 1, got {confirmations} and {window}")
        self.confirmations = confirmations
        self.window = window
        self.p_value = p_value
        self._recent: deque[int] = deque()
        self._incident_end = -1  # position up to which the current incident runs

    def observe(self, position: int, p_value: float | None = None) -> bool:
        """An anomalous detection at ``position``; True when it raises an alarm."""
        if position <= self._incident_end:
            return False  # the incident already raised its alarm within the last window
        if self.confirmations > 1 and p_value is not None and p_value > self.p_value:
            return False
        while self._recent and position - self._recent[0] > self.window:
            self._recent.popleft()
        self._recent.append(position)
        if len(self._recent) < self.confirmations:
            return False
        self._recent.clear()
        self._incident_end = position + self.window
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
