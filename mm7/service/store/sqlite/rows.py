"""Row helpers shared by the SQLite store's modules: times as epoch ms, JSON, ids, events."""

from __future__ import annotations

import json
import secrets
import sqlite3
from datetime import UTC, datetime

from mm7.service.store.records import JSONObject, PartRecord


def ms(when: datetime) -> int:
    """Milliseconds since the epoch; a naive datetime is refused (it would mean local time)."""
    if when.tzinfo is None:
        raise ValueError(f"naive datetime {when.isoformat()}: the store needs timezone-aware times")
    return int(when.timestamp() * 1000)


def opt_ms(when: datetime | None) -> int | None:
    return None if when is None else ms(when)


def dt(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


def opt_dt(value: int | None) -> datetime | None:
    return None if value is None else dt(value)


def to_json(value: JSONObject | None) -> str:
    return json.dumps(dict(value) if value is not None else {}, separators=(",", ":"))


def new_id(now_ms: int) -> str:
    """A time-ordered id (ms clock in hex, then 64 random bits): keeps B-tree inserts local."""
    return f"{now_ms:012x}{secrets.token_hex(8)}"


def event(
    conn: sqlite3.Connection,
    message_id: str,
    recipient_id: int | None,
    kind: str,
    status: str | None,
    details: JSONObject,
    now: int,
) -> None:
    conn.execute(
        "INSERT INTO events (message_id, recipient_id, kind, status, details, at)"
        " VALUES (?,?,?,?,?,?)",
        (message_id, recipient_id, kind, status, to_json(details), now),
    )


def parts(
    conn: sqlite3.Connection, table: str, owner_column: str, owner_id: str
) -> tuple[PartRecord, ...]:
    return tuple(
        PartRecord(p[0], p[1], p[2], p[3], p[4], p[5])
        for p in conn.execute(
            f"SELECT p.position, p.sha256, p.content_type, m.size, p.content_id,"
            f" p.content_location FROM {table} p JOIN media m ON m.sha256 = p.sha256"
            f" WHERE p.{owner_column}=? ORDER BY p.position",
            (owner_id,),
        )
    )
