"""An event's leaves: the (field, value) pairs the field surprise score counts.

A JSON event's scalar values are its leaves, under their dotted paths. Two kinds of value are
split further, because whole they are different on almost every event and one part of them is what
changes:

* free text (a value with spaces: a log message) becomes its *template*, the words with every
  variable part (a token with a digit, a symbol or a tokenized id; a quoted string) replaced by
  ``*``, and one leaf per variable part under the template and its place in it. "Request
  finished GET /api/orders/<NUM> 200 in <5000ms" is then the template everyone's finished
  requests share, a route seen before, and a duration the template never had.
* a URL or path with a query string becomes its path with the query's keys, and one leaf per
  query value.

Variable parts also get a *shape* leaf (letters as ``a``, digits as ``9``, symbols kept), so a
search for ever-different words reads alike and a search for ``1' OR '1'='1`` does not.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any
from urllib.parse import parse_qsl

__all__ = ["leaves", "shape"]

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|\S+")
_CONSTANT = re.compile(r"[(\[]?[A-Za-z][A-Za-z_-]*[)\]:,.;!?]*")
_LETTERS = re.compile(r"[A-Za-z]+")
_DIGITS = re.compile(r"[0-9]+")
_TOKEN = re.compile(r"<[A-Z0-9.]+>|<\d[\d.]*")
_URL = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.-]*://[^/?#\s]*)?/[^?#\s]*\?")
MAX_PARTS = 16
"""Variable parts of one text given their own leaves; the rest are in the template only."""


@functools.lru_cache(maxsize=8192)
def shape(value: str) -> str:
    """Letters as ``a``, digits as ``9``, tokens (``<NUM>``, ``<250``) as ``#``, symbols as they are."""
    return _LETTERS.sub("a", _DIGITS.sub("9", _TOKEN.sub("#", value)))


def _text(path: str, value: str, out: list[tuple[str, str]]) -> None:
    words = _QUOTED.findall(value)
    constant = [_CONSTANT.fullmatch(w) is not None for w in words]
    parts = [w for w, fixed in zip(words, constant, strict=True) if not fixed]
    template = " ".join(w if fixed else "*" for w, fixed in zip(words, constant, strict=True))
    out.append((path, template))
    for i, part in enumerate(parts[:MAX_PARTS]):
        key = f"{path}|{template}|{i}"
        out.append((key, part))
        out.append((key + "#", shape(part)))


def _url(path: str, value: str, out: list[tuple[str, str]]) -> None:
    base, _, query = value.partition("?")
    pairs = parse_qsl(query, keep_blank_values=True)  # values decoded, "+" as a space
    out.append((path, base + "?" + "&".join(sorted({k for k, _ in pairs}))))
    for key, part in pairs[:MAX_PARTS]:
        leaf = f"{path}?{key}"
        out.append((leaf, part))
        out.append((leaf + "#", shape(part)))


def _leaf(path: str, value: str, out: list[tuple[str, str]]) -> None:
    if " " in value:
        _text(path, value, out)
    elif _URL.match(value):
        _url(path, value, out)
    else:
        out.append((path, value))


@functools.lru_cache(maxsize=16384)
def leaves(event: bytes) -> tuple[tuple[str, str], ...]:
    """The event's leaves as (path, value) pairs (empty when it is not a JSON object). Cached: an event
    passes through dozens of detections while it moves from window to baseline."""
    try:
        value = json.loads(event)
    except ValueError:
        return ()
    out: list[tuple[str, str]] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, child in node.items():
                walk(child, f"{path}.{key}" if path else str(key))
        elif isinstance(node, list):
            out.append((path, json.dumps(node, sort_keys=True)))
        elif isinstance(node, str):
            _leaf(path, node, out)
        else:
            out.append((path, str(node)))

    if isinstance(value, dict):
        walk(value, "")
    return tuple(out)
