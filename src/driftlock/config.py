"""One configuration object, three spellings.

``Config.resolve()`` merges, in rising precedence: defaults, ``DRIFTLOCK_*`` environment variables,
the Django ``DRIFTLOCK`` settings dict (when Django settings are configured), and keyword arguments.
Each setting has one name in every place: keyword ``base_url``, Django key ``BASE_URL``,
environment variable ``DRIFTLOCK_BASE_URL``. Unknown keys and wrong types raise
:class:`~driftlock.exceptions.DriftlockConfigurationError` naming the key and the valid ones.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from driftlock._urls import without_credentials
from driftlock.exceptions import DriftlockConfigurationError

__all__ = ["HOSTED_BASE_URL", "SPAN_KINDS", "Config"]

HOSTED_BASE_URL = "https://driftlock.net/api"
SPAN_KINDS = ("server", "client", "internal", "producer", "consumer")

AnomalyCallback = Callable[..., Any]


@dataclass(frozen=True, repr=False)
class Config:
    """Resolved, immutable settings. Safe to share between threads.

    Build it with :meth:`resolve`; the constructor takes already-validated values.
    """

    api_key: str | None = None
    base_url: str | None = None
    stream_id: str | None = None
    celery_stream_id: str | None = None
    exclude_paths: tuple[str, ...] = ()
    async_mode: bool = True
    timeout: float = 10.0
    max_retries: int = 3
    retry_delay: float = 0.25
    max_retry_delay: float = 8.0
    max_batch_size: int = 256
    config_override: Mapping[str, Any] | None = None
    on_anomaly: AnomalyCallback | str | None = None
    enabled: bool = True
    capture_user_id: bool = False
    span_kinds: tuple[str, ...] = ("server", "consumer")
    confirmations: int | None = None
    embedded_db: str | None = None

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def resolve(
        cls,
        settings: Mapping[str, Any] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        use_django: bool = True,
        **kwargs: Any,
    ) -> Config:
        """Merge defaults < environment < Django ``DRIFTLOCK`` dict (or ``settings``) < ``kwargs``."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name in _FIELDS:
            raw = env.get("DRIFTLOCK_" + name.upper())
            if raw is not None and raw != "":
                values[name] = _parse_env(name, raw)
        if settings is None and use_django:
            settings = django_settings_dict()
        if settings is not None:
            if not isinstance(settings, Mapping):
                raise DriftlockConfigurationError(
                    f"The DRIFTLOCK setting must be a dict, not {type(settings).__name__}."
                )
            for key, value in settings.items():
                values[_name_of(key, upper=True)] = _check(key, _name_of(key, upper=True), value)
        for key, value in kwargs.items():
            values[_name_of(key, upper=False)] = _check(key, _name_of(key, upper=False), value)
        return cls(**values)

    def replace(self, **kwargs: Any) -> Config:
        """Return a copy with some keyword settings changed (validated like :meth:`resolve`)."""
        checked = {_name_of(k, upper=False): _check(k, _name_of(k, upper=False), v) for k, v in kwargs.items()}
        return dataclasses.replace(self, **checked)

    # -- derived ------------------------------------------------------------------------------

    @property
    def uses_embedded_engine(self) -> bool:
        """No API key and no base URL: detection runs in this process."""
        return self.api_key is None and self.base_url is None

    @property
    def api_root(self) -> str:
        return (self.base_url or HOSTED_BASE_URL).rstrip("/")

    def anomaly_callback(self) -> AnomalyCallback | None:
        """The ON_ANOMALY callable, importing it when it was given as a dotted path."""
        target = self.on_anomaly
        if target is None or callable(target):
            return target
        module_name, _, attr = target.rpartition(".")
        try:
            found = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError, ValueError) as exc:
            raise DriftlockConfigurationError(
                f"ON_ANOMALY {target!r} could not be imported: {exc}. Give a dotted path such as "
                "'myapp.alerts.on_anomaly'."
            ) from exc
        if not callable(found):
            raise DriftlockConfigurationError(f"ON_ANOMALY {target!r} is not callable.")
        return found  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        shown = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "api_key":
                shown.append(f"api_key={'***' if value else None}")
            elif f.name == "base_url" and value:
                shown.append(f"base_url={without_credentials(value)!r}")
            elif value != f.default:
                shown.append(f"{f.name}={value!r}")
        return f"Config({', '.join(shown)})"


# -- validation ---------------------------------------------------------------------------------

_FIELDS = [f.name for f in dataclasses.fields(Config)]
_VALID_KEYS = ", ".join(name.upper() for name in _FIELDS)


