"""URLs as driftlock shows them: never with the user and password a URL may carry.

A ``BASE_URL`` such as ``https://user:secret@proxy.example/api`` is legal (the client sends the
credentials as HTTP Basic authentication), but every message, log line and repr shows it without
them. Imports nothing of driftlock, so the exceptions and the config can use it.
"""

from __future__ import annotations

import re
import urllib.parse

__all__ = ["scrub_credentials", "split_credentials", "without_credentials"]

_USERINFO = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://)[^/?#\s]*@")


def without_credentials(url: str) -> str:
    """``url`` with any ``user:password@`` removed."""
    return _USERINFO.sub(r"\1", url)


def scrub_credentials(text: str) -> str:
    """``text`` with the credentials of every URL in it removed (for messages that quote URLs)."""
    return _USERINFO.sub(r"\1", text) if "@" in text else text


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """The URL without credentials, and the (user, password) it carried, percent-decoded."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    bare = urllib.parse.urlunsplit(parts._replace(netloc=host))
    return bare, (urllib.parse.unquote(user), urllib.parse.unquote(password))
