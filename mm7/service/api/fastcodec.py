"""The API's JSON and base64 codecs: orjson and pybase64 when installed (``mm7[fast]``), the
stdlib otherwise, accepting exactly what the stdlib accepts and giving the same values.

On the MT intake a JSON request with an inline image spends about 8% of the event loop's time
in ``json.loads`` and ``base64.b64decode`` (BENCHMARKS.md, issue 15); both libraries do the same
work several times faster. Where they differ from the stdlib, the stdlib decides:

- orjson refuses what ``json.loads`` accepts (``NaN``/``Infinity``, lone surrogate escapes, a
  UTF-8 BOM, UTF-16/32 bodies, numbers out of a double's range): the body is parsed again by
  ``json.loads``, which accepts it or raises its own error;
- orjson reads an integer beyond 64 bits as a float where ``json.loads`` gives an int: a result
  holding a float of magnitude >= 2**63 is parsed again by ``json.loads`` (rare: the API takes
  no such numbers, and a campaign's bodies hold none);
- pybase64's ``validate=True`` accepts the same strings as the stdlib's (the tests compare
  them); only its error messages differ, and the API answers "not valid base64" for either.

Answers are encoded by ``json.dumps`` or ``orjson.dumps`` (``json.dumps`` again for what orjson
refuses): the same JSON value, orjson's without the spaces and with non-ASCII characters as
UTF-8 rather than ``\\uXXXX`` escapes; a value holding a float that is not finite (orjson writes
``null``, json.dumps ``NaN``) goes to json.dumps.
"""

from __future__ import annotations

import base64
import json
from types import ModuleType
from typing import Any

__all__ = ["b64decode", "dumps", "loads", "using"]

_orjson: ModuleType | None
_pybase64: ModuleType | None
try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the extra
    _orjson = None
try:
    import pybase64 as _pybase64
except ImportError:  # pragma: no cover - depends on the extra
    _pybase64 = None

#: orjson reads integers beyond int64/uint64 as floats; any float this large is checked again
_BIG = float(2**63)


def using() -> dict[str, str]:
    """Which library each codec uses now (``orjson``/``json``, ``pybase64``/``base64``)."""
    return {
        "json": "orjson" if _orjson is not None else "json",
        "base64": "pybase64" if _pybase64 is not None else "base64",
    }


def loads(raw: bytes) -> Any:
    """The JSON value of ``raw``, as ``json.loads(raw)`` gives it; raises what it raises
    (``ValueError``, ``UnicodeDecodeError``), and ``ValueError`` for a body nested deeper than
    the parsers go (``json.loads``'s ``RecursionError``)."""
    fast = _orjson
    if fast is not None:
        try:
            value = fast.loads(raw)
        except fast.JSONDecodeError:
            pass  # perhaps valid for json.loads (NaN, a BOM, UTF-16 ...): it decides below
        else:
            if not _has_big_float(value):
                return value
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _has_big_float(value: Any) -> bool:
    """Whether a float of magnitude >= 2**63 (an int orjson widened) or not finite (which orjson
    writes as ``null``) is anywhere in ``value`` (a loop, not recursion: a body may nest deep)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not -_BIG < item < _BIG:
                return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def dumps(value: Any) -> str:
    """``value`` as JSON text (an answer's body; ``aiohttp.web.json_response(dumps=...)``)."""
    fast = _orjson
    if fast is not None and not _has_big_float(value):
        try:
            text: str = fast.dumps(value).decode()
        except fast.JSONEncodeError:
            pass  # a lone surrogate, an int beyond 64 bits: json.dumps writes (or refuses) it
        else:
            return text
    return json.dumps(value)


def b64decode(text: str) -> bytes:
    """``base64.b64decode(text, validate=True)``: raises ``binascii.Error`` or ``ValueError``
    for a string that is not strict base64 (padding, characters outside the alphabet)."""
    fast = _pybase64
    if fast is not None:
        try:
            data: bytes = fast.b64decode(text, validate=True)
            return data
        except (ValueError, TypeError):
            # pybase64 refuses some strings the stdlib accepts (excess padding after a whole
            # quantum, "0000="): the stdlib decides, as for every other refusal
            pass
    return base64.b64decode(text, validate=True)
