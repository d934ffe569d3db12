"""The SQLite store's SMS fallback rows (``fallback_sms``, migration 9): queued in the same
transaction as the recipient's failure, leased by the fallback worker, fenced by its lease token,
settled by receipts correlated per part by (SMS link, part id) in ``fallback_parts`` (migration
10: a long text's row settles once all its parts are in, ``parts.settle_parts``), or expired
when they never come (``expire_fallback``, found by the index of migration 11), each change with
its ``fallback_sms`` event on the message and in the relay outbox (``mm7.service.fallback``
describes the whole path).

A mixin of ``SqliteStore`` (its writer thread, readers and clock); ``queue_fallback`` is called
by the store's ``fail`` and delivery-report recording, inside their transactions.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from mm7.service.store import tally
from mm7.service.store.base import Clock
from mm7.service.store.outbox import RelayKind
from mm7.service.store.parts import part_list, settle_parts
from mm7.service.store.records import (
    NO_RECEIPT,
    OUTCOME_UNKNOWN,
    FallbackItem,
    FallbackRecord,
    FallbackStatus,
)
from mm7.service.store.sqlite.relay import insert_event
from mm7.service.store.sqlite.rows import dt, event, ms

__all__ = ["SqliteFallback", "queue_fallback"]

#: receipts nobody claimed are kept this long (a receipt that beat its send's commit)
EARLY_RECEIPT_MS = 86_400_000

_ROW = (
    "f.id, f.message_id, f.recipient_id, f.address, f.sms_link, f.status, f.trigger, f.sms_id,"
    " f.error, f.attempts, f.created_at, f.updated_at"
)


def _record(r: sqlite3.Row | tuple[Any, ...]) -> FallbackRecord:
    return FallbackRecord(r[0], r[1], r[2], r[3], r[4], FallbackStatus(r[5]), r[6], r[7], r[8],
                          r[9], dt(r[10]), dt(r[11]))  # fmt: skip


def fallback_event(
    conn: sqlite3.Connection,
    fallback_id: int,
    status: FallbackStatus,
    now: int,
    relay_all: bool,
    **extra: Any,
) -> None:
    """The ``fallback_sms`` event of a change: in the message's history, and in the relay
    outbox for its callback_url (or the link's status hook), in the caller's transaction."""
    row = conn.execute(
        f"SELECT {_ROW}, m.callback_url, json_extract(m.fields, '$.api_key'), m.link,"
        " json_type(m.fields, '$.sendmms') FROM fallback_sms f"
        " JOIN messages m ON m.id = f.message_id WHERE f.id=?",
        (fallback_id,),
    ).fetchone()
    if row is None:
        return
    tally.note(status.value)  # mm7_fallback_sms_total, once the transaction commits
    record = _record(row)
    callback, api_key, link = row[12], row[13], row[14]
    if row[15] is not None:
        callback = None  # a sendmms message's callback is its Kannel dlr-url: no SMS events
    details = {"sms_link": record.sms_link, "sms_id": record.sms_id, "error": record.error,
               "trigger": record.trigger, **extra}  # fmt: skip
    event(conn, record.message_id, record.recipient_id, "fallback_sms", status.value, details, now)
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
    insert_event(conn, RelayKind.FALLBACK_SMS, key, body, now, callback_url=callback,
                 api_key=api_key, link=link, source_id=record.message_id)  # fmt: skip


def queue_fallback(
    conn: sqlite3.Connection,
    message_id: str,
    recipient_id: int,
    trigger: str,
    now: int,
    relay_all: bool,
) -> bool:
    """In the transaction that fails ``recipient_id``: queue its SMS when its message asked
    for one (``fields.fallback``, resolved at intake), once: the row is unique per (message,
    recipient), so a failure recorded twice queues nothing more. True when a row was queued."""
    row = conn.execute(
        "SELECT json_extract(m.fields, '$.fallback.sms_link'),"
        " json_extract(m.fields, '$.fallback.text_max'), r.address FROM recipients r"
        " JOIN messages m ON m.id = r.message_id WHERE r.id=?",
        (recipient_id,),
    ).fetchone()
    if row is None or row[0] is None:
        return False
    cursor = conn.execute(
        "INSERT OR IGNORE INTO fallback_sms (message_id, recipient_id, address, sms_link,"
        " text_max, trigger, status, next_attempt_at, created_at, updated_at)"
        " VALUES (?,?,?,?,?,?,?,?,?,?)",
        (message_id, recipient_id, row[2], row[0], int(row[1] or 160), trigger,
         FallbackStatus.QUEUED.value, now, now, now),
    )  # fmt: skip
    if cursor.rowcount != 1:
        return False
    fallback_event(conn, int(cursor.lastrowid or 0), FallbackStatus.QUEUED, now, relay_all)
    return True


class SqliteFallback:
    """The fallback worker's and the receipts' operations of ``SqliteStore``."""

    _clock: Clock
    _relay_all_statuses: bool
    _write: Callable[..., Any]
    _read: Callable[..., Any]

    async def lease_fallback(self, owner: str, n: int, ttl: timedelta) -> list[FallbackItem]:
        """Fail the rows found ``sending`` past their lease (outcome unknown: never sent
        twice), then lease up to ``n`` due ``queued`` rows (attempt counted)."""
        now = ms(self._clock.now())
        until = now + int(ttl.total_seconds() * 1000)
        relay_all = self._relay_all_statuses

        def op(conn: sqlite3.Connection) -> list[FallbackItem]:
            stuck = [r[0] for r in conn.execute(
                "SELECT id FROM fallback_sms WHERE status=? AND lease_expires_at<=?",
                (FallbackStatus.SENDING.value, now),
            )]  # fmt: skip
            for fallback_id in stuck:
                conn.execute(
                    "UPDATE fallback_sms SET status=?, error=?, lease_owner=NULL,"
                    " lease_token=NULL, lease_expires_at=NULL, updated_at=? WHERE id=?",
                    (FallbackStatus.FAILED.value, OUTCOME_UNKNOWN, now, fallback_id),
                )
                fallback_event(conn, fallback_id, FallbackStatus.FAILED, now, relay_all)
            rows = conn.execute(
                "SELECT f.id, f.message_id, f.address, f.sms_link, f.text_max, f.attempts,"
                " f.created_at, m.created_at, m.fields FROM fallback_sms f"
                " JOIN messages m ON m.id = f.message_id WHERE f.status=?"
                " AND f.next_attempt_at<=? AND (f.lease_expires_at IS NULL"
                " OR f.lease_expires_at<=?) ORDER BY f.next_attempt_at, f.id LIMIT ?",
                (FallbackStatus.QUEUED.value, now, now, n),
            ).fetchall()
            items = []
            for r in rows:
                token = secrets.token_hex(8)
                conn.execute(
                    "UPDATE fallback_sms SET lease_owner=?, lease_token=?, lease_expires_at=?,"
                    " attempts=attempts+1, updated_at=? WHERE id=?",
                    (owner, token, until, now, r[0]),
                )
                items.append(FallbackItem(
                    id=r[0], message_id=r[1], address=r[2], sms_link=r[3], text_max=r[4],
                    attempts=r[5] + 1, lease_token=token, lease_expires_at=dt(until),
                    created_at=dt(r[6]), message_created_at=dt(r[7]),
                    fields=_json_object(r[8]),
                ))  # fmt: skip
            return items

        result: list[FallbackItem] = await self._write(op)
        return result

    async def fallback_sending(self, item: FallbackItem, ttl: timedelta) -> bool:
        """Commit ``sending`` before the SMS goes out (the lease now ``ttl`` from now); False
        when the lease is no longer ours (do not send)."""
        now = ms(self._clock.now())
        until = now + int(ttl.total_seconds() * 1000)

        def op(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE fallback_sms SET status=?, lease_expires_at=?, updated_at=?"
                " WHERE id=? AND lease_token=? AND status=?",
                (FallbackStatus.SENDING.value, until, now, item.id, item.lease_token,
                 FallbackStatus.QUEUED.value),
            )  # fmt: skip
            return cursor.rowcount == 1

        done: bool = await self._write(op)
        return done

    async def fallback_submitted(
        self, item: FallbackItem, sms_id: str, part_ids: Sequence[str] = ()
    ) -> bool:
        """The SMS link took it: ``submitted`` with its ``sms_id`` and every part's id
        (``part_ids``, ``sms_id`` first; none: one part); receipts that arrived before this
        commit (kept early) are applied now. False when the lease was lost."""
        parts = part_list(sms_id, part_ids)
        now = ms(self._clock.now())
        relay_all = self._relay_all_statuses

        def op(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE fallback_sms SET status=?, sms_id=?, error=NULL, lease_owner=NULL,"
                " lease_token=NULL, lease_expires_at=NULL, updated_at=?"
                " WHERE id=? AND lease_token=? AND status=?",
                (FallbackStatus.SUBMITTED.value, sms_id, now, item.id, item.lease_token,
                 FallbackStatus.SENDING.value),
            )  # fmt: skip
            if cursor.rowcount != 1:
                return False
            fallback_event(conn, item.id, FallbackStatus.SUBMITTED, now, relay_all)
            for position, part_id in enumerate(parts):
                early = conn.execute(
                    "DELETE FROM fallback_receipts WHERE sms_link=? AND sms_id=?"
                    " RETURNING status, error",
                    (item.sms_link, part_id),
                ).fetchone()
                conn.execute(
                    "INSERT OR IGNORE INTO fallback_parts (sms_link, part_id, fallback_id,"
                    " position, status, error) VALUES (?,?,?,?,?,?)",
                    (item.sms_link, part_id, item.id, position,
                     *(early if early is not None else (None, None))),
                )  # fmt: skip
            _settle(conn, item.id, now, relay_all)
            return True

        done: bool = await self._write(op)
        return done

    async def fallback_retry(self, item: FallbackItem, at: datetime, error: str) -> bool:
        """The link could not take it now: ``queued`` again, due at ``at``."""
        now = ms(self._clock.now())

        def op(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE fallback_sms SET status=?, error=?, next_attempt_at=?, lease_owner=NULL,"
                " lease_token=NULL, lease_expires_at=NULL, updated_at=?"
                " WHERE id=? AND lease_token=? AND status IN (?, ?)",
                (FallbackStatus.QUEUED.value, error, ms(at), now, item.id, item.lease_token,
                 FallbackStatus.QUEUED.value, FallbackStatus.SENDING.value),
            )  # fmt: skip
            return cursor.rowcount == 1

        done: bool = await self._write(op)
        return done

    async def fallback_failed(self, item: FallbackItem, error: str) -> bool:
        """Refused for good (or retried past the max age): ``failed`` with ``error``."""
        now = ms(self._clock.now())
        relay_all = self._relay_all_statuses

        def op(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE fallback_sms SET status=?, error=?, lease_owner=NULL, lease_token=NULL,"
                " lease_expires_at=NULL, updated_at=? WHERE id=? AND lease_token=?"
                " AND status IN (?, ?)",
                (FallbackStatus.FAILED.value, error, now, item.id, item.lease_token,
                 FallbackStatus.QUEUED.value, FallbackStatus.SENDING.value),
            )  # fmt: skip
            if cursor.rowcount != 1:
                return False
            fallback_event(conn, item.id, FallbackStatus.FAILED, now, relay_all)
            return True

        done: bool = await self._write(op)
        return done

    async def fallback_receipt(
        self, sms_link: str, sms_id: str, status: FallbackStatus, error: str = ""
    ) -> bool:
        """A part's receipt (``sms_id``: the part's id; ``status``: delivered or failed):
        recorded on its part (the first receipt of a part counts) and settling its submitted
        row when it decides it (True when it was recorded on a submitted row); kept early when
        no row has that part yet (its send's commit is still on its way)."""
        now = ms(self._clock.now())
        relay_all = self._relay_all_statuses

        def op(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT p.fallback_id, f.status FROM fallback_parts p"
                " JOIN fallback_sms f ON f.id = p.fallback_id"
                " WHERE p.sms_link=? AND p.part_id=?",
                (sms_link, sms_id),
            ).fetchone()
            if row is None:
                conn.execute(
                    "DELETE FROM fallback_receipts WHERE received_at<?", (now - EARLY_RECEIPT_MS,)
                )
                conn.execute(
                    "INSERT OR IGNORE INTO fallback_receipts (sms_link, sms_id, status, error,"
                    " received_at) VALUES (?,?,?,?,?)",
                    (sms_link, sms_id, status.value, error or None, now),
                )
                return False
            conn.execute(
                "UPDATE fallback_parts SET status=?, error=? WHERE sms_link=? AND part_id=?"
                " AND status IS NULL",
                (status.value, error or None, sms_link, sms_id),
            )
            if row[1] != FallbackStatus.SUBMITTED.value:
                return False
            _settle(conn, row[0], now, relay_all)
            return True

        done: bool = await self._write(op)
        return done

    async def expire_fallback(self, before: datetime, n: int, *, error: str = NO_RECEIPT) -> int:
        """Up to ``n`` rows ``submitted`` before ``before`` and never settled by their receipts
        become ``expired`` with ``error``, oldest first, each with its event; how many (the
        store's one writer: no receipt can settle one of them between the read and the write)."""
        now = ms(self._clock.now())
        cut = ms(before)
        relay_all = self._relay_all_statuses

        def op(conn: sqlite3.Connection) -> int:
            due = [r[0] for r in conn.execute(
                "SELECT id FROM fallback_sms WHERE status=? AND updated_at<?"
                " ORDER BY updated_at, id LIMIT ?",
                (FallbackStatus.SUBMITTED.value, cut, n),
            )]  # fmt: skip
            for fallback_id in due:
                conn.execute(
                    "UPDATE fallback_sms SET status=?, error=?, updated_at=? WHERE id=?",
                    (FallbackStatus.EXPIRED.value, error, now, fallback_id),
                )
                fallback_event(conn, fallback_id, FallbackStatus.EXPIRED, now, relay_all)
            return len(due)

        done: int = await self._write(op)
        return done

    async def fallback_sms(self, message_id: str) -> list[FallbackRecord]:
        """The fallback rows of ``message_id``, by recipient."""

        def read(conn: sqlite3.Connection) -> list[FallbackRecord]:
            return [_record(r) for r in conn.execute(
                f"SELECT {_ROW} FROM fallback_sms f WHERE f.message_id=? ORDER BY f.recipient_id",
                (message_id,),
            )]  # fmt: skip

        result: list[FallbackRecord] = await self._read(read)
        return result


def _settle(conn: sqlite3.Connection, fallback_id: int, now: int, relay_all: bool) -> None:
    """A submitted row whose parts' receipts decide it (``settle_parts``) takes that final
    status, with its event."""
    parts = conn.execute(
        "SELECT status, error FROM fallback_parts WHERE fallback_id=? ORDER BY position",
        (fallback_id,),
    ).fetchall()
    decided = settle_parts((r[0], r[1]) for r in parts)
    if decided is None:
        return
    status, error = decided
    cursor = conn.execute(
        "UPDATE fallback_sms SET status=?, error=?, updated_at=? WHERE id=? AND status=?",
        (status.value, error, now, fallback_id, FallbackStatus.SUBMITTED.value),
    )
    if cursor.rowcount == 1:
        fallback_event(conn, fallback_id, status, now, relay_all)


def _json_object(text: str) -> dict[str, Any]:
    value = json.loads(text)
    return value if isinstance(value, dict) else {}
