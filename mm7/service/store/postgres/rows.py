"""Row helpers shared by the PostgreSQL store's modules: times as epoch ms, JSON, ids, parts."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from mm7.service.store.columns import dt, ms, new_id, opt_dt, opt_ms, to_json
from mm7.service.store.records import PartRecord

if TYPE_CHECKING:
    import asyncpg

#: the column conversions (``mm7.service.store.columns``) with this backend's own helpers
__all__ = [
    "MESSAGE_PARTS",
    "MO_PARTS",
    "dt",
    "message_parts",
    "mo_parts",
    "ms",
    "new_id",
    "new_token",
    "opt_dt",
    "opt_ms",
    "part_records",
    "to_json",
]


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
