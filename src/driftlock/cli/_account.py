"""``driftlock login`` (store an API key) and ``driftlock config set|get`` (the CLI's settings)."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any

from driftlock.cli import _settings
from driftlock.cli._settings import SETTINGS, CliError
from driftlock.exceptions import DriftlockAuthenticationError, DriftlockError

__all__ = ["add_config", "add_login"]


def _read_key() -> str:
    """Prompted without echo on a terminal; otherwise the first line of stdin (``echo $KEY | driftlock login``)."""
    key = (getpass.getpass("Enter your API key: ") if sys.stdin.isatty() else sys.stdin.readline()).strip()
    if not key:
        raise CliError("no API key given")
    if any(c.isspace() for c in key):
        raise CliError("an API key has no spaces: paste the key alone")
    return key


def _login(args: argparse.Namespace) -> int:
    stored = _settings.load()
    key = _read_key()
    if not args.no_verify:
        try:
            with _settings.client(args.base_url, {**stored, "api_key": key}, api_key=key) as client:
                client.anomalies.list(limit=1)
        except DriftlockAuthenticationError:
            raise CliError("the API refused this key; nothing was stored") from None
        except DriftlockError as exc:
            raise CliError(f"could not check the key ({exc}); use --no-verify to store it anyway") from None
    stored["api_key"] = key
    if args.base_url:
        stored["base_url"] = _settings.check_setting("base_url", args.base_url)
    file = _settings.save(stored)
    print(f"API key {key[:4]}… stored in {file} (readable by you only)")
    if os.environ.get("DRIFTLOCK_API_KEY"):
        print("note: DRIFTLOCK_API_KEY is set in this environment and wins over the stored key", file=sys.stderr)
    return 0


def _config(args: argparse.Namespace) -> int:
    stored = _settings.load()
    if args.action != "get" and args.name is None:
        raise CliError(f"config {args.action} needs a setting: {', '.join(SETTINGS)}")
    if args.action == "set":
        if args.value is None:
            raise CliError(f"config set {args.name} needs a value")
        stored[args.name] = _settings.check_setting(args.name, args.value)
        _settings.save(stored)
        print(f"{args.name} = {args.value}")
        return 0
    if args.action == "unset":
        stored.pop(args.name, None)
        _settings.save(stored)
        return 0
    if args.name is not None:
        print(stored.get(args.name, _default(args.name)))
        return 0
    for name in SETTINGS:
        print(f"{name} = {stored.get(name, _default(name))}")
    print(f"api_key = {'(stored)' if stored.get('api_key') else '(none)'}")
    return 0


def _default(name: str) -> str:
    return "text" if name == "output" else ""


def add_login(commands: Any) -> None:
    login = commands.add_parser(
        "login",
        help="store your API key for the CLI (DRIFTLOCK_API_KEY, when set, wins)",
        description="Prompts for the API key (or reads it from stdin), checks it against the API and stores it in "
        f"{_settings.path()} with mode 600.",
    )
    login.add_argument("--base-url", default=None, help="API root to check the key against, stored with it")
    login.add_argument("--no-verify", action="store_true", help="store the key without checking it")
    login.set_defaults(func=_login)


def add_config(commands: Any) -> None:
    config = commands.add_parser(
        "config",
        help="show or change CLI settings (output: text|json, base_url)",
        description=f"Settings live in {_settings.path()}. output: text or json; base_url: the API root.",
    )
    config.add_argument("action", choices=("set", "get", "unset"))
    config.add_argument("name", nargs="?", choices=tuple(SETTINGS), help="setting: " + ", ".join(SETTINGS))
    config.add_argument("value", nargs="?", help="new value (set)")
    config.set_defaults(func=_config)
