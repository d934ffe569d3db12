"""Relay outbox rows and opt-outs, written by the store's operations in their own transaction.

An MO, a status change, a delivery report or a read reply queues its relay event in the same
transaction as what it reports (so nothing committed is left unrelayed), and that transaction
also sends ``NOTIFY mm7_work, 'relay'`` (delivered at commit), which wakes the relay workers of
every instance. The relay mixin (``relay``) leases these rows; this module only writes them.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from mm7.service.store.outbox import MoRelay, OptOut, RelayKind, RelayStatus, status_event
from mm7.service.store.postgres.rows import dt, to_json
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


def _kannel(fields_json: str | None, url_key: str) -> dict[str, Any] | None:
    """A sendmms message's Kannel-style delivery: its ``url_key`` URL (dlr_url / rr_url) and
    who it is from; None for a message that did not come through sendmms."""
    if fields_json is None or '"sendmms"' not in fields_json:
        return None
    fields = json.loads(fields_json)
    sendmms = fields.get("sendmms")
    if not isinstance(sendmms, dict):
        return None
    return {"url": sendmms.get(url_key), "from": fields.get("from"), "user": fields.get("api_key")}


async def queue_status_event(
    conn: asyncpg.Connection,
    recipient_id: int,
    status: str,
    now: int,
    *,
    relay_all: bool,
    status_code: int | None = None,
    status_text: str | None = None,
) -> None:
    """Queue the status change of an MT recipient for its message's callback or, with
    ``relay_all``, the link's status hook."""
    row = await conn.fetchrow(
        "SELECT r.message_id, r.address, r.mm7_message_id, m.link, m.callback_url, m.api_key,"
        " m.fields FROM recipients r JOIN messages m ON m.id = r.message_id WHERE r.id = $1",
        recipient_id,
    )
    if row is None or (row[4] is None and not relay_all):
        return
    body = status_event(
        RelayKind.STATUS, message_id=row[0], recipient=row[1], status=status, at=dt(now),
        link=row[3], mm7_message_id=row[2], status_code=status_code, status_text=status_text,
    )  # fmt: skip
    kannel = _kannel(row[6], "dlr_url")
    if kannel is not None and kannel["url"] is not None:
        body["kannel"] = kannel
    # the message id is random; recipient ids are never reused
    key = f"status:{row[0]}:{recipient_id}:{status}"
    await insert_event(conn, RelayKind.STATUS, key, body, now, callback_url=row[4],
                       api_key=row[5], link=row[3], source_id=row[0])  # fmt: skip


def report_target(
    kind: RelayKind, callback_url: str | None, api_key: str | None, fields_json: str | None
) -> tuple[str | None, dict[str, Any] | None]:
    """Where a delivery report or read reply of a message goes: its callback_url, or for a
    sendmms message its dlr-url / rr-url (Kannel-style GET, described by the second value)."""
    url_key = "dlr_url" if kind is RelayKind.DELIVERY_REPORT else "rr_url"
    kannel = _kannel(fields_json, url_key)
    if kannel is None:
        return callback_url, None
    if kannel["url"] is None:
        return None, None
    return kannel["url"], {**kannel, "user": api_key}
