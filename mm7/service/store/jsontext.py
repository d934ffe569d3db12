"""JSON text the gateway writes: the store's JSON columns and the relay's event bodies. orjson
when installed (``mm7[fast]``), the stdlib otherwise; the store reads them back with
``json.loads``.

Writing is orjson's: an MO costs three encodings (its fields, its relay event, the hook's
body), ~9-14 us each with ``json`` and under 1 us with orjson (BENCHMARKS.md, "Issue 15: JSON
text with orjson"). Reading is ``json.loads``'s: orjson reads an int beyond 64 bits as a float,
and the check that guards against it (a scan for a run of 19 digits) cost more than the 3 us
orjson saves on a 1.2 KB event. The documents are the gateway's own, so what orjson writes
differently never changes a value:

- a float that is not finite, which JSON cannot hold, is written ``null`` (``json.dumps``
  wrote the non-standard ``NaN``, which PostgreSQL's ``::jsonb`` and most hook receivers refuse);
- what orjson refuses (an int beyond 64 bits, a lone surrogate, a non-string key) is written by
  ``json.dumps``, escaped to ASCII; non-ASCII text is UTF-8 rather than ``\\uXXXX`` escapes;
- dataclasses and datetimes are refused as ``json.dumps`` refuses them (TypeError).
"""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

__all__ = ["dumps", "dumps_bytes"]

_orjson: ModuleType | None
try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the extra
    _orjson = None

#: types orjson would write that json.dumps refuses: handed to ``default``, which refuses them
_OPTIONS = 0
if _orjson is not None:
    _OPTIONS = _orjson.OPT_PASSTHROUGH_DATACLASS | _orjson.OPT_PASSTHROUGH_DATETIME


def _refuse(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def dumps_bytes(value: Any) -> bytes:
    """``value`` as compact JSON, UTF-8 (module docstring for what differs from ``json``)."""
    fast = _orjson
    if fast is not None:
        try:
            out: bytes = fast.dumps(value, default=_refuse, option=_OPTIONS)
        except fast.JSONEncodeError as exc:
            if isinstance(exc.__cause__, TypeError):
                raise exc.__cause__ from None
        else:
            return out
    return json.dumps(value, separators=(",", ":")).encode()


def dumps(value: Any) -> str:
    """``dumps_bytes`` as text (a TEXT column)."""
    return dumps_bytes(value).decode()
