"""What both clients share and decide without I/O: settings, the transport choice, request plans."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, Final

from driftlock.client import _operations as ops
from driftlock.client._dataframe import Utils
from driftlock.config import Config
from driftlock.models import DetectionResult

EMBEDDED_ROOT: Final = "http://driftlock.embedded"
"""The API root of the embedded engine: requests to it are answered in process, never sent."""


class _Unset:
    """The type of :data:`UNSET`: "not passed", as opposed to ``None``, which is a value."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()


def resolve_config(api_key: str | Config | _Unset | None, config: Config | None, options: dict[str, Any]) -> Config:
    """``Client('dlk_...')``, ``Client(api_key=...)``, ``Client(config)`` and ``Client(config=..., **options)``."""
    if isinstance(api_key, Config):
        if config is not None:
            raise TypeError("pass the Config once: positionally or as config=, not both")
        config, api_key = api_key, UNSET
    settings = {k: v for k, v in options.items() if v is not UNSET}
    if not isinstance(api_key, _Unset):
        settings["api_key"] = api_key
    if config is not None:
        return config.replace(**settings) if settings else config
    return Config.resolve(**settings)


class ClientBase:
    """Settings and request plans. The shells add I/O; nothing here waits or sends."""

    config: Config

    def __init__(self, config: Config) -> None:
        self.embedded = config.uses_embedded_engine
        self.config = config.replace(base_url=EMBEDDED_ROOT) if self.embedded else config
        self._closed = threading.Event()
        self.utils = Utils()

    def __repr__(self) -> str:
        shown = Config.replace(self.config, base_url=None) if self.embedded else self.config
        return f"{type(self).__name__}({shown!r}{', embedded engine' if self.embedded else ''})"

    def _deadline(self, timeout: float | None) -> float:
        return time.monotonic() + (self.config.timeout if timeout is None else timeout)

    def _detect_parts(
        self, events: Iterable[Any], stream_id: str | None, config_override: Mapping[str, Any] | None
    ) -> list[tuple[int, ops.Operation[DetectionResult]]]:
        override = config_override if config_override is not None else self.config.config_override
        stream = stream_id or self.config.stream_id
        return ops.detect_parts(events, stream, override, self.config.max_batch_size)

    def _transport_kwargs(self, *, asynchronous: bool) -> dict[str, Any]:
        if not self.embedded:
            return {}
        from driftlock.service.embedded import EmbeddedTransport

        return {"transport": EmbeddedTransport(self.config.embedded_db)}
