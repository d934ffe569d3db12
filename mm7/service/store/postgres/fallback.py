"""The PostgreSQL store's SMS fallback rows (``fallback_sms``, migration 4, and their parts,
``fallback_parts``, migration 5; the index that finds the rows to expire, migration 6): the same
operations and rules as ``sqlite/fallback.py``, on asyncpg. A part's receipt and its send's
``submitted`` commit meet on an advisory lock keyed by (SMS link, part id), so a receipt racing
that commit is either seen by it (kept early) or sees its part; receipts of one row's parts
queue on the row's lock, so the last one settles it. Rows are leased with ``FOR UPDATE SKIP
LOCKED`` (besides the ``fallback`` named lease the worker runs under), so two workers can never
hold one row; every change's relay event notifies the other instances' relay (``insert_event``),
and a queued row notifies them too (``NOTIFY mm7_work, 'relay'``, which the runtime's
``on_relay`` answers by waking its relay and fallback workers).

A mixin of ``PostgresStore``; ``queue_fallback`` is called by its ``fail`` and delivery-report
recording inside their transactions.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from mm7.service.store import tally
from mm7.service.store.early import PG_LOCK_CLASS
from mm7.service.store.outbox import RelayKind
from mm7.service.store.parts import part_list, settle_parts
from mm7.service.store.postgres.base import PostgresBase, asyncpg
from mm7.service.store.postgres.relay_rows import NOTIFY_RELAY, insert_event
from mm7.service.store.postgres.rows import dt, ms, to_json
from mm7.service.store.records import (
    NO_RECEIPT,
    OUTCOME_UNKNOWN,
    FallbackItem,
    FallbackRecord,
    FallbackStatus,
)

__all__ = ["PostgresFallback", "queue_fallback"]

#: receipts nobody claimed are kept this long (a receipt that beat its send's commit)
EARLY_RECEIPT_MS = 86_400_000

_ROW = (
    "f.id, f.message_id, f.recipient_id, f.address, f.sms_link, f.status, f.trigger, f.sms_id,"
    " f.error, f.attempts, f.created_at, f.updated_at"
)
_QUEUED, _SENDING = FallbackStatus.QUEUED.value, FallbackStatus.SENDING.value
#: a part's receipt and its send's commit meet here (module docstring)
_LOCK_PART = f"SELECT pg_advisory_xact_lock({PG_LOCK_CLASS}, hashtext($1 || ' ' || $2))"


def _record(r: asyncpg.Record) -> FallbackRecord:
    return FallbackRecord(r[0], r[1], r[2], r[3], r[4], FallbackStatus(r[5]), r[6], r[7], r[8],
                          r[9], dt(r[10]), dt(r[11]))  # fmt: skip


async def fallback_event(
    conn: asyncpg.Connection,
    fallback_id: int,
    status: FallbackStatus,
    now: int,
    relay_all: bool,
) -> None:
    """The ``fallback_sms`` event of a change: in the message's history, and in the relay
    outbox for its callback_url (or the link's status hook), in the caller's transaction."""
    row = await conn.fetchrow(
        f"SELECT {_ROW}, m.callback_url, m.api_key, m.link, m.fields::jsonb ? 'sendmms'"
        " FROM fallback_sms f JOIN messages m ON m.id = f.message_id WHERE f.id = $1",
        fallback_id,
    )
    if row is None:
        return
    tally.note(status.value)  # mm7_fallback_sms_total, once the transaction commits
    record = _record(row)
    callback, api_key, link = row[12], row[13], row[14]
    if row[15]:
        callback = None  # a sendmms message's callback is its Kannel dlr-url: no SMS events
    details = {"sms_link": record.sms_link, "sms_id": record.sms_id, "error": record.error,
               "trigger": record.trigger}  # fmt: skip
    await conn.execute(
        "INSERT INTO events (message_id, recipient_id, kind, status, details, at)"
        " VALUES ($1, $2, 'fallback_sms', $3, $4, $5)",
        record.message_id, record.recipient_id, status.value, to_json(details), now,
    )  # fmt: skip
    if callback is None and not relay_all:
        return
    body = {
        "type": RelayKind.FALLBACK_SMS.value,
        "message_id": record.message_id,
        "recipient": record.address,
        "status": status.value,
        "link": link,
        **details,
        "at": dt(now).isoformat().replace("+00:00", "Z"),
    }
    key = f"fallback_sms:{record.message_id}:{record.recipient_id}:{status.value}"
    await insert_event(conn, RelayKind.FALLBACK_SMS, key, body, now, callback_url=callback,
                       api_key=api_key, link=link, source_id=record.message_id)  # fmt: skip


async def queue_fallback(
    conn: asyncpg.Connection,
    message_id: str,
    recipient_id: int,
    trigger: str,
    now: int,
    relay_all: bool,
) -> bool:
    """In the transaction that fails ``recipient_id``: queue its SMS when its message asked for
    one, once (unique per message and recipient). True when a row was queued."""
    row = await conn.fetchrow(
        "SELECT m.fields::jsonb -> 'fallback' ->> 'sms_link',"
        " (m.fields::jsonb -> 'fallback' ->> 'text_max')::int, r.address FROM recipients r"
        " JOIN messages m ON m.id = r.message_id WHERE r.id = $1",
        recipient_id,
    )
    if row is None or row[0] is None:
        return False
    fallback_id = await conn.fetchval(
        "INSERT INTO fallback_sms (message_id, recipient_id, address, sms_link, text_max,"
        " trigger, status, next_attempt_at, created_at, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $8)"
        " ON CONFLICT (message_id, recipient_id) DO NOTHING RETURNING id",
        message_id, recipient_id, row[2], row[0], row[1] or 160, trigger, _QUEUED, now,
    )  # fmt: skip
    if fallback_id is None:
        return False
    await fallback_event(conn, fallback_id, FallbackStatus.QUEUED, now, relay_all)
    # with no relay event (no callback_url) nothing else notifies: the instance holding the
    # fallback lease sends it now (the runtime's on_relay wakes its fallback worker too; a
    # second NOTIFY of the same payload in one transaction is delivered once)
    await conn.execute(NOTIFY_RELAY)
    return True


class PostgresFallback(PostgresBase):
    """The fallback worker's and the receipts' operations of ``PostgresStore``."""

    _relay_all_statuses: bool

    async def lease_fallback(self, owner: str, n: int, ttl: timedelta) -> list[FallbackItem]:
        """Fail the rows found ``sending`` past their lease (outcome unknown: never sent
        twice), then lease up to ``n`` due ``queued`` rows (attempt counted)."""
        now = self._now_ms()
        until = now + int(ttl.total_seconds() * 1000)
        relay_all = self._relay_all_statuses

        async def op(conn: asyncpg.Connection) -> list[FallbackItem]:
            stuck = await conn.fetch(
                "UPDATE fallback_sms SET status = 'failed', error = $1, lease_owner = NULL,"
                " lease_token = NULL, lease_expires_at = NULL, updated_at = $2"
                " WHERE id IN (SELECT id FROM fallback_sms WHERE status = $3"
                " AND lease_expires_at <= $2 FOR UPDATE SKIP LOCKED) RETURNING id",
                OUTCOME_UNKNOWN, now, _SENDING,
            )  # fmt: skip
            for row in stuck:
                await fallback_event(conn, row[0], FallbackStatus.FAILED, now, relay_all)
            token = secrets.token_hex(8)
            rows = await conn.fetch(
                "UPDATE fallback_sms f SET lease_owner = $1, lease_token = $2,"
                " lease_expires_at = $3, attempts = f.attempts + 1, updated_at = $4"
                " FROM (SELECT id FROM fallback_sms WHERE status = $5 AND next_attempt_at <= $4"
                " AND (lease_expires_at IS NULL OR lease_expires_at <= $4)"
                " ORDER BY next_attempt_at, id LIMIT $6 FOR UPDATE SKIP LOCKED) d,"
                " messages m WHERE f.id = d.id AND m.id = f.message_id"
                " RETURNING f.id, f.message_id, f.address, f.sms_link, f.text_max, f.attempts,"
                " f.created_at, m.created_at, m.fields",
                owner, token, until, now, _QUEUED, n,
            )  # fmt: skip
            return [
                FallbackItem(
                    id=r[0],
                    message_id=r[1],
                    address=r[2],
                    sms_link=r[3],
                    text_max=r[4],
                    attempts=r[5],
                    lease_token=token,
                    lease_expires_at=dt(until),
                    created_at=dt(r[6]),
                    message_created_at=dt(r[7]),
                    fields=json.loads(r[8]),
                )  # fmt: skip
                for r in sorted(rows, key=lambda r: r[0])
            ]

        return await self._write(op)

    async def fallback_sending(self, item: FallbackItem, ttl: timedelta) -> bool:
        """Commit ``sending`` before the SMS goes out; False when the lease is lost."""
        now = self._now_ms()
        until = now + int(ttl.total_seconds() * 1000)
        done = await self._fetchval_write(
            "UPDATE fallback_sms SET status = $1, lease_expires_at = $2, updated_at = $3"
            " WHERE id = $4 AND lease_token = $5 AND status = $6 RETURNING id",
            _SENDING, until, now, item.id, item.lease_token, _QUEUED,
        )  # fmt: skip
        return done is not None

    async def _fetchval_write(self, statement: str, *args: Any) -> Any:
        async def op(conn: asyncpg.Connection) -> Any:
            return await conn.fetchval(statement, *args)

        return await self._write(op)

    async def fallback_submitted(
        self, item: FallbackItem, sms_id: str, part_ids: Sequence[str] = ()
    ) -> bool:
        """``submitted`` with ``sms_id`` and every part's id (``part_ids``, ``sms_id`` first;
        none: one part); receipts kept early are applied in the same commit."""
        parts = part_list(sms_id, part_ids)
        now = self._now_ms()
        relay_all = self._relay_all_statuses

        async def op(conn: asyncpg.Connection) -> bool:
            done = await conn.fetchval(
                "UPDATE fallback_sms SET status = 'submitted', sms_id = $1, error = NULL,"
                " lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,"
                " updated_at = $2 WHERE id = $3 AND lease_token = $4 AND status = $5"
                " RETURNING id",
                sms_id, now, item.id, item.lease_token, _SENDING,
            )  # fmt: skip
            if done is None:
                return False
            await fallback_event(conn, item.id, FallbackStatus.SUBMITTED, now, relay_all)
            for position, part_id in enumerate(parts):
                await conn.execute(_LOCK_PART, item.sms_link, part_id)
                early = await conn.fetchrow(
                    "DELETE FROM fallback_receipts WHERE sms_link = $1 AND sms_id = $2"
                    " RETURNING status, error",
                    item.sms_link, part_id,
                )  # fmt: skip
                await conn.execute(
                    "INSERT INTO fallback_parts (sms_link, part_id, fallback_id, position,"
                    " status, error) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                    item.sms_link, part_id, item.id, position,
                    *(early if early is not None else (None, None)),
                )  # fmt: skip
            await _settle(conn, item.id, now, relay_all)
            return True

        return await self._write(op)

    async def fallback_retry(self, item: FallbackItem, at: datetime, error: str) -> bool:
        """``queued`` again, due at ``at``."""
        done = await self._fetchval_write(
            "UPDATE fallback_sms SET status = $1, error = $2, next_attempt_at = $3,"
            " lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, updated_at = $4"
            " WHERE id = $5 AND lease_token = $6 AND status IN ($1, $7) RETURNING id",
            _QUEUED, error, ms(at), self._now_ms(), item.id, item.lease_token, _SENDING,
        )  # fmt: skip
        return done is not None

    async def fallback_failed(self, item: FallbackItem, error: str) -> bool:
        """``failed`` with ``error``, with its event."""
        now = self._now_ms()
        relay_all = self._relay_all_statuses

        async def op(conn: asyncpg.Connection) -> bool:
            done = await conn.fetchval(
                "UPDATE fallback_sms SET status = 'failed', error = $1, lease_owner = NULL,"
                " lease_token = NULL, lease_expires_at = NULL, updated_at = $2"
                " WHERE id = $3 AND lease_token = $4 AND status IN ($5, $6) RETURNING id",
                error, now, item.id, item.lease_token, _QUEUED, _SENDING,
            )  # fmt: skip
            if done is None:
                return False
            await fallback_event(conn, item.id, FallbackStatus.FAILED, now, relay_all)
            return True

        return await self._write(op)

    async def fallback_receipt(
        self, sms_link: str, sms_id: str, status: FallbackStatus, error: str = ""
    ) -> bool:
        """A part's receipt, recorded on its part and settling its submitted row when it
        decides it (True when recorded on a submitted row); kept early when no row has that
        part yet."""
        now = self._now_ms()
        relay_all = self._relay_all_statuses

        async def op(conn: asyncpg.Connection) -> bool:
            await conn.execute(_LOCK_PART, sms_link, sms_id)
            fallback_id = await conn.fetchval(
                "SELECT fallback_id FROM fallback_parts WHERE sms_link = $1 AND part_id = $2",
                sms_link, sms_id,
            )  # fmt: skip
            if fallback_id is None:
                await conn.execute(
                    "DELETE FROM fallback_receipts WHERE received_at < $1", now - EARLY_RECEIPT_MS
                )
                await conn.execute(
                    "INSERT INTO fallback_receipts (sms_link, sms_id, status, error, received_at)"
                    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    sms_link, sms_id, status.value, error or None, now,
                )  # fmt: skip
                return False
            # the row's lock first: receipts of its other parts wait, so the last one sees all
            row_status = await conn.fetchval(
                "SELECT status FROM fallback_sms WHERE id = $1 FOR UPDATE", fallback_id
            )
            await conn.execute(
                "UPDATE fallback_parts SET status = $1, error = $2 WHERE sms_link = $3"
                " AND part_id = $4 AND status IS NULL",
                status.value, error or None, sms_link, sms_id,
            )  # fmt: skip
            if row_status != FallbackStatus.SUBMITTED.value:
                return False
            await _settle(conn, fallback_id, now, relay_all)
            return True

        return await self._write(op)

    async def expire_fallback(self, before: datetime, n: int, *, error: str = NO_RECEIPT) -> int:
        """Up to ``n`` rows ``submitted`` before ``before`` and never settled become ``expired``
        with ``error``, oldest first, each with its event; how many. ``SKIP LOCKED``: a row a
        receipt holds (``FOR UPDATE`` in ``fallback_receipt``) is left to it; one it settles
        after this commit finds the row expired and is recorded on its part only."""
        now = self._now_ms()
        relay_all = self._relay_all_statuses

        async def op(conn: asyncpg.Connection) -> int:
            # the FROM form, as lease_fallback's: with ``id IN (... LIMIT n)`` the planner may
            # put the subquery inside a nested loop and run it again per row, past n
            rows = await conn.fetch(
                "UPDATE fallback_sms f SET status = 'expired', error = $1, updated_at = $2"
                " FROM (SELECT id FROM fallback_sms WHERE status = 'submitted'"
                " AND updated_at < $3 ORDER BY updated_at, id LIMIT $4 FOR UPDATE SKIP LOCKED) d"
                " WHERE f.id = d.id RETURNING f.id",
                error, now, ms(before), n,
            )  # fmt: skip
            for fallback_id in sorted(r[0] for r in rows):
                await fallback_event(conn, fallback_id, FallbackStatus.EXPIRED, now, relay_all)
            return len(rows)

        done: int = await self._write(op)
        return done

    async def fallback_sms(self, message_id: str) -> list[FallbackRecord]:
        """The fallback rows of ``message_id``, by recipient."""
        rows = await self._fetch(
            f"SELECT {_ROW} FROM fallback_sms f WHERE f.message_id = $1 ORDER BY f.recipient_id",
            message_id,
        )
        return [_record(r) for r in rows]


async def _settle(conn: asyncpg.Connection, fallback_id: int, now: int, relay_all: bool) -> None:
    """A submitted row whose parts' receipts decide it (``settle_parts``) takes that final
    status, with its event."""
    parts = await conn.fetch(
        "SELECT status, error FROM fallback_parts WHERE fallback_id = $1 ORDER BY position",
        fallback_id,
    )
    decided = settle_parts((r[0], r[1]) for r in parts)
    if decided is None:
        return
    status, error = decided
    done = await conn.fetchval(
        "UPDATE fallback_sms SET status = $1, error = $2, updated_at = $3 WHERE id = $4"
        " AND status = 'submitted' RETURNING id",
        status.value, error, now, fallback_id,
    )  # fmt: skip
    if done is not None:
        await fallback_event(conn, fallback_id, status, now, relay_all)
