"""Signals of the Django integration. Receivers run on the exporter's thread (ASYNC_MODE=True)."""

from django.dispatch import Signal

anomaly_detected = Signal()
"""Sent for every alarm (``driftlock.alarms``): ``sender=DriftlockSpanExporter, anomaly=Anomaly, span=SpanDetails``."""
