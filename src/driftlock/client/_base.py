"""What both clients share and decide without I/O: settings, the transport choice, request plans."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, Final

import httpx

from driftlock import _protocol as protocol
from driftlock._urls import without_credentials
from driftlock.client import _operations as ops
from driftlock.client._dataframe import Utils
from driftlock.client._metrics import metrics_for, operation_label
from driftlock.config import Config
from driftlock.exceptions import DriftlockAuthenticationError
from driftlock.models import DetectionResult, Verification
from driftlock.registry import REGISTRY

EMBEDDED_ROOT: Final = "http://driftlock.embedded"
"""The API root of the embedded engine: requests to it are answered in process, never sent."""


class _Unset:
    """The type of :data:`UNSET`: "not passed", as opposed to ``None``, which is a value."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()


def _installed() -> list[Any]:
    """Transports :mod:`driftlock.testing` installs for every client while a test runs (the last wins)."""
    installed: list[Any] = REGISTRY.slot("client.test_transports", list)
    return installed


def install_transport(transport: Any) -> None:
    """Answer every client's requests with ``transport`` (an httpx transport) until :func:`uninstall_transport`."""
    _installed().append(transport)


def uninstall_transport(transport: Any) -> None:
    installed = _installed()
    if transport in installed:
        installed.remove(transport)


def installed_transport() -> Any:
    """The transport a test installed, or None (always None outside tests)."""
    installed = _installed()
    return installed[-1] if installed else None


def request_for(send: protocol.Send) -> httpx.Request:
    """The httpx request of one ``Send``, for a transport called directly (no pool)."""
    return httpx.Request(
        send.method,
        send.url,
        params=send.params,
        headers=send.headers,
        content=send.content,
        extensions={"timeout": httpx.Timeout(send.timeout).as_dict()},
    )


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

    def __init__(self, config: Config, *, metrics: Any = False, transport: Any = None) -> None:
        self.embedded = config.uses_embedded_engine and transport is None
        self.config = config.replace(base_url=EMBEDDED_ROOT) if self.embedded else config
        self._closed = threading.Event()
        self._metrics = metrics_for(metrics)
        self._transport = transport
        self.utils = Utils()

    def __repr__(self) -> str:
        shown = Config.replace(self.config, base_url=None) if self.embedded else self.config
        return f"{type(self).__name__}({shown!r}{', embedded engine' if self.embedded else ''})"

    def _flow(self, op: ops.Operation[Any], deadline: float | None) -> protocol.Flow:
        """One call of ``op``: the protocol's flow, its answer parsed, counted when metrics are on."""
        flow = _parsed(
            protocol.call_flow(self.config, op.method, op.path, body=op.body, params=op.params, deadline=deadline),
            op.parse,
        )
        return flow if self._metrics is None else self._metrics.observe(flow, operation_label(op.method, op.path))

    def _verification(self, request_id: str | None) -> Verification:
        return Verification(api_root=self._shown_root(), request_id=request_id)

    def _refused(self, error: DriftlockAuthenticationError) -> Verification:
        """403: the API knows the key, which may not read anomalies (a key scoped to ingest); 401: refused."""
        if error.status == 403:
            return Verification(api_root=self._shown_root(), request_id=error.request_id, restricted=True)
        raise error

    def _shown_root(self) -> str:
        return "embedded" if self.embedded else without_credentials(self.config.api_root)

    def _deadline(self, timeout: float | None) -> float:
        return time.monotonic() + (self.config.timeout if timeout is None else timeout)

    def _detect_parts(
        self, events: Iterable[Any], stream_id: str | None, config_override: Mapping[str, Any] | None
    ) -> list[tuple[int, ops.Operation[DetectionResult]]]:
        override = config_override if config_override is not None else self.config.config_override
        stream = stream_id or self.config.stream_id
        return ops.detect_parts(events, stream, override, self.config.max_batch_size)

    def _transport_kwargs(self) -> dict[str, Any]:
        if self._transport is not None:
            return {"transport": self._transport}
        if not self.embedded:
            return {}
        from driftlock.service.embedded import EmbeddedTransport

        return {"transport": EmbeddedTransport(self.config.embedded_db)}


def _parsed(flow: protocol.Flow, parse: Any) -> protocol.Flow:
    return parse((yield from flow))
