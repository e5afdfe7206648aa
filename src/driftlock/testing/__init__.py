"""Test an application's anomaly handling without a Driftlock server.

``FakeDriftlock`` is the Driftlock API in memory: the real ``DriftlockClient`` and
``DriftlockSyncClient`` (and the exporter) run on top of it unchanged, it records every call and
answers with the anomalies a test scripts, or with the faults it injects (errors, rate limits, lost
connections, slowness). With pytest, the ``driftlock_fake`` fixture gives each test an installed one
(the plugin is registered on install; elsewhere, ``pytest_plugins = ["driftlock.testing.pytest_plugin"]``)::

    def test_a_spike_pages_the_on_call(driftlock_fake):
        driftlock_fake.flag(lambda event: event["body"]["value"] > 50)
        handle_readings([10, 12, 100])          # the application's code, unchanged
        assert pager.sent == ["value 100"]
        assert driftlock_fake.detect_calls[0].stream_id == "sensors"
"""

from driftlock.testing._fake import Call, DetectCall, FakeDriftlock, Feedback

__all__ = ["Call", "DetectCall", "FakeDriftlock", "Feedback"]
