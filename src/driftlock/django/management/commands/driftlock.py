"""``manage.py driftlock check``: is Driftlock configured, reachable and accepting our key?"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from driftlock.client import DriftlockSyncClient
from driftlock.django.conf import get_config
from driftlock.exceptions import DriftlockAuthenticationError, DriftlockError, DriftlockNetworkError


class Command(BaseCommand):
    help = "Run 'check' after changing DRIFTLOCK settings or deploying: it sends one test event and reports."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["check"], help="what to do")
        parser.add_argument("--stream", default="driftlock-check", help="stream for the test event")

    def handle(self, *args: Any, **options: Any) -> None:
        config = get_config()
        out = self.stdout.write
        out("Configuration:")
        if config.uses_embedded_engine:
            out("  detection runs in this process (no API_KEY and no BASE_URL): the embedded engine")
        else:
            out(f"  API: {config.api_root}")
        out(f"  API key: {'set' if config.api_key else 'not set'}")
        out(
            f"  stream: {config.stream_id or '(the service name)'}; ASYNC_MODE: {config.async_mode}; "
            f"excluded paths: {', '.join(config.exclude_paths) or 'none'}; enabled: {config.enabled}"
        )
        with DriftlockSyncClient(config) as client:
            try:
                health = client.health()
            except DriftlockNetworkError as exc:
                raise CommandError(f"Connectivity: could not reach Driftlock. {exc}") from None
            except DriftlockError as exc:
                raise CommandError(f"Connectivity: Driftlock answered with an error: {exc}") from None
            out(
                f"Connectivity: reached Driftlock (healthy: {'yes' if health.ok else 'no'}"
                f"{', version ' + health.version if health.version else ''})."
            )
            try:
                result = client.detect(
                    [{"type": "log", "body": {"message": "driftlock check"}}], stream_id=options["stream"]
                )
            except DriftlockAuthenticationError:
                raise CommandError("Authentication: the API refused the key. Check DRIFTLOCK['API_KEY'].") from None
            except DriftlockError as exc:
                raise CommandError(f"Test event: refused: {exc}") from None
        out(f"Authentication: accepted. Test event sent to stream {options['stream']!r} (status: {result.status}).")
        out(self.style.SUCCESS("Driftlock is ready."))
