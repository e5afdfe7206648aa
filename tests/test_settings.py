"""Each setting is declared once, on its Config field: the checks, the environment's parsing, the
environment variables and the README's table all come from there."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from driftlock import Config, DriftlockConfigurationError
from driftlock.config import settings_table

ENVIRONMENT = {
    "api_key": ("k1", "k1"),
    "base_url": ("http://127.0.0.1:1", "http://127.0.0.1:1"),
    "stream_id": ("s", "s"),
    "celery_stream_id": ("c", "c"),
    "exclude_paths": ("/a/, /b/", ("/a/", "/b/")),
    "async_mode": ("off", False),
    "timeout": ("2.5", 2.5),
    "max_retries": ("0", 0),
    "retry_delay": ("0", 0.0),
    "max_retry_delay": ("3", 3.0),
    "max_batch_size": ("7", 7),
    "config_override": ('{"profile": "strict"}', {"profile": "strict"}),
    "on_anomaly": ("pkg.mod.fn", "pkg.mod.fn"),
    "enabled": ("no", False),
    "capture_user_id": ("yes", True),
    "span_kinds": ("server,client", ("server", "client")),
    "confirmations": ("2", 2),
    "embedded_db": (":memory:", ":memory:"),
}


def test_the_readme_table_is_the_one_the_fields_make() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert settings_table() in readme


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(Config)])
def test_every_setting_reads_from_the_environment_and_refuses_a_wrong_type_by_its_name(name: str) -> None:
    raw, value = ENVIRONMENT[name]
    assert getattr(Config.resolve(environ={"DRIFTLOCK_" + name.upper(): raw}, use_django=False), name) == value
    with pytest.raises(DriftlockConfigurationError, match=name.upper()):
        Config.resolve({name.upper(): object() if name != "on_anomaly" else 12}, environ={}, use_django=False)
