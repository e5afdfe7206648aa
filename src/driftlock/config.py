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
from dataclasses import dataclass, field
from typing import Any

from driftlock._urls import without_credentials
from driftlock.exceptions import DriftlockConfigurationError

__all__ = ["HOSTED_BASE_URL", "SPAN_KINDS", "Config", "environment_variables", "settings_table"]

HOSTED_BASE_URL = "https://driftlock.net/api"
SPAN_KINDS = ("server", "client", "internal", "producer", "consumer")

AnomalyCallback = Callable[..., Any]


# -- what each setting is: its check, its environment spelling, its line in the docs ----------------------------


class _Fail(Exception):
    def __init__(self, expected: str) -> None:
        self.expected = expected


class Kind:
    """A setting's type: ``check`` validates a value from Python (the Django dict, keywords), ``parse`` reads one
    from an environment string first."""

    def check(self, value: Any) -> Any:
        return value

    def parse(self, raw: str) -> Any:
        return raw


@dataclass(frozen=True)
class Text(Kind):
    url: bool = False

    def check(self, value: Any) -> Any:
        if value is not None and not (isinstance(value, str) and value.strip()):
            raise _Fail("a non-empty string or None")
        if self.url and value is not None and not value.startswith(("http://", "https://")):
            raise _Fail("an http:// or https:// URL")
        return value


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class Flag(Kind):
    def check(self, value: Any) -> Any:
        if not isinstance(value, bool):
            raise _Fail("True or False")
        return value

    def parse(self, raw: str) -> Any:
        if raw.lower() not in _TRUE | _FALSE:
            raise _Fail("true or false")
        return raw.lower() in _TRUE


