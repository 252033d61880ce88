"""Decoding untrusted JSON within bounds: nesting depth is checked before the decoder runs.

The standard decoder recurses once per nesting level, so a body of 60,000 ``[`` ends in a
RecursionError deep inside it, after the work is done. :func:`loads_bounded` measures the depth
first, at C speed (escapes and string literals are cut out with byte operations, the brackets
that remain are summed with numpy), and refuses a document nested deeper than the limit with a
ValueError. Integers longer than Python's digit limit (4,300) and other malformed input also
come out as ValueError, never as another exception type. Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

import numpy as np

MAX_JSON_DEPTH: Final = 32
"""Deepest nesting accepted in a request body or an event record (objects and arrays)."""

_BRACKETS = bytes(range(256)).translate(None, b"[]{}")  # every byte except the brackets
_STEP = np.zeros(256, dtype=np.int8)
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


class JSONTooDeep(ValueError):
    """A JSON document is nested deeper than allowed."""


def json_depth(text: str | bytes) -> int:
    """The deepest nesting of arrays and objects in ``text`` (0 for a scalar).

    Works on malformed text too (it is a bound, not a parse): brackets inside an unterminated
    string are counted, which can only over-estimate.
    """
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if b"\\" in raw:
        # Escapes first, left to right as a decoder reads them: after every "\\\\" pair is
        # gone, a remaining backslash-quote is an escaped quote inside a string.
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    if b'"' in raw:
        raw = b"".join(raw.split(b'"')[::2])  # drop the string literals: odd pieces
    brackets = raw.translate(None, _BRACKETS)
    opens = brackets.count(b"[") + brackets.count(b"{")
    if opens <= 1:
        return opens
    steps = _STEP[np.frombuffer(brackets, dtype=np.uint8)]
    return int(np.cumsum(steps, dtype=np.int32).max())


def check_depth(text: str | bytes, *, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise :class:`JSONTooDeep` when ``text`` nests deeper than ``max_depth``."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    # Fewer opening brackets than the limit cannot nest deeper than it: the common case
    # (a small request body) costs two counts and no array work.
    if raw.count(b"[") + raw.count(b"{") <= max_depth:
        return
    depth = json_depth(raw)
    if depth > max_depth:
        raise JSONTooDeep(f"nested deeper than {max_depth} levels")


def loads_bounded(
    text: str | bytes,
    *,
    max_depth: int = MAX_JSON_DEPTH,
    parse_int: Callable[[str], Any] | None = None,
) -> Any:
    """``json.loads`` for untrusted input; any problem is a ValueError with a one-line message.

    Checks the nesting depth first (:class:`JSONTooDeep`). Malformed JSON, invalid UTF-8,
    integers over the interpreter's digit limit and a decoder recursion error all become
    ValueError. ``parse_int`` is passed to the decoder.
    """
    check_depth(text, max_depth=max_depth)
    try:
        return json.loads(text, parse_int=parse_int)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    except RecursionError:
        raise JSONTooDeep("nested too deeply") from None
    except ValueError as exc:  # e.g. "Exceeds the limit (4300 digits) for integer string ..."
        raise ValueError(str(exc).split(";")[0].splitlines()[0]) from None
