"""Errors: the service's domain errors, and the API's error answer that the edge maps them to.

The service (:mod:`driftlock.service.detection`) raises a :class:`ServiceError` that says what is wrong
(:class:`InvalidArgument`, :class:`NotFound`, :class:`Conflict`, :class:`NotReady`, :class:`TooLarge`);
it knows no HTTP. The edge (:mod:`driftlock.service.api`, the embedded transport, ``driftlock serve``)
answers with :class:`ApiError`, whose status and envelope (API-AND-CBAD.md §1.10) it takes from the
domain error's ``code`` with :meth:`ApiError.of`.
"""

from __future__ import annotations

import sqlite3
import sys
from typing import Any

__all__ = [
    "STORE_RETRY_AFTER",
    "ApiError",
    "Conflict",
    "InvalidArgument",
    "NotFound",
    "NotReady",
    "ServiceError",
    "TooLarge",
    "store_unavailable",
]

STORE_RETRY_AFTER = 2
"""Seconds a client is told to wait (``Retry-After``) when the store cannot answer now."""


class ServiceError(Exception):
    """Something the service refuses, said for a person; ``code`` names the kind, as the envelope does."""

    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ServiceError):
    code = "invalid_argument"


class NotFound(ServiceError):
    code = "not_found"


class Conflict(ServiceError):
    code = "conflict"


class NotReady(ServiceError):
    """The stream is not in the state the call needs (not calibrated yet)."""

    code = "failed_precondition"


class TooLarge(ServiceError):
    code = "payload_too_large"


class ApiError(ServiceError):
    """An error answer of the Driftlock API: an HTTP status, an error code and a message."""

    CODES = {
        400: "invalid_argument",
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        409: "conflict",
        412: "failed_precondition",
        413: "payload_too_large",
        415: "unsupported_media_type",
        429: "rate_limit_exceeded",
        503: "service_unavailable",
    }
    STATUSES = {code: status for status, code in CODES.items()}

    def __init__(self, status: int, message: str, *, retry_after: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.code = code or self.CODES.get(status, "internal")

    @classmethod
    def of(cls, error: ServiceError) -> ApiError:
        """The answer to a domain error (an ApiError is its own answer)."""
        if isinstance(error, ApiError):
            return error
        return cls(cls.STATUSES.get(error.code, 500), error.message, code=error.code)

    def body(self, request_id: str) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message, "request_id": request_id}
        if self.retry_after is not None:
            error["retry_after_seconds"] = self.retry_after
        return {"error": error}


def store_unavailable(exc: BaseException) -> ApiError | None:
    """The 503 (with ``Retry-After``) for an exception that says the store cannot answer now: SQLite busy or
    locked past its timeout, PostgreSQL down, restarting, or every pooled connection taken. None for any other
    exception (a bug stays a 500). Nothing was committed by the call that raised it, so the client's retry
    (``driftlock``'s clients and exporter retry a 503) loses nothing."""
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        if "locked" in text or "busy" in text:
            return _unavailable("the database is busy (locked by another writer past its timeout)")
        return None
    psycopg = sys.modules.get("psycopg")  # imported only where a PostgreSQL store is used
    if psycopg is not None and isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return _unavailable(f"the database cannot be reached now ({type(exc).__name__})")
    return None


def _unavailable(why: str) -> ApiError:
    return ApiError(503, f"{why}; retry after {STORE_RETRY_AFTER} s", retry_after=STORE_RETRY_AFTER)
