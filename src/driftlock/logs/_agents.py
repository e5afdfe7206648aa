"""User-agent family: what kind of client sent a request, without its versions.

A user-agent string differs by version, platform and build; what a change in traffic shows is the
family (``chrome``, ``curl``, ``sqlmap``). Browsers are told apart by their marker tokens, in the
order browsers copy each other's (Edge says Chrome and Safari, Chrome says Safari); any other client
is the name of its first product token (``sqlmap/1.7.2#stable`` -> ``sqlmap``).
"""

from __future__ import annotations

import re

__all__ = ["agent_family"]

_BROWSERS: tuple[tuple[str, str], ...] = (
    ("Edg/", "edge"),
    ("Edge/", "edge"),
    ("OPR/", "opera"),
    ("SamsungBrowser/", "samsung"),
    ("Firefox/", "firefox"),
    ("Chrome/", "chrome"),
    ("CriOS/", "chrome"),
    ("Safari/", "safari"),
    ("MSIE ", "ie"),
    ("Trident/", "ie"),
)
_BOT = re.compile(r"([A-Za-z][\w.-]*bot)\b", re.I)
_PRODUCT = re.compile(r"\s*([A-Za-z][A-Za-z0-9._-]*)")


def agent_family(agent: str | None) -> str:
    """``"chrome"``, ``"googlebot"``, ``"curl"``, ``"python-requests"``...; ``"-"`` when none was sent."""
    if not agent or agent == "-":
        return "-"
    bot = _BOT.search(agent)
    if bot:
        return bot.group(1).lower()
    if agent.startswith("Mozilla/"):
        for marker, family in _BROWSERS:
            if marker in agent:
                return family
        return "mozilla"
    product = _PRODUCT.match(agent)
    return product.group(1).lower()[:40] if product else "other"
