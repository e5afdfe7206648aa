"""The two signatures of a webhook delivery (both only when the webhook has a secret).

``X-Driftlock-Signature``: the hex HMAC-SHA256 of the body, as Driftlock's webhooks page computes it in its
Python and Node.js examples. It does not change with time, so a captured request could be sent again;
``X-Driftlock-Timestamp`` with ``X-Driftlock-Timestamp-Signature`` (``sha256=`` + the hex HMAC-SHA256 of
``timestamp + "." + body``) lets a receiver refuse old requests too (:func:`verify_timestamped`).
"""

from __future__ import annotations

import hashlib
import hmac
import time

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "TIMESTAMP_SIGNATURE_HEADER",
    "sign_body",
    "sign_timestamped",
    "verify_body",
    "verify_timestamped",
]

SIGNATURE_HEADER = "X-Driftlock-Signature"
TIMESTAMP_HEADER = "X-Driftlock-Timestamp"
TIMESTAMP_SIGNATURE_HEADER = "X-Driftlock-Timestamp-Signature"


def sign_body(secret: bytes, body: bytes) -> str:
    """The ``X-Driftlock-Signature`` value: hex HMAC-SHA256 of the body."""
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def sign_timestamped(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Driftlock-Timestamp-Signature`` value for ``timestamp`` (unix seconds) and the body."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify_body(secret: bytes, body: bytes, signature: str | None) -> bool:
    """What the page's receivers do: a constant-time comparison with the body's HMAC."""
    return signature is not None and hmac.compare_digest(sign_body(secret, body), signature)


def verify_timestamped(
    secret: bytes, timestamp: str | None, body: bytes, signature: str | None, *, tolerance: float = 300.0
) -> bool:
    """Replay protection: the timestamped signature matches and the timestamp is within ``tolerance`` seconds."""
    if timestamp is None or signature is None:
        return False
    try:
        age = abs(time.time() - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance and hmac.compare_digest(sign_timestamped(secret, timestamp, body), signature)
