from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ServerProcess


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The host's DRIFTLOCK_*, OTEL_* and proxy variables must not change what a test sees, and the
    embedded engine keeps each test's streams in a store of the test's own."""
    for key in list(os.environ):
        if key.startswith(("DRIFTLOCK_", "OTEL_")) or key.lower() in ("http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("DRIFTLOCK_EMBEDDED_DB", str(tmp_path / "embedded.sqlite3"))


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real `driftlock serve` (SQLite) for the session; tests use distinct stream ids."""
    db = Path(tmp_path_factory.mktemp("serve")) / "driftlock.sqlite3"
    proc = ServerProcess(db).start()
    yield proc
    proc.stop()
