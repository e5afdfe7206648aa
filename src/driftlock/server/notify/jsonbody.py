"""JSON bodies that a JavaScript receiver re-serializes byte for byte.

Driftlock's webhooks page verifies the signature in Node.js over ``JSON.stringify(req.body)``, the body as
parsed and serialized again, not over the bytes received. So a body is signed as it is written here:
compact, UTF-8, integer-like keys first in ascending order (the order a JavaScript object keeps them in),
numbers as ``Number.prototype.toString`` writes them (integers past 2**53 as the double JavaScript reads,
``NaN`` and infinities as ``null``), strings escaped as ``JSON.stringify`` escapes them (lone surrogates
included). For such a body ``JSON.stringify(JSON.parse(body)) == body``, and the Python verifier, which
signs the raw bytes, agrees.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

__all__ = ["dumps", "number"]

_ARRAY_INDEX_MAX = 2**32 - 2
_SURROGATE = re.compile("[\ud800-\udfff]")
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def dumps(value: Any) -> bytes:
    """``value`` as JavaScript would serialize the parsed body (other objects as ``str()``)."""
    return "".join(_parts(value)).encode("utf-8")


def number(value: float) -> str:
    """A float as ``Number.prototype.toString`` (ECMA-262 Number::toString) writes it."""
    if not math.isfinite(value):
        return "null"
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    digits_tuple, exponent = Decimal(repr(abs(value))).normalize().as_tuple()[1:]
    digits = "".join(map(str, digits_tuple))
    k = len(digits)
    n = int(exponent) + k  # the value is 0.<digits> * 10**n
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        e = n - 1
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        text = f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + text


def _integer(value: int) -> str:
    if abs(value) <= 2**53:
        return str(value)
    try:
        return number(float(value))  # what JSON.parse makes of it
    except OverflowError:
        return "null"  # Infinity in JavaScript, which JSON.stringify writes as null


def _string(value: str) -> str:
    text: str = _ENCODE(value)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _index(key: str) -> int | None:
    """The key's value if JavaScript treats it as an array index (kept first, in ascending order)."""
    if key.isdigit() and key.isascii() and (key == "0" or not key.startswith("0")):
        value = int(key)
        return value if value <= _ARRAY_INDEX_MAX else None
    return None


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, bool):
        return json.dumps(key)
    if isinstance(key, int):
        return _integer(key)
    if isinstance(key, float):
        return number(key) if math.isfinite(key) else ("NaN" if math.isnan(key) else json.dumps(key))
    return str(key)


def _parts(value: Any) -> list[str]:
    out: list[str] = []
    stack: list[Any] = [value]
    while stack:  # iterative: a deeply nested event cannot exhaust the stack
        item = stack.pop()
        if isinstance(item, _Literal):
            out.append(item.text)
        elif item is None:
            out.append("null")
        elif item is True:
            out.append("true")
        elif item is False:
            out.append("false")
        elif isinstance(item, str):
            out.append(_string(item))
        elif isinstance(item, int):
            out.append(_integer(item))
        elif isinstance(item, float):
            out.append(number(item))
        elif isinstance(item, Mapping):
            merged: dict[str, Any] = {}
            for k, v in item.items():
                merged[_key(k)] = v  # a later duplicate wins, as in JSON.parse, at the first one's place
            indexed = sorted((i, k) for k in merged if (i := _index(k)) is not None)
            keys = [k for _, k in indexed] + [k for k in merged if _index(k) is None]
            pending: list[Any] = [_Literal("{")]
            for n, k in enumerate(keys):
                pending += [_Literal(("," if n else "") + _string(k) + ":"), merged[k]]
            pending.append(_Literal("}"))
            stack.extend(reversed(pending))
        elif isinstance(item, list | tuple):
            pending = [_Literal("[")]
            for n, element in enumerate(item):
                if n:
                    pending.append(_Literal(","))
                pending.append(element)
            pending.append(_Literal("]"))
            stack.extend(reversed(pending))
        else:
            out.append(_string(str(item)))
    return out


class _Literal:
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text
