"""How every backend writes values into its columns: times as epoch milliseconds, JSON as compact
text, time-ordered ids. One definition, so that ``mm7 store copy`` moves rows between backends
unchanged."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from mm7.service.store import jsontext
from mm7.service.store.records import JSONObject

__all__ = ["dt", "ms", "new_id", "opt_dt", "opt_ms", "to_json"]


def ms(when: datetime) -> int:
    """Milliseconds since the epoch; a naive datetime is refused (it would mean local time)."""
    if when.tzinfo is None:
        raise ValueError(f"naive datetime {when.isoformat()}: the store needs timezone-aware times")
    return int(when.timestamp() * 1000)


def opt_ms(when: datetime | None) -> int | None:
    """``ms`` of a time that may be missing."""
    return None if when is None else ms(when)


def dt(value: int) -> datetime:
    """The UTC datetime of epoch milliseconds."""
    return datetime.fromtimestamp(value / 1000, UTC)


def opt_dt(value: int | None) -> datetime | None:
    """``dt`` of a time that may be missing."""
    return None if value is None else dt(value)


def to_json(value: JSONObject | None) -> str:
    """Compact JSON text of a mapping (None: ``{}``), as the TEXT columns hold it."""
    return jsontext.dumps(dict(value) if value is not None else {})


def new_id(now_ms: int) -> str:
    """A time-ordered id (ms clock in hex, then 64 random bits): keeps B-tree inserts local."""
    return f"{now_ms:012x}{secrets.token_hex(8)}"
