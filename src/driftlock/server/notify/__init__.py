"""Webhooks of ``driftlock serve``: the events of Driftlock's webhooks page, signed as it says.

- :mod:`~driftlock.server.notify.payloads`: the events (``anomaly.detected``, ``incident.opened``,
  ``incident.updated``, ``incident.resolved``) in the page's envelope;
- :mod:`~driftlock.server.notify.jsonbody`: bodies a Node.js receiver re-serializes byte for byte;
- :mod:`~driftlock.server.notify.signing`: ``X-Driftlock-Signature`` (hex HMAC-SHA256 of the body) and the
  timestamped signature for replay protection;
- :mod:`~driftlock.server.notify.slack`: Slack's format, client strings escaped;
- :mod:`~driftlock.server.notify.targets`: ``--notify`` URLs and the console's webhooks as delivery targets;
- :mod:`~driftlock.server.notify.notifier`: queues, senders, deadlines, retries.
"""

from __future__ import annotations

from driftlock.server.notify.notifier import Configured, Notifier
from driftlock.server.notify.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    TIMESTAMP_SIGNATURE_HEADER,
    sign_body,
    sign_timestamped,
    verify_body,
    verify_timestamped,
)
from driftlock.server.notify.targets import is_slack

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "TIMESTAMP_SIGNATURE_HEADER",
    "Configured",
    "Notifier",
    "is_slack",
    "sign_body",
    "sign_timestamped",
    "verify_body",
    "verify_timestamped",
]
