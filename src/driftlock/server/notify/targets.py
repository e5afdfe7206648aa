"""Where deliveries go: webhooks given with ``--notify URL`` and webhooks configured in the console.

A ``--notify`` URL may carry two parameters of ours, removed before sending: ``format=slack`` (Slack's
format; URLs on ``hooks.slack.com`` get it anyway) and ``events=`` (comma- or space-separated event types).
Without ``events``, a URL gets ``anomaly.detected``, ``incident.opened`` and ``incident.resolved``; a Slack
one, which people read, gets the incident events only (``anomaly.detected`` would repeat ``incident.opened``).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from driftlock.service.webhooks import Webhook, check_events

__all__ = [
    "FLAG_EVENTS",
    "SLACK_EVENTS",
    "Target",
    "check_url",
    "from_flag",
    "from_webhook",
    "is_slack",
    "redacted",
    "shown_url",
]

FLAG_EVENTS = ("anomaly.detected", "incident.opened", "incident.resolved")
SLACK_EVENTS = ("incident.opened", "incident.resolved")
_OURS = ("format", "events")


@dataclass(frozen=True)
class Target:
    """One receiver as the notifier uses it. ``key``: ``notify-N`` for the N-th ``--notify`` URL, else the
    stored webhook's id."""

    key: str
    url: str
    post_url: str
    secret: bytes | None
    events: tuple[str, ...]
    slack: bool
    stored: bool

    def __repr__(self) -> str:  # neither the secret nor the URL's path (Slack keeps its credential there)
        return f"Target({self.key!r}, {redacted(self.url)!r}, events={self.events!r})"


def is_slack(url: str) -> bool:
    parts = urlsplit(url)
    return parts.hostname == "hooks.slack.com" or ("format", "slack") in parse_qsl(parts.query)


def redacted(url: str) -> str:
    """Webhook URLs may carry a credential in their path (Slack): logs show only scheme and host."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}/…"


def shown_url(url: str) -> str:
    """A webhook URL as the console shows it: scheme, host and path; no credentials, no query; Slack's path
    (its credential) hidden."""
    parts = urlsplit(url)
    if parts.hostname == "hooks.slack.com":
        return redacted(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


def check_url(url: str) -> str:
    """``url`` stripped; ValueError unless it is http(s) with a host."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # a port that is not a number raises ValueError
    except ValueError:
        ok = False
    if not ok or any(c.isspace() for c in url):
        raise ValueError(f"webhook URL must be http:// or https:// with a host, got {redacted(url)!r}")
    return url


def _post_url(url: str, ours: tuple[str, ...] = _OURS) -> str:
    parts = urlsplit(url)
    if not any(k in ours for k, _ in parse_qsl(parts.query, keep_blank_values=True)):
        return url
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ours]
    return urlunsplit(parts._replace(query=urlencode(query)))


def from_flag(index: int, url: str, secret: bytes | None) -> Target:
    """The ``index``-th ``--notify`` URL (from 1); ValueError for a bad URL or an unknown event."""
    url = check_url(url)
    slack = is_slack(url)
    query = parse_qsl(urlsplit(url).query, keep_blank_values=True)
    chosen = [e for k, v in query if k == "events" for e in v.replace(",", " ").split()]
    events = check_events(chosen) if chosen else (SLACK_EVENTS if slack else FLAG_EVENTS)
    return Target(f"notify-{index}", url, _post_url(url), secret, events, slack, stored=False)


def from_webhook(webhook: Webhook) -> Target:
    return Target(
        webhook.id,
        webhook.url,
        _post_url(webhook.url, ("format",)),
        webhook.secret.encode() if webhook.secret else None,
        webhook.events,
        is_slack(webhook.url),
        stored=True,
    )
