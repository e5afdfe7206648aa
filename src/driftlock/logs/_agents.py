"""User-agent family: what kind of client sent a request, without its versions.

``browser`` for every browser, the bot's name for a crawler (``googlebot``), and for any other
client the name of its first product token (``sqlmap/1.7.2#stable`` -> ``sqlmap``, ``curl``,
``python-requests``). Browsers are one family on purpose: which browser a visitor uses changes with
every session, and a window of fifty requests holds only a few sessions, so telling Chrome from
Firefox made ordinary traffic look anomalous (README, "Log analysis"), while a new kind of client (a
tool, a bot) is what a change in traffic shows.
"""

from __future__ import annotations

import functools
import re

__all__ = ["agent_family"]

_BOT = re.compile(r"([A-Za-z][\w.-]*bot)\b", re.I)
_PRODUCT = re.compile(r"\s*([A-Za-z][A-Za-z0-9._-]*)")
_BROWSER_PRODUCTS = ("Mozilla/", "Opera/")


@functools.lru_cache(maxsize=4096)
def agent_family(agent: str | None) -> str:
    """``"browser"``, ``"googlebot"``, ``"curl"``, ``"sqlmap"``...; ``"-"`` when none was sent."""
    if not agent or agent == "-":
        return "-"
    bot = _BOT.search(agent)
    if bot:
        return bot.group(1).lower()
    if agent.startswith(_BROWSER_PRODUCTS):
        return "browser"
    product = _PRODUCT.match(agent)
    return product.group(1).lower()[:40] if product else "other"
