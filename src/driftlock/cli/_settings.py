"""The CLI's user settings: a JSON file only its owner can read, and the client built from it.

``$XDG_CONFIG_HOME/driftlock/cli.json`` (``~/.config/driftlock/cli.json``) holds what ``driftlock login``
and ``driftlock config set`` store: the API key, ``output`` and ``base_url``. The environment wins
over the file (``DRIFTLOCK_API_KEY``, ``DRIFTLOCK_BASE_URL``), and a flag wins over both.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any, Final

from driftlock.client import DriftlockSyncClient
from driftlock.exceptions import DriftlockError

__all__ = ["SETTINGS", "CliError", "client", "load", "path", "save"]

SETTINGS: Final = {
    "output": ("text", "json"),
    "base_url": None,  # any http(s) URL
}
"""What ``driftlock config set`` accepts: a name and its allowed values (None: checked by its own rule)."""


class CliError(Exception):
    """A failure the command reports in one line (exit status 2)."""


def path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "driftlock" / "cli.json"


def load() -> dict[str, Any]:
    """The stored settings ({} when there are none). A file others can read is used, with a warning."""
    file = path()
    try:
        text = file.read_text(encoding="utf-8")
        mode = file.stat().st_mode
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise CliError(f"cannot read {file}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CliError(f"{file} is not valid JSON ({exc}): fix or delete it") from None
    if not isinstance(data, dict):
        raise CliError(f"{file} must hold a JSON object: fix or delete it")
    if data.get("api_key") and mode & (stat.S_IRWXG | stat.S_IRWXO):
        print(f"warning: {file} holds an API key and others may read it: chmod 600 {file}", file=sys.stderr)
    return data


def save(data: dict[str, Any]) -> Path:
    """Write the settings readable and writable by the owner only (the directory too), atomically."""
    file = path()
    file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = file.with_name(f".{file.name}.{os.getpid()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.chmod(temporary, 0o600)  # O_CREAT's mode does not apply to a file left over from a crash
        os.replace(temporary, file)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return file


def check_setting(name: str, value: str) -> str:
    if name not in SETTINGS:
        raise CliError(f"unknown setting {name!r}: use one of {', '.join(SETTINGS)}")
    allowed = SETTINGS[name]
    if allowed is not None and value not in allowed:
        raise CliError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    if name == "base_url" and not value.startswith(("http://", "https://")):
        raise CliError(f"base_url must be an http:// or https:// URL, got {value!r}")
    return value


def output_format(flag: str | None, stored: dict[str, Any]) -> str:
    """``--output`` wins, then ``driftlock config set output``; text by default."""
    chosen = flag or stored.get("output") or "text"
    return str(check_setting("output", chosen))


def client(base_url: str | None, stored: dict[str, Any], **options: Any) -> DriftlockSyncClient:
    """The client for a command: ``--base-url`` > DRIFTLOCK_BASE_URL > stored base_url; DRIFTLOCK_API_KEY >
    stored key. With neither key nor URL, the embedded engine answers (streams kept on this machine)."""
    if base_url:
        options["base_url"] = base_url
    elif not os.environ.get("DRIFTLOCK_BASE_URL") and stored.get("base_url"):
        options["base_url"] = stored["base_url"]
    if not os.environ.get("DRIFTLOCK_API_KEY") and stored.get("api_key"):
        options["api_key"] = stored["api_key"]
    try:
        return DriftlockSyncClient(**options)
    except (DriftlockError, ValueError, TypeError) as exc:
        raise CliError(str(exc)) from None