@dataclass(frozen=True)
class Seconds(Kind):
    zero: bool = False  # 0 allowed

    def check(self, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or (value == 0 and not self.zero):
            raise _Fail("a number of seconds >= 0" if self.zero else "a positive number of seconds")
        return float(value)

    def parse(self, raw: str) -> Any:
        try:
            return float(raw)
        except ValueError:
            raise _Fail("a number of seconds") from None


@dataclass(frozen=True)
class Count(Kind):
    low: int = 1
    optional: bool = False  # None allowed

    def check(self, value: Any) -> Any:
        if self.optional and value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < self.low:
            raise _Fail(f"an integer >= {self.low}")
        return value

    def parse(self, raw: str) -> Any:
        try:
            return int(raw)
        except ValueError:
            raise _Fail("an integer") from None


@dataclass(frozen=True)
class Names(Kind):
    allowed: tuple[str, ...] | None = None
    prefix: str | None = None

    def check(self, value: Any) -> Any:
        if isinstance(value, str) or not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise _Fail("a list of strings")
        if self.prefix is not None and any(not v.startswith(self.prefix) for v in value):
            raise _Fail(f"a list of path prefixes starting with {self.prefix!r}")
        if self.allowed is not None and any(v not in self.allowed for v in value):
            raise _Fail(f"a list drawn from {', '.join(self.allowed)}")
        return tuple(value)

    def parse(self, raw: str) -> Any:
        return [part.strip() for part in raw.split(",") if part.strip()]


class JsonObject(Kind):
    def check(self, value: Any) -> Any:
        if value is not None and not isinstance(value, Mapping):
            raise _Fail("a dict of detection settings or None")
        return dict(value) if value is not None else None

    def parse(self, raw: str) -> Any:
        try:
            return json.loads(raw)
        except ValueError:
            raise _Fail("a JSON object") from None


class Callback(Kind):
    def check(self, value: Any) -> Any:
        if value is not None and not (callable(value) or isinstance(value, str)):
            raise _Fail("a callable, a dotted path to one, or None")
        return value


def about(kind: Kind, meaning: str, shown: str | None = None) -> dict[str, Any]:
    """A :class:`Config` field's metadata: its kind, what it means, and how the docs show its default."""
    return {"kind": kind, "meaning": meaning, "shown": shown}


@dataclass(frozen=True, repr=False)
class Config:
    """Resolved, immutable settings. Safe to share between threads.

    Build it with :meth:`resolve`; the constructor takes already-validated values. Each field is declared
    once, here: its kind drives the checks and the environment's parsing, its meaning the docs' table
    (:func:`settings_table`) and :mod:`driftlock.environment_variables`.
    """

    api_key: str | None = field(default=None, metadata=about(Text(), "Driftlock key, sent as `X-Api-Key`"))
    base_url: str | None = field(
        default=None,
        metadata=about(
            Text(url=True),
            "API root; `/v1/...` is appended",
            "hosted API; with neither key nor URL, the embedded engine",
        ),
    )
    stream_id: str | None = field(
        default=None,
        metadata=about(Text(), "stream for spans without `driftlock.stream_id`", "the resource's `service.name`"),
    )
    celery_stream_id: str | None = field(
        default=None, metadata=about(Text(), "stream for Celery task spans", "`STREAM_ID` + `.celery`")
    )
    exclude_paths: tuple[str, ...] = field(
        default=(),
        metadata=about(
            Names(prefix="/"),
            "anchored path prefixes never traced nor exported (`/health/` excludes `/health/x`, not `/api/health/`)",
            "`[]`",
        ),
    )
    async_mode: bool = field(
        default=True,
        metadata=about(
            Flag(), "batch processor on a background thread (`True`) or export before the response (`False`)"
        ),
    )
    timeout: float = field(default=10.0, metadata=about(Seconds(), "one deadline per export or call, seconds", "`10`"))
    max_retries: int = field(
        default=3, metadata=about(Count(low=0), "retries on 429, 502, 503, 504 and connection errors")
    )
    retry_delay: float = field(
        default=0.25,
        metadata=about(
            Seconds(zero=True), "seconds before the first retry; each further one waits twice as long, ±20%"
        ),
    )
    max_retry_delay: float = field(
        default=8.0,
        metadata=about(
            Seconds(), "the longest wait between two retries, seconds (`Retry-After` from the API wins)", "`8`"
        ),
    )
    max_batch_size: int = field(default=256, metadata=about(Count(), "events per request"))
    config_override: Mapping[str, Any] | None = field(
        default=None,
        metadata=about(JsonObject(), "detection settings sent with every request (`profile`, `baseline_size`, ...)"),
    )
    on_anomaly: AnomalyCallback | str | None = field(
        default=None, metadata=about(Callback(), "callable, or dotted path to one, called as `f(anomaly, span)`")
    )
    enabled: bool = field(default=True, metadata=about(Flag(), "master switch"))
    capture_user_id: bool = field(
        default=False, metadata=about(Flag(), "put the user's primary key in events (`user_id`)")
    )
    span_kinds: tuple[str, ...] = field(
        default=("server", "consumer"),
        metadata=about(Names(allowed=SPAN_KINDS), "span kinds turned into events", '`["server", "consumer"]`'),
    )
    confirmations: int | None = field(
        default=None,
        metadata=about(
            Count(optional=True),
            "anomalous detections (each at p <= 0.01) within one window that open an incident; `1`: every anomaly. "
            "Sent to the service in `config_override` when set",
            "the service's rule: `3`",
        ),
    )
    embedded_db: str | None = field(
        default=None,
        metadata=about(
            Text(),
            "the embedded engine's SQLite file, shared by every process on the machine; `:memory:`: this process only",
            "`~/.cache/driftlock/embedded.sqlite3`",
        ),
    )

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
_KINDS: dict[str, Kind] = {f.name: f.metadata["kind"] for f in dataclasses.fields(Config)}
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
    try:
        return _KINDS[name].check(value)
    except _Fail as exc:
        raise _fail(key, exc.expected, value) from None


def _parse_env(name: str, raw: str) -> Any:
    """Turn an environment string into a typed value, then validate it like any other source."""
    var = "DRIFTLOCK_" + name.upper()
    try:
        value = _KINDS[name].parse(raw)
    except _Fail as exc:
        raise DriftlockConfigurationError(f"{var} must be {exc.expected}, got {raw!r}.") from None
    try:
        return _check(var, name, value)
    except DriftlockConfigurationError as exc:
        raise DriftlockConfigurationError(exc.message.replace(f"setting {name.upper()}", var)) from None


def _shown(f: dataclasses.Field[Any]) -> str:
    if f.metadata["shown"] is not None:
        return str(f.metadata["shown"])
    return "none" if f.default is None else f"`{f.default!r}`"


def settings_table() -> str:
    """The README's table of settings, made from the fields (a test keeps the README's copy equal)."""
    lines = ["| Django key | keyword | meaning | default |", "|---|---|---|---|"]
    for f in dataclasses.fields(Config):
        lines.append(f"| `{f.name.upper()}` | `{f.name}` | {f.metadata['meaning']} | {_shown(f)} |")
    return "\n".join(lines)


def environment_variables() -> dict[str, str]:
    """Every ``DRIFTLOCK_*`` variable read, with what it means."""
    return {"DRIFTLOCK_" + f.name.upper(): str(f.metadata["meaning"]) for f in dataclasses.fields(Config)}


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
