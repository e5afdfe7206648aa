"""The one error a log line can raise."""

from __future__ import annotations

__all__ = ["LogFormatError"]


class LogFormatError(ValueError):
    """A line that is not in the format it was said to be in; the message says what is wrong with it."""
