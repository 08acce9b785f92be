"""The exact source text of a top-level JSON array's elements and a top-level object's members.

Batches keep each element's bytes as sent for the dead-letter store, and OneNET signs the
`msg` member as it appears in the body, so neither may be re-serialised. Each value is parsed
in place by the standard (C) decoder, which also says where it ends; when it cannot parse one
(bad syntax, nesting too deep) a bracket-and-string scanner without recursion finds the end, so
one bad batch element fails alone.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple, TypeVar

from .errors import DecodeError
from .values import JSON_DECODER

_WS = re.compile(r"[ \t\n\r]*")
_STRUCT = re.compile(r'[\[\]{}"]')
_STRING_REST = re.compile(r'(?:[^"\\\x00-\x1f]|\\.)*"', re.DOTALL)
_SCALAR = re.compile(r"[^,\]}\s]+")
_T = TypeVar("_T")


class Element(NamedTuple):
    """One value as it appears in the text: its source, and its parsed value or why it has none."""

    source: str
    value: Any
    error: DecodeError | None


def array_elements(text: str, what: str) -> list[Element]:
    """Each element of the JSON array `text`; DecodeError if the array itself does not parse."""
    i = _skip(text, 0)
    if text[i : i + 1] != "[":
        raise DecodeError(f"{what} is not a JSON array")
    out: list[Element] = []
    i = _skip(text, i + 1)
    if text[i : i + 1] == "]":
        return _closed(out, text, i + 1, what)
    while True:
        end, element = _element(text, i, f"element {len(out)} of {what}")
        out.append(element)
        i = _skip(text, end)
        sep = text[i : i + 1]
        if sep == "]":
            return _closed(out, text, i + 1, what)
        if sep != ",":
            raise DecodeError(f"{what} has no ',' or ']' after element {len(out) - 1}")
        i = _skip(text, i + 1)


def object_members(text: str, what: str) -> list[tuple[str, Element]]:
    """(key, element) of each member of the JSON object `text`, in order; any member that does
    not parse is a DecodeError."""
    i = _skip(text, 0)
    if text[i : i + 1] != "{":
        raise DecodeError(f"{what} is not a JSON object")
    out: list[tuple[str, Element]] = []
    i = _skip(text, i + 1)
    if text[i : i + 1] == "}":
        return _closed(out, text, i + 1, what)
    while True:
        key_end, key = _element(text, i, f"a key in {what}")
        if key.error is not None or not isinstance(key.value, str):
            raise DecodeError(f"{what} has a member whose key is not a string")
        i = _skip(text, key_end)
        if text[i : i + 1] != ":":
            raise DecodeError(f"{what} has no ':' after key {key.value[:40]!r}")
        i = _skip(text, i + 1)
        end, element = _element(text, i, f"member {key.value[:40]!r} of {what}")
        if element.error is not None:
            raise element.error
        out.append((key.value, element))
        i = _skip(text, end)
        sep = text[i : i + 1]
        if sep == "}":
            return _closed(out, text, i + 1, what)
        if sep != ",":
            raise DecodeError(f"{what} has no ',' or '}}' after member {key.value[:40]!r}")
        i = _skip(text, i + 1)


def _element(text: str, i: int, what: str) -> tuple[int, Element]:
    """(end index, element) of the value starting at `i`."""
    try:
        value, end = JSON_DECODER.raw_decode(text, i)
        return end, Element(text[i:end], value, None)
    except RecursionError:
        error = DecodeError(f"{what} is nested too deeply")
    except ValueError as e:
        error = DecodeError(f"{what} is not valid JSON: {str(e).splitlines()[0][:120]}")
    end = value_end(text, i, what)
    return end, Element(text[i:end], None, error)


def value_end(text: str, i: int, what: str) -> int:
    """Index just past the JSON value starting at `i` (its syntax inside is not checked)."""
    first = text[i : i + 1]
    if first == '"':
        m = _STRING_REST.match(text, i + 1)
        if m is None:
            raise DecodeError(f"{what} has an unterminated or invalid string at offset {i}")
        return m.end()
    if first in ("[", "{"):
        depth = 0
        pos = i
        while True:
            m = _STRUCT.search(text, pos)
            if m is None:
                raise DecodeError(f"{what} ends inside an array or object opened at offset {i}")
            ch = m.group()
            if ch == '"':
                s = _STRING_REST.match(text, m.end())
                if s is None:
                    raise DecodeError(f"{what} has an unterminated or invalid string at offset {m.start()}")
                pos = s.end()
                continue
            depth += 1 if ch in "[{" else -1
            pos = m.end()
            if depth == 0:
                return pos
    m = _SCALAR.match(text, i)
    if m is None:
        raise DecodeError(f"{what} is missing a value at offset {i}")
    return m.end()


def _skip(text: str, i: int) -> int:
    m = _WS.match(text, i)
    assert m is not None  # the pattern matches the empty string
    return m.end()


def _closed(out: _T, text: str, i: int, what: str) -> _T:
    """`out` if nothing but whitespace follows index `i`."""
    if _skip(text, i) != len(text):
        raise DecodeError(f"{what} has text after its end")
    return out
