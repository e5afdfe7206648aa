"""Adaptive windowing: sizes chosen from a stream's first batch, as Driftlock's guide describes (API-AND-CBAD.md
§2.10), over a real SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

from driftlock.service import DetectionService
from driftlock.service.adaptive import adaptive_sizes, sizes_for
from driftlock.service.meta import StreamMeta
from driftlock.service.sqlite import SqliteStore
from tests import traffic


def _small(n: int) -> list[bytes]:
    return [json.dumps({"m": "GET", "r": "/a", "s": 200}).encode() for _ in range(n)]


def test_the_guides_examples_give_the_guides_sizes() -> None:
    few = sizes_for(_small(100))
    assert 166 <= few["baseline_size"] <= 200 and 20 <= few["window_size"] <= 25
    many = sizes_for(_small(1000))
    assert 333 <= many["baseline_size"] <= 366 and 41 <= many["window_size"] <= 45


def test_the_sizes_are_chosen_once_until_adaptive_windowing_is_set_again() -> None:
    meta: StreamMeta = {"adaptive_window_enabled": True}
    first = adaptive_sizes(meta, _small(100))
    assert adaptive_sizes(meta, _small(1000)) == first == meta["adaptive"]
    assert adaptive_sizes({}, _small(100)) is None


def test_an_adaptive_stream_is_ready_sooner_and_says_so(tmp_path: Path) -> None:
    service = DetectionService(SqliteStore(tmp_path / "adaptive.sqlite3"))
    service.update_profile("adaptive", {"adaptive_window_enabled": True})
    events = traffic.events(100, seed=1)
    first = service.detect({"stream_id": "adaptive", "events": events}, request_id="t")
    plain = service.detect({"stream_id": "plain", "events": events}, request_id="t")
    needed = first["calibration"]["detection_min_events"]
    assert 100 < needed < plain["calibration"]["detection_min_events"] == 450
    info = service.stream_info("adaptive")
    assert info is not None and info["detection_events_needed"] == needed - 100
    rest = service.detect({"stream_id": "adaptive", "events": traffic.events(needed - 100, seed=2)}, request_id="t")
    assert rest["detection_ready"] is True and service.get_profile("adaptive")["adaptive_window_enabled"] is True
    service.update_profile("adaptive", {"adaptive_window_enabled": False})
    info = service.stream_info("adaptive")
    assert info is not None and info["detection_events_needed"] == 450 - needed
