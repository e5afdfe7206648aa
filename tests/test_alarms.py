"""Anomalous detections become alarms: confirmed within a window, once per incident."""

from __future__ import annotations

import pytest

from driftlock.alarms import ALARM_P_VALUE, IncidentTracker, raised, window_for


def d(positions: list[int], p: float = 0.0) -> list[tuple[int, float]]:
    return [(position, p) for position in positions]


def test_a_lone_anomalous_detection_raises_nothing() -> None:
    assert raised(d([100]), confirmations=2, window=50) == []
    assert raised(d([100, 200, 300]), confirmations=2, window=50) == []  # too far apart to confirm each other


def test_the_confirming_detection_raises_the_alarm_at_most_once_a_window() -> None:
    assert raised(d([100, 110, 120, 130, 160]), confirmations=2, window=50) == [110]  # within 50 of the alarm
    detections = [100, 110, 120, 130, 170, 180, 215, 230]  # a long incident is recalled once a window
    assert raised(d(detections), confirmations=2, window=50) == [110, 180]
    assert raised(d([*detections, 400, 410]), confirmations=2, window=50) == [110, 180, 410]  # a new incident


def test_weak_detections_do_not_confirm_an_incident() -> None:
    weak = ALARM_P_VALUE * 2  # a chance fluctuation over overlapping windows
    assert raised(d([100, 110, 120], p=weak), confirmations=2, window=50) == []
    assert raised([(100, weak), (110, 0.0), (120, 0.001)], confirmations=2, window=50) == [120]
    assert raised(d([100], p=weak), confirmations=1, window=50) == [100]  # one confirmation: as the API says


def test_one_confirmation_is_every_incident_at_once() -> None:
    assert raised(d([100, 110, 300]), confirmations=1, window=50) == [100, 300]


def test_three_confirmations() -> None:
    assert raised(d([100, 110, 200, 210, 220]), confirmations=3, window=50) == [220]


def test_defaults_are_three_confirmations_at_the_alarm_p_value() -> None:
    assert raised(d([100, 110])) == [] and raised(d([100, 110, 120])) == [120]
    assert raised(d([100, 110, 120], p=ALARM_P_VALUE * 2)) == []
    assert raised(d([100, 110, 120], p=ALARM_P_VALUE * 2), p_value=ALARM_P_VALUE * 2) == [120]


def test_streaming_matches_batch() -> None:
    tracker = IncidentTracker(confirmations=2, window=30)
    assert [p for p in (10, 35, 200, 220, 240) if tracker.observe(p)] == raised(
        d([10, 35, 200, 220, 240]), confirmations=2, window=30
    )


def test_window_follows_the_detection_settings() -> None:
    assert window_for(None) == 50
    assert window_for({"profile": "strict"}) == 100 and window_for({"profile": "sensitive"}) == 30
    assert window_for({"profile": "strict", "window_size": 20}) == 20


def test_bad_settings_are_named() -> None:
    with pytest.raises(ValueError, match="confirmations and window"):
        IncidentTracker(confirmations=0)
