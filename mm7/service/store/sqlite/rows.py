"""Row helpers shared by the SQLite store's modules: times as epoch ms, JSON, ids, events."""

from __future__ import annotations

import sqlite3

from mm7.service.store.columns import dt, ms, new_id, opt_dt, opt_ms, to_json
from mm7.service.store.records import JSONObject, PartRecord

#: the column conversions (``mm7.service.store.columns``) with this backend's own helpers
__all__ = ["dt", "event", "ms", "new_id", "opt_dt", "opt_ms", "parts", "to_json"]


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