def _name_of(key: str, *, upper: bool) -> str:
    name = key.lower() if upper else key
    if not isinstance(key, str) or name not in _FIELDS or (upper and key != key.upper()):
        spelled = key.upper() if upper else key
        raise DriftlockConfigurationError(
            f"Unknown driftlock setting {spelled!r}. Valid settings are: {_VALID_KEYS} "
            f"(as keyword arguments: {', '.join(_FIELDS)})."
        )
    return name


def _fail(key: str, expected: str, value: Any) -> DriftlockConfigurationError:
    shown = "<hidden>" if key.lower() == "api_key" else repr(value)
    return DriftlockConfigurationError(
        f"Driftlock setting {key.upper()} must be {expected}, got {type(value).__name__} {shown}."
    )


def _check(key: str, name: str, value: Any) -> Any:
    """Validate one value for field ``name``; ``key`` is how the user spelled it."""
    if name in ("api_key", "base_url", "stream_id", "celery_stream_id", "embedded_db"):
        if value is not None and not (isinstance(value, str) and value.strip()):
            raise _fail(key, "a non-empty string or None", value)
        if name == "base_url" and value is not None and not value.startswith(("http://", "https://")):
            raise _fail(key, "an http:// or https:// URL", value)
        return value
    if name in ("async_mode", "enabled", "capture_user_id"):
        if not isinstance(value, bool):
            raise _fail(key, "True or False", value)
        return value
    if name in ("timeout", "max_retry_delay"):
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise _fail(key, "a positive number of seconds", value)
        return float(value)
    if name == "retry_delay":
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise _fail(key, "a number of seconds >= 0", value)
        return float(value)
    if name in ("max_retries", "max_batch_size", "confirmations"):
        low = 0 if name == "max_retries" else 1
        if name == "confirmations" and value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise _fail(key, f"an integer >= {low}", value)
        return value
    if name in ("exclude_paths", "span_kinds"):
        if isinstance(value, str) or not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise _fail(key, "a list of strings", value)
        if name == "exclude_paths":
            bad = [v for v in value if not v.startswith("/")]
            if bad:
                raise _fail(key, "a list of path prefixes starting with '/'", value)
        else:
            bad = [v for v in value if v not in SPAN_KINDS]
            if bad:
                raise _fail(key, f"a list drawn from {', '.join(SPAN_KINDS)}", value)
        return tuple(value)
    if name == "config_override":
        if value is not None and not isinstance(value, Mapping):
            raise _fail(key, "a dict of detection settings or None", value)
        return dict(value) if value is not None else None
    if name == "on_anomaly":
        if value is not None and not (callable(value) or isinstance(value, str)):
            raise _fail(key, "a callable, a dotted path to one, or None", value)
        return value
    raise AssertionError(name)  # pragma: no cover - _FIELDS and this function list the same names


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse_env(name: str, raw: str) -> Any:
    """Turn an environment string into a typed value, then validate it like any other source."""
    var = "DRIFTLOCK_" + name.upper()
    value: Any = raw
    if name in ("async_mode", "enabled", "capture_user_id"):
        if raw.lower() not in _TRUE | _FALSE:
            raise DriftlockConfigurationError(f"{var} must be true or false, got {raw!r}.")
        value = raw.lower() in _TRUE
    elif name in ("timeout", "retry_delay", "max_retry_delay"):
        try:
            value = float(raw)
        except ValueError:
            raise DriftlockConfigurationError(f"{var} must be a number of seconds, got {raw!r}.") from None
    elif name in ("max_retries", "max_batch_size", "confirmations"):
        try:
            value = int(raw)
        except ValueError:
            raise DriftlockConfigurationError(f"{var} must be an integer, got {raw!r}.") from None
    elif name in ("exclude_paths", "span_kinds"):
        value = [part.strip() for part in raw.split(",") if part.strip()]
    elif name == "config_override":
        try:
            value = json.loads(raw)
        except ValueError:
            raise DriftlockConfigurationError(f"{var} must be a JSON object, got {raw!r}.") from None
    try:
        return _check(var, name, value)
    except DriftlockConfigurationError as exc:
        raise DriftlockConfigurationError(exc.message.replace(f"setting {name.upper()}", var)) from None


def django_settings_dict() -> Mapping[str, Any] | None:
    """The ``DRIFTLOCK`` dict of configured Django settings, without importing Django."""
    conf = sys.modules.get("django.conf")
    if conf is None:
        return None
    settings = conf.settings
    if not settings.configured:
        return None
    value: Mapping[str, Any] | None = getattr(settings, "DRIFTLOCK", None)
    return value
