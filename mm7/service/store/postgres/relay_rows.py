"""Relay outbox rows and opt-outs, written by the store's operations in their own transaction.

An MO, a status change, a delivery report or a read reply queues its relay event in the same
transaction as what it reports (so nothing committed is left unrelayed), and that transaction
also sends ``NOTIFY mm7_work, 'relay'`` (delivered at commit), which wakes the relay workers of
every instance. The relay mixin (``relay``) leases these rows; this module only writes them.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from mm7.service.store.outbox import MoRelay, OptOut, RelayKind, RelayStatus
from mm7.service.store.postgres.rows import to_json
from mm7.service.store.records import normalize_address

if TYPE_CHECKING:
    import asyncpg

#: wakes every instance's relay workers once the transaction sending it commits
NOTIFY_RELAY = "SELECT pg_notify('mm7_work', 'relay')"
#: wakes the dispatchers of link $1 on every instance once the transaction commits
NOTIFY_MT = "SELECT pg_notify('mm7_work', 'mt:' || $1::text)"

_INSERT_EVENT = (
    "WITH i AS (INSERT INTO relay_outbox (kind, idempotency_key, hook, callback_url, api_key,"
    " link, sender_key, source_id, media, event, status, next_attempt_at, created_at,"
    " updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $12)"
    " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id)"
    " SELECT pg_notify('mm7_work', 'relay') FROM i"
)


async def insert_event(
    conn: asyncpg.Connection,
    kind: RelayKind,
    key: str,
    event: dict[str, Any],
    now: int,
    *,
    hook: str | None = None,
    callback_url: str | None = None,
    api_key: str | None = None,
    link: str | None = None,
    sender_key: str | None = None,
    source_id: str | None = None,
    media: str | None = None,
) -> None:
    """Queue one event and notify the relay (nothing when its idempotency key is queued
    already: a repeat)."""
    await conn.execute(
        _INSERT_EVENT, kind.value, key, hook, callback_url, api_key, link, sender_key,
        source_id, media, to_json(event), RelayStatus.PENDING.value, now,
    )  # fmt: skip


async def insert_mo_event(
    conn: asyncpg.Connection, mo_id: str, link: str, relay: MoRelay, now: int
) -> None:
    """Queue the relay of a just-stored MO to its route's hook."""
    await insert_event(
        conn, RelayKind.MO, f"mo:{mo_id}", {**relay.event, "id": mo_id}, now,
        hook=relay.hook, link=link, sender_key=relay.sender_key, source_id=mo_id,
        media=relay.media,
    )  # fmt: skip


async def apply_opt_out(
    conn: asyncpg.Connection, opt_out: OptOut, link: str, mo_id: str, now: int
) -> None:
    """STOP adds the sender to the suppression list, START removes it."""
    key = normalize_address(opt_out.address)
    if opt_out.action == "stop":
        await conn.execute(
            "INSERT INTO suppressions (address_key, address, word, link, mo_id, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (address_key) DO UPDATE SET"
            " address = excluded.address, word = excluded.word, link = excluded.link,"
            " mo_id = excluded.mo_id, created_at = excluded.created_at",
            key, opt_out.address, opt_out.word, link, mo_id, now,
        )  # fmt: skip
    else:
        await conn.execute("DELETE FROM suppressions WHERE address_key = $1", key)


async def suppressed_keys(conn: asyncpg.Connection, keys: Collection[str]) -> set[str]:
    """Which of the normalised addresses ``keys`` are suppressed (one statement)."""
    rows = await conn.fetch(
        "SELECT address_key FROM suppressions WHERE address_key = ANY($1::text[])",
        list(dict.fromkeys(keys)),
    )
    return {r[0] for r in rows}
