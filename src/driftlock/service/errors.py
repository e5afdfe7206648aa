"""The API's error: an HTTP status, an error code and a message, as the error envelope carries them."""

from __future__ import annotations

from typing import Any

__all__ = ["ApiError"]


class ApiError(Exception):
    """An error answer of the Driftlock API (API-AND-CBAD.md §1.10)."""

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

    def __init__(self, status: int, message: str, *, retry_after: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after
        self.code = code or self.CODES.get(status, "internal")

    def body(self, request_id: str) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message, "request_id": request_id}
        if self.retry_after is not None:
            error["retry_after_seconds"] = self.retry_after
        return {"error": error}
