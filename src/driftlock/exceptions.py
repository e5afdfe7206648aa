"""Errors raised by driftlock.

    DriftlockError                     code, message, request_id, status
     ├── DriftlockConfigurationError   a setting has an unknown name or a wrong type (also a ValueError)
     ├── DriftlockAuthenticationError  401/403: the API key was refused
     ├── DriftlockRateLimitError       429: retry_after seconds to wait
     ├── DriftlockValidationError      400/404/413/422: the request itself is wrong; retrying cannot help
     └── DriftlockNetworkError         connection refused, timeout, deadline passed

Messages never contain the API key.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DriftlockAuthenticationError",
    "DriftlockConfigurationError",
    "DriftlockError",
    "DriftlockNetworkError",
    "DriftlockRateLimitError",
    "DriftlockValidationError",
    "RateLimitError",
]


class DriftlockError(Exception):
    """Base class of every error driftlock raises."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "internal",
        request_id: str | None = None,
        status: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.request_id = request_id
        self.status = status
        self.details = details or {}

    def __str__(self) -> str:
        parts = [self.message]
        if self.status is not None:
            parts.append(f"(HTTP {self.status}, code {self.code!r}")
            parts[-1] += f", request_id {self.request_id!r})" if self.request_id else ")"
        return " ".join(parts)


class DriftlockConfigurationError(DriftlockError, ValueError):
    """A configuration key is unknown or has a value of the wrong type."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="configuration")


class DriftlockAuthenticationError(DriftlockError):
    """The API refused the key (401) or the key may not do this (403)."""


class DriftlockRateLimitError(DriftlockError):
    """The API answered 429; ``retry_after`` says how many seconds to wait."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class DriftlockValidationError(DriftlockError):
    """The API rejected the request as invalid; the message is the server's."""


class DriftlockNetworkError(DriftlockError):
    """The API could not be reached within the deadline."""


RateLimitError = DriftlockRateLimitError
"""The FastAPI integration page's name for :class:`DriftlockRateLimitError` (the same class)."""
