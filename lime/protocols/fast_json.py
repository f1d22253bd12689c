"""JSON through orjson where it gives exactly what the standard library gives, and the standard library elsewhere.

orjson parses and writes 3-6x faster. Applied where that shows per request (docs/performance.md, "Per-message
costs"): extproc's request rewrite (~0.4 ms less for a body of 256 KiB), its reading of an answer's usage and its
usage event, ~10 µs of extproc's ~330 µs per chat request in process. Where orjson would not give the standard
library's result, it is not used:

* it reads an integer beyond 64 bits as a float (the standard library keeps every digit), which it then writes in
  exponent form (``1.8446744073709552e+19``): :func:`loads` and :func:`dumps` look for that form, and let the
  standard library read and write any document with a float of 1e16 or more;
* it refuses what the standard library accepts (``NaN``, ``Infinity``, ``1e400``, lone surrogates, UTF-16, a
  UTF-8 BOM, nesting past 1,024 levels) or refuses it differently: those go to the standard library, which
  accepts or raises as it always did;
* it writes some floats differently, never their digits: ``0.00002`` and ``2.5e-8`` where Python writes
  ``2e-05`` and ``2.5e-08``: :func:`dumps` declines any text with such a number in it.

The checks look at the text, so a string that merely looks like such a number (``"v1e+2"``, ``"0.0000"``) sends
a document to the standard library too: slower, never different.

Not for a client's request body in authz: the gateway must refuse duplicate keys there
(:mod:`lime.protocols.request_body`), which orjson cannot see.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

import orjson

__all__ = ["REFUSED", "dumps", "loads", "parse"]

#: What :func:`parse` returns for a document orjson refuses.
REFUSED: Final = object()


def parse(data: bytes | str) -> Any:
    """orjson's reading of the document, or :data:`REFUSED`. It holds no ``NaN`` or infinity (orjson refuses
    them), but may hold an integer beyond 64 bits as a float: write it with :func:`dumps`, which declines those,
    or read with :func:`loads` instead."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return REFUSED


def loads(data: bytes | str) -> Any:
    """``json.loads(data)``: the same value, the same error."""
    value = parse(data)
    if value is REFUSED or (isinstance(value, float | list | dict) and _exponents(orjson.dumps(value), large=True)):
        return json.loads(data)
    return value


def dumps(value: Any) -> bytes | None:
    """``json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()``, or ``None`` when orjson would
    write other bytes, or none (an integer beyond 64 bits, a lone surrogate, a key that is not a string) or a float
    of 1e16 or more (perhaps such an integer, read by :func:`parse`): the caller then asks the standard library.

    ``value`` is made of JSON's types (dict, list, tuple, str, int, float, bool, None: orjson would also write a
    dataclass or a datetime, which the standard library refuses) with finite floats (orjson writes ``NaN`` as
    ``null``). Every caller's is: a document from :func:`parse`, or Lime's own records of strings, counts and clock
    readings."""
    try:
        text = orjson.dumps(value)
    except orjson.JSONEncodeError:
        return None
    return None if _exponents(text, large=True, small=True) or _SMALL_DECIMAL.search(text) else text


def _exponents(text: bytes, *, large: bool = False, small: bool = False) -> bool:
    """Whether orjson's text holds (or may: a string can look like one) a float in exponent form: ``large``, 1e16
    or more (``1e+16``; perhaps an integer beyond 64 bits read as a float), or ``small``, with a one-digit
    negative exponent (``2.5e-8``, where Python writes ``2.5e-08``)."""
    for found in _EXPONENT.finditer(text):
        at = found.start()
        if not (text[at - 1:at].isdigit() and text[at + 2:at + 3].isdigit()):
            continue  # "one-time", "e+x": no number ("9e-4b" in a UUID is caught below)
        if text[at + 1] == _PLUS:
            if large:
                return True
        elif small and text[at + 3:at + 4] in _NUMBER_ENDS:
            return True
    return False


# re's search finds these faster than bytes.find (whose search is slow for a frequent first byte such as "e").
_EXPONENT = re.compile(rb"e[-+]")
_PLUS = ord("+")
#: Where orjson ends a number (it writes no spaces).
_NUMBER_ENDS = (b",", b"]", b"}", b"")
#: orjson's form of a float from 1e-5 to 1e-4 (``0.00002``; Python ``2e-05``).
_SMALL_DECIMAL = re.compile(rb"0\.0000")
