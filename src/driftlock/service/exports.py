"""Exports of anomalies as json, markdown, html or pdf: jobs whose result is fetched with ``GET /v1/exports/{job_id}``.

A job needs no table and works across any number of server replicas over one store: its id is a
self-describing token (the format and the anomaly ids, deflated, urlsafe base64, with a checksum), and
the result is rendered from the store when it is fetched. So a job is ``completed`` as soon as it is
made, and its result shows the anomalies as they are when fetched (feedback included); ids whose
anomaly is gone by then are listed as ``missing``.

PDF is written here (the markdown text in Courier, a PDF 1.4 file, no dependency): a light, well-kept library
was not among the package's dependencies, and the evidence is text.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import time
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from driftlock.service.errors import InvalidArgument, NotFound
from driftlock.service.shapes import iso

__all__ = ["FORMATS", "MAX_EXPORT_ANOMALIES", "decode_job", "encode_job", "render"]

FORMATS = ("json", "markdown", "html", "pdf")
MAX_EXPORT_ANOMALIES = 100
CONTENT_TYPES = {
    "json": "application/json",
    "markdown": "text/markdown; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "pdf": "application/pdf",
}
_PREFIX = "exp_"
_CHECK = 6


def check_format(value: Any) -> str:
    if value is None:
        return "json"
    if value not in FORMATS:
        raise InvalidArgument(f"format must be one of {', '.join(FORMATS)}, got {value!r}")
    return str(value)


def encode_job(fmt: str, anomaly_ids: Sequence[str]) -> str:
    payload = zlib.compress(json.dumps({"v": 1, "f": fmt, "ids": list(anomaly_ids)}, separators=(",", ":")).encode())
    check = hashlib.blake2b(payload, digest_size=_CHECK).digest()
    return _PREFIX + base64.urlsafe_b64encode(check + payload).decode("ascii").rstrip("=")


def decode_job(job_id: str) -> tuple[str, list[str]]:
    """(format, anomaly ids) of a job id; NotFound for anything that is not one."""
    missing = NotFound(f"export job {job_id} not found")
    if not job_id.startswith(_PREFIX) or len(job_id) > 20_000:
        raise missing
    try:
        raw = base64.urlsafe_b64decode(job_id[len(_PREFIX) :] + "=" * (-len(job_id) % 4))
        check, payload = raw[:_CHECK], raw[_CHECK:]
        if hashlib.blake2b(payload, digest_size=_CHECK).digest() != check:
            raise missing
        data = json.loads(zlib.decompress(payload))
    except (ValueError, zlib.error):
        raise missing from None
    ids = data.get("ids") if isinstance(data, dict) else None
    fmt = data.get("f") if isinstance(data, dict) else None
    if fmt not in FORMATS or not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise missing
    return str(fmt), ids


def render(fmt: str, job_id: str, anomalies: Sequence[Mapping[str, Any]], missing: Sequence[str]) -> dict[str, Any]:
    """The job's answer: ``{job_id, status, format, content_type, content, ...}`` (pdf content in base64)."""
    now = time.time()
    document = {
        "job_id": job_id,
        "format": fmt,
        "exported_at": iso(now),
        "anomaly_count": len(anomalies),
        "anomalies": list(anomalies),
        "missing": list(missing),
    }
    answer: dict[str, Any] = {
        "job_id": job_id,
        "status": "completed",
        "format": fmt,
        "content_type": CONTENT_TYPES[fmt],
        "anomaly_count": len(anomalies),
        "missing": list(missing),
    }
    if fmt == "json":
        answer["content"] = json.dumps(document, indent=2, default=str)
    elif fmt == "markdown":
        answer["content"] = _markdown(document)
    elif fmt == "html":
        answer["content"] = _html(document)
    else:
        answer["content"] = base64.b64encode(pdf(_markdown(document).splitlines())).decode("ascii")
        answer["content_encoding"] = "base64"
    return answer


_FIELDS = (
    ("Stream", "stream_id"),
    ("Status", "status"),
    ("Detected at", "detected_at"),
    ("NCD", "ncd"),
    ("p-value", "p_value"),
    ("Confidence", "confidence"),
    ("Compression ratio", "compression_ratio"),
    ("Entropy change", "entropy_change"),
    ("Incident", "incident_id"),
    ("Trace", "trace_id"),
)


def _cell(value: Any) -> str:
    return "" if value is None else _code(value).replace("|", "\\|")


def _longest_backticks(text: str) -> int:
    return max((len(run) for run in re.findall("`+", text)), default=0)


