"""The words the API's fields take, one home for each: the service checks requests against them, the
clients before they send, the console offers them. Imports nothing."""

from __future__ import annotations

__all__ = ["ANOMALY_STATUSES", "FEEDBACK_STATUS", "FEEDBACK_TYPES", "INCIDENT_STATUSES"]

FEEDBACK_TYPES = ("false_positive", "confirmed", "dismissed")
ANOMALY_STATUSES = ("open", "acknowledged", "resolved")
INCIDENT_STATUSES = ("open", "resolved", "muted")
FEEDBACK_STATUS = {"confirmed": "acknowledged", "false_positive": "resolved", "dismissed": "resolved"}
"""The status an anomaly takes with each feedback."""
