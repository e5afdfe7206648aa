from __future__ import annotations

import logging

import pytest

from driftlock import Config, DriftlockConfigurationError, DriftlockSyncClient


def test_precedence_defaults_env_settings_kwargs() -> None:
    env = {"DRIFTLOCK_TIMEOUT": "3", "DRIFTLOCK_STREAM_ID": "from-env", "DRIFTLOCK_MAX_RETRIES": "5"}
    settings = {"STREAM_ID": "from-settings", "MAX_RETRIES": 1}
    config = Config.resolve(settings, environ=env, max_retries=7)
    assert config.timeout == 3.0  # env beats default
    assert config.stream_id == "from-settings"  # settings beat env
    assert config.max_retries == 7  # kwargs beat settings
    assert config.max_batch_size == 256  # default


def test_django_settings_dict_is_read_when_django_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure()  # DRIFTLOCK is set below and removed again after the test
        django.setup()
    monkeypatch.setattr(settings, "DRIFTLOCK", {"STREAM_ID": "django-app"}, raising=False)
    assert Config.resolve().stream_id == "django-app"
    assert Config.resolve(stream_id="kw").stream_id == "kw"


def test_unknown_key_names_the_key_and_lists_valid_ones() -> None:
    with pytest.raises(DriftlockConfigurationError) as info:
        Config.resolve({"API_KEYY": "x"})
    message = str(info.value)
    assert "'API_KEYY'" in message and "API_KEY" in message and "EXCLUDE_PATHS" in message and "ASYNC_MODE" in message


def test_lower_case_django_key_is_unknown() -> None:
    with pytest.raises(DriftlockConfigurationError, match="'STREAM_ID'"):
        Config.resolve({"stream_id": "x"})


def test_unknown_keyword_argument() -> None:
    with pytest.raises(DriftlockConfigurationError, match="'stream'"):
        DriftlockSyncClient(stream="x")


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"ASYNC_MODE": "yes"}, "ASYNC_MODE must be True or False"),
        ({"TIMEOUT": -1}, "TIMEOUT must be a positive number"),
        ({"MAX_BATCH_SIZE": 0}, "MAX_BATCH_SIZE must be an integer >= 1"),
        ({"EXCLUDE_PATHS": "/admin/"}, "EXCLUDE_PATHS must be a list of strings"),
        ({"EXCLUDE_PATHS": ["admin/"]}, "starting with '/'"),
        ({"BASE_URL": "localhost:8080"}, "BASE_URL must be an http:// or https:// URL"),
        ({"SPAN_KINDS": ["server", "weird"]}, "SPAN_KINDS must be a list drawn from"),
    ],
)
def test_wrong_types_name_the_key(settings: dict[str, object], fragment: str) -> None:
    with pytest.raises(DriftlockConfigurationError, match=fragment):
        Config.resolve(settings, environ={})


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(DriftlockConfigurationError, match="DRIFTLOCK_ASYNC_MODE must be true or false"):
        Config.resolve(environ={"DRIFTLOCK_ASYNC_MODE": "maybe"})
    with pytest.raises(DriftlockConfigurationError, match="DRIFTLOCK_TIMEOUT"):
        Config.resolve(environ={"DRIFTLOCK_TIMEOUT": "soon"})


def test_environment_lists_and_json() -> None:
    config = Config.resolve(
        environ={"DRIFTLOCK_EXCLUDE_PATHS": "/admin/, /health/", "DRIFTLOCK_CONFIG_OVERRIDE": '{"profile": "strict"}'}
    )
    assert config.exclude_paths == ("/admin/", "/health/")
    assert config.config_override == {"profile": "strict"}


def test_api_key_never_in_repr_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    config = Config.resolve(api_key="dlk_topsecret.value")
    assert "dlk_topsecret" not in repr(config) and "api_key=***" in repr(config)
    client = DriftlockSyncClient(config)
    assert "dlk_topsecret" not in repr(client)
    with pytest.raises(DriftlockConfigurationError) as info:
        Config.resolve({"API_KEY": 12345})
    assert "12345" not in str(info.value) and "<hidden>" in str(info.value)
    assert "dlk_topsecret" not in caplog.text


def test_embedded_engine_is_chosen_without_key_and_url() -> None:
    assert Config.resolve(environ={}).uses_embedded_engine
    assert not Config.resolve(environ={}, api_key="k").uses_embedded_engine
    assert Config.resolve(environ={}, api_key="k").api_root == "https://driftlock.net/api"


def test_every_setting_is_listed_for_opentelemetry_instrument() -> None:
    import dataclasses

    from driftlock import environment_variables

    listed = {v for k, v in vars(environment_variables).items() if k.startswith("DRIFTLOCK_")}
    assert listed == {"DRIFTLOCK_" + f.name.upper() for f in dataclasses.fields(Config)}
