"""Slack's format: ``{"text": ..., "blocks": [...]}`` for incoming webhooks.

Slack reads ``<...>`` in ``text`` and in ``mrkdwn`` fields as mentions and links (``<!channel>``,
``<https://evil.example|click>``), so every string a client chose (stream ids, explanations, events) is
escaped as Slack's formatting guide asks: ``&`` ``<`` ``>`` as ``&amp;`` ``&lt;`` ``&gt;``. Only links this
server makes are written as Slack links. ``plain_text`` is not parsed and is left as it is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from driftlock.server.notify.payloads import incident_link

__all__ = ["escape", "slack_payload"]


def escape(text: Any) -> str:
    """``text`` safe in Slack's ``text`` and ``mrkdwn``: control characters ``&``, ``<``, ``>`` escaped."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _event_line(event: Any) -> str:
    body = event.get("body", event) if isinstance(event, Mapping) else event
    if isinstance(body, Mapping) and "route" in body:
        bits = [str(body.get(k)) for k in ("method", "route", "status") if body.get(k) not in (None, "")]
        return " ".join(bits)
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)[:120]


def _code(text: str) -> str:
    """Inline code in mrkdwn: backticks inside would end it early."""
    return "`" + escape(text.replace("`", "'")) + "`"


def slack_payload(
    event_type: str,
    incident: Mapping[str, Any],
    anomaly: Mapping[str, Any] | None = None,
    console_url: str | None = None,
    *,
    test: bool = False,
) -> dict[str, Any]:
    stream = incident.get("stream_id", "?")
    explanation = incident.get("explanation") or {}
    link = incident_link(console_url, incident.get("id"))
    if event_type == "anomaly.detected":
        summary = (anomaly or {}).get("why") or explanation.get("summary") or "An anomaly was detected."
        title = f"Driftlock anomaly on stream {stream}"
    else:
        summary = explanation.get("summary") or "An incident changed."
        verb = event_type.rpartition(".")[2]
        title = f"Driftlock incident {verb} on stream {stream}"
    if test:
        title = "Test: " + title
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": escape(summary)[:2900]}},
    ]
    fields = [
        f"*Status*\n{escape(incident.get('status', '?'))}",
        f"*Anomalies*\n{escape(incident.get('anomaly_count', 0))}",
        f"*Opened*\n{escape(incident.get('opened_at', '?'))}",
    ]
    if incident.get("resolved_at"):
        fields.append(f"*Resolved*\n{escape(incident['resolved_at'])}")
    blocks.append({"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]})
    surges = explanation.get("surges") or []
    if surges:
        lines = [
            f"• {_code(_event_line(s.get('event')))}: {escape(s.get('count'))} of {escape(s.get('window'))} "
            f"(baseline {escape(s.get('baseline_count'))} of {escape(s.get('baseline'))})"
            for s in surges[:5]
        ]
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "*Surging events*\n" + "\n".join(lines)}})
    context = f"incident {escape(incident.get('id'))}"
    if link:
        context += f" · <{escape(link)}|open in the console>"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    text = f"{escape(title)}: {escape(summary)}" + (f" <{escape(link)}|open in the console>" if link else "")
    return {"text": text, "blocks": blocks}