def _code(value: Any) -> str:
    """Inline code that nothing in ``value`` can end (a client's stream id, a reason): no link, no HTML."""
    text = str(value).replace("\r", " ").replace("\n", " ")
    fence = "`" * (_longest_backticks(text) + 1)
    return f"{fence} {text} {fence}"


def _fenced(text: str, info: str = "") -> list[str]:
    """A fenced code block that no line of ``text`` can close."""
    fence = "`" * max(3, _longest_backticks(text) + 1)
    return [fence + info, text, fence]


def _markdown(doc: Mapping[str, Any]) -> str:
    lines = [
        "# Driftlock anomaly export",
        "",
        f"Exported at {doc['exported_at']}: {doc['anomaly_count']} anomaly(ies).",
    ]
    if doc["missing"]:
        lines += ["", f"Not found: {', '.join(_code(m) for m in doc['missing'])}"]
    for a in doc["anomalies"]:
        lines += ["", f"## Anomaly {a['id']}", "", "| Field | Value |", "|---|---|"]
        lines += [f"| {label} | {_cell(a.get(key))} |" for label, key in _FIELDS]
        lines += ["", "### Why", "", *_fenced(str(a.get("why") or a.get("explanation") or ""), "text")]
        lines += ["", "### Event", "", *_fenced(json.dumps(a.get("event"), indent=2, default=str), "json")]
        if a.get("feedback"):
            lines += ["", "### Feedback", ""]
            lines += [
                f"- {_code(f.get('created_at'))}: {_code(f.get('feedback_type'))} {_code(f.get('reason') or '')}"
                for f in a["feedback"]
            ]
    return "\n".join(lines) + "\n"


def _html(doc: Mapping[str, Any]) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>Driftlock anomaly export</title>',
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}pre{background:#f6f6f6;padding:1em;"
        "overflow:auto}</style></head><body>",
        "<h1>Driftlock anomaly export</h1>",
        f"<p>Exported at {e(str(doc['exported_at']))}: {doc['anomaly_count']} anomaly(ies).</p>",
    ]
    if doc["missing"]:
        parts.append(f"<p>Not found: {e(', '.join(doc['missing']))}</p>")
    for a in doc["anomalies"]:
        rows = "".join(f"<tr><th>{e(label)}</th><td>{e(_cell(a.get(key)))}</td></tr>" for label, key in _FIELDS)
        parts += [
            f'<section id="{e(str(a["id"]))}"><h2>Anomaly {e(str(a["id"]))}</h2>',
            f"<table>{rows}</table>",
            f"<h3>Why</h3><p>{e(str(a.get('why') or a.get('explanation') or ''))}</p>",
            f"<h3>Event</h3><pre>{e(json.dumps(a.get('event'), indent=2, default=str))}</pre>",
        ]
        if a.get("feedback"):
            items = "".join(
                f"<li>{e(str(f.get('created_at')))}: {e(str(f.get('feedback_type')))} {e(f.get('reason') or '')}</li>"
                for f in a["feedback"]
            )
            parts.append(f"<h3>Feedback</h3><ul>{items}</ul>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# -- a text-only PDF ------------------------------------------------------------------------------

_PAGE_LINES = 64
_LINE_CHARS = 105


def _pdf_text(line: str) -> bytes:
    text = line.encode("cp1252", "replace")
    return text.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def _wrapped(lines: Sequence[str]) -> list[str]:
    out = []
    for line in lines:
        line = line.expandtabs(4)
        while len(line) > _LINE_CHARS:
            out.append(line[:_LINE_CHARS])
            line = "    " + line[_LINE_CHARS:]
        out.append(line)
    return out


def pdf(lines: Sequence[str]) -> bytes:
    """``lines`` as an A4 PDF 1.4 document in 9-point Courier."""
    wrapped = _wrapped(lines) or [""]
    pages = [wrapped[i : i + _PAGE_LINES] for i in range(0, len(wrapped), _PAGE_LINES)]
    objects: list[bytes] = [b"<< /Type /Catalog /Pages 2 0 R >>", b""]  # the page tree is filled in below
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Courier /Encoding /WinAnsiEncoding >>")
    kids = []
    for page in pages:
        stream = b"BT /F1 9 Tf 11 TL 40 800 Td " + b" ".join(b"(" + _pdf_text(t) + b") '" for t in page) + b" ET"
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        content = len(objects)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents %d 0 R "
            b"/Resources << /Font << /F1 3 0 R >> >> >>" % content
        )
        kids.append(len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids),
        len(kids),
    )
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)
