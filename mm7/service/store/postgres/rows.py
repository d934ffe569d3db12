"""Row helpers shared by the PostgreSQL store's modules: times as epoch ms, JSON, ids, parts."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from mm7.service.store.records import JSONObject, PartRecord

if TYPE_CHECKING:
    import asyncpg


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
    return json.dumps(dict(value) if value is not None else {}, separators=(",", ":"))


def new_id(now_ms: int) -> str:
    """A time-ordered id (ms clock in hex, then 64 random bits): keeps B-tree inserts local."""
    return f"{now_ms:012x}{secrets.token_hex(8)}"


def new_token() -> str:
    """A fencing token for one lease call: its items carry it, their outcomes must present it."""
    return secrets.token_hex(8)


#: the parts of one message or MO: ``{table}`` and ``{owner}`` filled in by ``parts_sql``
_PARTS = (
    "SELECT p.position, p.sha256, p.content_type, m.size, p.content_id, p.content_location"
    " FROM {table} p JOIN media m ON m.sha256 = p.sha256 WHERE p.{owner} = $1"
    " ORDER BY p.position"
)
MESSAGE_PARTS = _PARTS.format(table="message_media", owner="message_id")
MO_PARTS = _PARTS.format(table="mo_media", owner="mo_id")


def part_records(rows: list[asyncpg.Record]) -> tuple[PartRecord, ...]:
    """``PartRecord``s of rows selected by ``MESSAGE_PARTS`` or ``MO_PARTS``."""
    return tuple(PartRecord(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows)


async def message_parts(conn: asyncpg.Connection, message_id: str) -> tuple[PartRecord, ...]:
    """The parts of an MT message, in order."""
    return part_records(await conn.fetch(MESSAGE_PARTS, message_id))


async def mo_parts(conn: asyncpg.Connection, mo_id: str) -> tuple[PartRecord, ...]:
    """The parts of an MO message, in order."""
    return part_records(await conn.fetch(MO_PARTS, mo_id))
