"""Reading bytes written by someone else: bounded JSON, one byte form per value.

Python's JSON parser recurses once per nesting level, and the Ethereum libraries DSO imports raise the
interpreter's recursion limit to 100,000 for their own needs: a few hundred kilobytes of ``[[[[...`` would
then overflow the C stack and kill the process without a message. Every JSON document from outside
(records, batches, library files, API replies, run files) is therefore measured for nesting before it is
parsed, with a plain loop that cannot recurse. Strict decoders also accept exactly one byte form per
value, so that equal objects always have equal content ids.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

from dso.errors import DSOError

MAX_DEPTH = 32  # no document DSO reads nests deeper than a handful of levels


def nesting_depth(text: str, limit: int = MAX_DEPTH) -> int:
    """How deep brackets nest outside double-quoted strings, counting stops just past `limit`."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif char in "]}":
            depth -= 1
    return deepest


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def load_json(data: bytes | str, error: type[DSOError], what: str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON from outside: UTF-8, nesting at most `max_depth`, no NaN or Infinity; else one-line `error`."""
    if isinstance(data, (bytes, bytearray)):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise error(f"{what} is not valid UTF-8") from None
    else:
        text = data
    if nesting_depth(text, max_depth) > max_depth:
        raise error(f"{what} nests deeper than {max_depth} levels; refused")
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise error(f"{what} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except (ValueError, RecursionError) as exc:
        raise error(f"{what} is not valid JSON: {exc}") from None


def is_int(value: Any) -> bool:
    """An integer that is not a bool (JSON's true must never pass for 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float that is not a bool."""
    return (is_int(value) or isinstance(value, float)) and math.isfinite(value)


def b64decode_canonical(text: Any, error: type[DSOError], what: str) -> bytes:
    """Standard base64 with padding, in its one canonical form (no stray padding bits, no whitespace)."""
    if not isinstance(text, str):
        raise error(f"{what} must be base64 text")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise error(f"{what} is not valid base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise error(f"{what} is not in canonical base64 form")
    return raw
