"""The shared store: PostgreSQL, for several gateway instances behind a load balancer.

The same ``Store`` protocol and behaviour as ``SqliteStore`` (``sqlite/store.py``), on an
asyncpg pool. Every write commits before the call returns (``synchronous_commit = on``: the
WAL is flushed at commit), so what the gateway acknowledges survives a crash of the instance
or the database server. Work is leased with ``FOR UPDATE SKIP LOCKED``: instances leasing the
same link at once never get the same recipient, and never wait for each other's rows; each
lease carries a fencing token that its outcome must present.

Most operations are one statement (a CTE writing every table concerned, in one round trip);
the rest run in one transaction (``PostgresBase._write``). Transactions that make work due
send ``NOTIFY mm7_work`` (``listen``), delivered at commit to every instance.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from mm7.service.errors import (
    AllSuppressedError,
    IdempotencyConflictError,
    StoreError,
    StoreUnavailableError,
)
from mm7.service.store.base import Clock, SystemClock
from mm7.service.store.postgres import statements as sql
from mm7.service.store.postgres.base import asyncpg, create_pool, why
from mm7.service.store.postgres.cluster import PostgresCluster
from mm7.service.store.postgres.early import PostgresEarly
from mm7.service.store.postgres.fallback import PostgresFallback, queue_fallback
from mm7.service.store.postgres.limits import PostgresLimits
from mm7.service.store.postgres.listen import WorkListener
from mm7.service.store.postgres.media import INSERT_MEDIA, media_rows, unknown_media
from mm7.service.store.postgres.migrations import migrate
from mm7.service.store.postgres.relay import PostgresRelayOps
from mm7.service.store.postgres.relay_rows import queue_status_event
from mm7.service.store.postgres.retention import PostgresRetention
from mm7.service.store.postgres.rows import (
    dt,
    message_parts,
    ms,
    new_id,
    new_token,
    opt_dt,
    opt_ms,
    to_json,
)
from mm7.service.store.records import (
    FALLBACK_FAILED,
    EnqueueResult,
    EventRecord,
    JSONObject,
    MediaPart,
    MessageContent,
    MessageCursor,
    MessageFilter,
    MessagePage,
    MessageRecord,
    MessageStatus,
    MessageSummary,
    NewMessage,
    PartRecord,
    RecipientCounts,
    RecipientRecord,
    RecipientStatus,
    WorkItem,
    normalize_address,
)


def describe(dsn: str) -> str:
    """The database a DSN names, for messages: ``host:port/dbname``, never the password."""
    try:
        parts = urlsplit(dsn)
        host = parts.hostname or "localhost"
        port = parts.port or 5432
    except ValueError:
        return "the PostgreSQL database"
    database = parts.path.lstrip("/") or parts.username or "postgres"
    return f"postgresql://{host}:{port}/{database}"


class PostgresStore(
    PostgresEarly,
    PostgresCluster,
    PostgresRelayOps,
    PostgresRetention,
    PostgresLimits,
    PostgresFallback,
):
    """``Store`` on PostgreSQL. Create with ``await PostgresStore.open(dsn)``."""

    def __init__(
        self,
        dsn: str,
        pool: asyncpg.Pool,
        clock: Clock,
        *,
        where: str,
        durability: str,
        mo_duplicate_window: timedelta,
        relay_all_statuses: bool,
        probe_interval: float,
    ) -> None:
        self._init_base(pool, clock, probe_interval)
        self._dsn = dsn
        self._where = where
        self._durability = durability
        self._mo_window_ms = int(mo_duplicate_window.total_seconds() * 1000)
        self._relay_all_statuses = relay_all_statuses
        self._listener: WorkListener | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        clock: Clock | None = None,
        mo_duplicate_window: timedelta = timedelta(days=7),
        relay_all_statuses: bool = False,
        probe_interval: float = 5.0,
        min_connections: int = 1,
        max_connections: int = 10,
    ) -> PostgresStore:
        """Connect to ``dsn`` and migrate its schema (under an advisory lock).

        ``relay_all_statuses``: queue a relay event for every status change (for status
        hooks), not only for messages with a callback_url. ``probe_interval``: how often at
        most ``writable()`` probes the server. Raises ``SchemaTooNewError`` for a newer
        database, ``StoreError`` when the schema cannot be migrated (the database named, with
        the server's reason) or the DSN cannot be read, and ``StoreUnavailableError`` when the
        server cannot be reached.
        """
        the_clock = clock if clock is not None else SystemClock()
        where = describe(dsn)
        try:
            pool = await create_pool(dsn, min_size=min_connections, max_size=max_connections)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreUnavailableError(f"{where}: cannot connect: {why(exc)}") from exc
        except ValueError:  # the driver could not read the DSN; its words may quote a password
            raise StoreError(
                f"{where}: the DSN is not a URL the driver can read"
                " (postgresql://user:password@host:port/database; the value is not shown)"
            ) from None
        try:
            async with pool.acquire() as conn:
                try:
                    await migrate(conn, ms(the_clock.now()), where=where)
                except asyncpg.PostgresError as exc:  # e.g. no right to create tables
                    raise StoreError(f"{where}: cannot migrate the schema: {why(exc)}") from exc
                sync = await conn.fetchval("SHOW synchronous_commit")
                fsync = await conn.fetchval("SHOW fsync")
        except BaseException:
            await pool.close()
            raise
        return cls(
            dsn,
            pool,
            the_clock,
            where=where,
            durability=f"synchronous_commit={sync} fsync={fsync}",
            mo_duplicate_window=mo_duplicate_window,
            relay_all_statuses=relay_all_statuses,
            probe_interval=probe_interval,
        )

    async def close(self) -> None:
        """Stop listening, then close every connection (waiting for operations in flight)."""
        if self._closed:
            return
        self._closed = True
        if self._listener is not None:
            await self._listener.close()
        with contextlib.suppress(Exception):
            await self._pool.close()

    @property
    def durability(self) -> str:
        """The server's settings that make a commit durable, as read at open."""
        return self._durability

    @property
    def where(self) -> str:
        """The database, as ``postgresql://host:port/dbname`` (no credentials)."""
        return self._where

    def watch(self, *, on_mt: Callable[[str], None], on_relay: Callable[[], None]) -> None:
        """Call ``on_mt(link)`` when recipients of ``link`` become due on any instance, and
        ``on_relay()`` for relay events; after the listening connection is re-opened, each
        once (``listen``)."""
        if self._listener is None:
            self._listener = WorkListener(self._dsn)
        self._listener.add(on_mt, on_relay)

    # -- MT messages -----------------------------------------------------------------------

    async def enqueue_message(
        self, message: NewMessage, recipients: Sequence[str], parts: Sequence[MediaPart] = ()
    ) -> EnqueueResult:
        """Commit the message, one row per recipient, its media and parts in one statement.

        As ``SqliteStore.enqueue_message``: a repeat of an ``idempotency_key`` returns the
        original id with ``created=False`` and writes nothing (not even its media) when its
        ``request_digest`` is the original's, else ``IdempotencyConflictError``; recipients
        on the suppression list are stored ``suppressed`` and named in the result; when all
        are, nothing is written and ``AllSuppressedError`` is raised. Dispatchers of the link
        on every instance are notified at commit.
        """
        if not recipients:
            raise ValueError("a message needs at least one recipient")
        fields_json = to_json(message.fields)
        api_key = message.fields.get("api_key")
        media = await media_rows(parts)
        now = self._now_ms()
        due = max(now, opt_ms(message.not_before) or now)
        keys = [normalize_address(a) for a in recipients]
        queued_details = to_json({"recipients": len(recipients), "parts": len(parts)})
        message_id = new_id(now)
        try:
            row = await self._write_row(
                _ENQUEUE, message_id, message.idempotency_key, message.request_digest,
                message.link, api_key if isinstance(api_key, str) else None, fields_json, now,
                opt_ms(message.expires_at), opt_ms(message.not_before), message.callback_url,
                due, list(recipients), keys, message.allow_suppressed, queued_details,
                *media.media_args(), *media.part_args(),
            )  # fmt: skip
        except asyncpg.ForeignKeyViolationError as exc:
            raise unknown_media(exc, media) from exc
        assert row is not None
        created, queued, skipped = row[0], row[1], tuple(row[2] or ())
        if created is not None:
            return EnqueueResult(created, True, skipped)
        if message.idempotency_key is not None:
            found = await self._fetchrow(
                "SELECT id, request_digest FROM messages WHERE idempotency_key = $1",
                message.idempotency_key,
            )
            if found is not None:
                _same_request(found[0], found[1], message.request_digest)
                return EnqueueResult(found[0], False)
        if queued == 0:
            raise AllSuppressedError(tuple(recipients))
        raise AssertionError("a message neither written nor found under its key")

    async def list_messages(
        self, where: MessageFilter, *, limit: int = 50, after: MessageCursor | None = None
    ) -> MessagePage:
        """Messages of ``where.api_key`` matching the filter, newest first, one page (keyset
        paging on (created_at, id), as ``SqliteStore.list_messages``)."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        args: list[Any] = [where.api_key]
        clauses = ["m.api_key = $1"]
        source = "messages m"
        if where.to is not None:
            # a handset has few messages: start from them (a message naming it twice once)
            args.append(normalize_address(where.to))
            source = (
                f"(SELECT DISTINCT message_id FROM recipients WHERE address_key = ${len(args)})"
                " r JOIN messages m ON m.id = r.message_id"
            )
        if where.status is not None:
            args.append(where.status.value)
            clauses.append(f"m.status = ${len(args)}")
        if where.link is not None:
            args.append(where.link)
            clauses.append(f"m.link = ${len(args)}")
        if where.since is not None:
            args.append(ms(where.since))
            clauses.append(f"m.created_at >= ${len(args)}")
        if after is not None:
            # round, not ms: the cursor's time came from milliseconds and must go back exactly
            args.extend((round(after.created_at.timestamp() * 1000), after.id))
            clauses.append(f"(m.created_at, m.id) < (${len(args) - 1}, ${len(args)})")
        args.append(limit + 1)
        rows = await self._fetch(
            "SELECT m.id, m.link, m.status, m.fields, m.created_at, m.updated_at,"
            f" {', '.join('m.' + c for c in sql.COUNT_COLUMNS)} FROM {source}"
            f" WHERE {' AND '.join(clauses)} ORDER BY m.created_at DESC, m.id DESC"
            f" LIMIT ${len(args)}",
            *args,
        )
        found = tuple(
            MessageSummary(
                r[0],
                r[1],
                MessageStatus(r[2]),
                json.loads(r[3]),
                dt(r[4]),
                dt(r[5]),
                _counts(tuple(r[6:])),
            )  # fmt: skip
            for r in rows[:limit]
        )
        last = found[-1] if found and len(rows) > limit else None
        return MessagePage(found, MessageCursor(last.created_at, last.id) if last else None)

    async def message_for_key(
        self, idempotency_key: str, request_digest: str | None = None
    ) -> str | None:
        """The id of the message stored under ``idempotency_key``, or None;
        ``IdempotencyConflictError`` when it was made from a request of another digest."""
        row = await self._fetchrow(
            "SELECT id, request_digest FROM messages WHERE idempotency_key = $1", idempotency_key
        )
        if row is None:
            return None
        _same_request(row[0], row[1], request_digest)
        return str(row[0])

    async def get_message(self, message_id: str) -> MessageRecord | None:
        """The message, its recipients, parts and events, read in one snapshot."""

        async def read(conn: asyncpg.Connection) -> MessageRecord | None:
            row = await conn.fetchrow(
                "SELECT id, link, idempotency_key, status, fields, created_at, updated_at,"
                " expires_at, not_before, callback_url FROM messages WHERE id = $1",
                message_id,
            )
            if row is None:
                return None
            recipients = tuple(
                RecipientRecord(
                    r[0],
                    r[1],
                    RecipientStatus(r[2]),
                    r[3],
                    r[4],
                    r[5],
                    dt(r[6]),
                    r[7],
                    r[8],
                    dt(r[9]),
                )  # fmt: skip
                for r in await conn.fetch(
                    "SELECT id, address, status, mm7_message_id, transaction_id, attempts,"
                    " next_attempt_at, last_status_code, last_status_text, updated_at"
                    " FROM recipients WHERE message_id = $1 ORDER BY id",
                    message_id,
                )
            )
            events = tuple(
                EventRecord(e[0], message_id, e[1], e[2], e[3], json.loads(e[4]), dt(e[5]))
                for e in await conn.fetch(
                    "SELECT e.id, r.address, e.kind, e.status, e.details, e.at FROM events e"
                    " LEFT JOIN recipients r ON r.id = e.recipient_id"
                    " WHERE e.message_id = $1 ORDER BY e.id",
                    message_id,
                )
            )
            return MessageRecord(
                row[0], row[1], row[2], MessageStatus(row[3]), json.loads(row[4]), dt(row[5]),
                dt(row[6]), opt_dt(row[7]), opt_dt(row[8]), row[9], recipients,
                await message_parts(conn, message_id), events,
            )  # fmt: skip

        return await self._read(read)

    async def message_content(self, message_id: str) -> MessageContent | None:
        """The message's row and parts, read in one snapshot."""

        async def read(conn: asyncpg.Connection) -> MessageContent | None:
            row = await conn.fetchrow(
                "SELECT id, link, fields, created_at FROM messages WHERE id = $1", message_id
            )
            if row is None:
                return None
            parts = await message_parts(conn, message_id)
            return MessageContent(row[0], row[1], json.loads(row[2]), dt(row[3]), parts)

        return await self._read(read)

    async def queue_depth(self, link: str | None = None) -> int:
        """Recipients in ``queued`` (due or scheduled), on one link or all."""
        if link is None:
            value = await self._fetchval("SELECT count(*) FROM recipients WHERE status = 'queued'")
        else:
            value = await self._fetchval(
                "SELECT count(*) FROM recipients WHERE link = $1 AND status = 'queued'", link
            )
        return int(value)

    # -- leases and outcomes ---------------------------------------------------------------

    async def lease(self, link: str, owner: str, n: int, ttl: timedelta) -> list[WorkItem]:
        """Lease up to ``n`` queued recipients of ``link`` that are due and not leased.

        One statement (``FOR UPDATE SKIP LOCKED``): instances leasing the link at once get
        disjoint items. A lease whose ``expires_at`` passed counts as free (a dead worker's
        items come back, recorded as a ``lease_expired`` event naming the previous owner).
        Due recipients whose message expired are marked ``expired`` instead of being handed
        out. Each lease counts as an attempt.
        """
        now = self._now_ms()
        until = now + int(ttl.total_seconds() * 1000)
        items: list[WorkItem] = []
        messages: dict[str, tuple[Any, ...]] = {}
        while len(items) < n:
            token = new_token()
            rows = await self._write_rows(sql.LEASE, link, now, n - len(items), owner, token,
                                          until)  # fmt: skip
            dead = [r for r in rows if r[11]]
            for row in sorted((r for r in rows if not r[11]), key=lambda r: (r[12], r[0])):
                mid = row[1]
                if mid not in messages:
                    parts = tuple(PartRecord(*p) for p in json.loads(row[10])) if row[10] else ()
                    messages[mid] = (json.loads(row[5]), row[6], opt_dt(row[7]), row[8], parts,
                                     dt(row[9]))  # fmt: skip
                fields, key, expires_at, callback, parts, created_at = messages[mid]
                items.append(
                    WorkItem(
                        row[0],
                        mid,
                        link,
                        row[2],
                        row[3],
                        row[4],
                        owner,
                        token,
                        dt(until),
                        fields,
                        parts,
                        key,
                        expires_at,
                        callback,
                        created_at,
                    )  # fmt: skip
                )
            if not dead:  # every due row was taken: nothing more to find
                break
            for row in dead:
                await self._expire_queued(row[0], row[7], now)
        return items

    async def _write_rows(self, statement: str, *args: Any) -> list[asyncpg.Record]:
        """One write statement, its own transaction: every row it returns."""

        async def op(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            rows: list[asyncpg.Record] = await conn.fetch(statement, *args)
            return rows

        return await self._autocommit(op)

    async def _expire_queued(self, recipient_id: int, expired_at: int, now: int) -> None:
        """A due recipient whose message expired: ``expired``, with its status event."""
        details = to_json({"expired_at": dt(expired_at).isoformat()})

        async def op(conn: asyncpg.Connection) -> None:
            done = await conn.fetchval(sql.EXPIRED_AT_LEASE, recipient_id, None, None, now,
                                       "expired", details)  # fmt: skip
            if done:
                await queue_status_event(conn, recipient_id, RecipientStatus.EXPIRED.value,
                                         now, relay_all=self._relay_all_statuses)  # fmt: skip

        await self._write(op)

    async def _fenced(
        self,
        item: WorkItem,
        statement: str,
        args: tuple[Any, ...],
        status: RecipientStatus | None = None,
        *,
        status_code: int | None = None,
        status_text: str | None = None,
    ) -> bool:
        """Run an outcome statement (``statements.fenced_finish`` and kin: it applies only
        while ``item``'s lease is ours, else records a ``stale_result``); with ``status``, also
        queue the status event when the message has a callback (or every status is relayed),
        in the same transaction. False if the lease was lost."""
        if status is None or (item.callback_url is None and not self._relay_all_statuses):
            row = await self._write_row(statement, *args)
            return bool(row is not None and row[0])

        async def op(conn: asyncpg.Connection) -> bool:
            done = await conn.fetchval(statement, *args)
            if done:
                await queue_status_event(
                    conn, item.recipient_id, status.value, args[4],
                    relay_all=self._relay_all_statuses, status_code=status_code,
                    status_text=status_text,
                )  # fmt: skip
            return bool(done)

        return await self._write(op)

    def _finish_args(
        self,
        item: WorkItem,
        kind: str,
        info: dict[str, Any],
        status_code: int | None,
        status_text: str | None,
        outcome: str | None = None,
    ) -> tuple[Any, ...]:
        """The arguments of a ``statements.fenced_finish`` statement ($1 to $9); ``outcome``:
        what a stale result records as tried (default: ``kind``)."""
        stale = {"outcome": outcome or kind, "owner": item.owner, **info}
        return (item.recipient_id, item.lease_token, status_code, status_text, self._now_ms(),
                kind, to_json(info), item.message_id, to_json(stale))  # fmt: skip

    async def complete(
        self,
        item: WorkItem,
        mm7_message_id: str | None,
        status_code: int | None = None,
        status_text: str | None = None,
        details: JSONObject | None = None,
    ) -> bool:
        """The MMSC accepted the SubmitReq: recipient ``submitted`` with its MM7 MessageID, and
        the reports kept early for that MessageID that are this recipient's applied to it in
        the same transaction (``postgres/early.py``)."""
        info = {
            "mm7_message_id": mm7_message_id,
            "status_code": status_code,
            "status_text": status_text,
            "attempt": item.attempts,
            "transaction_id": item.transaction_id,
            **(dict(details) if details else {}),
        }
        args = (*self._finish_args(item, "submitted", info, status_code, status_text),
                mm7_message_id)  # fmt: skip
        relayed = item.callback_url is not None or self._relay_all_statuses
        if not relayed:  # the hot path: one statement, which writes nothing if a report is kept
            row = await self._write_row(sql.SUBMITTED_PROBED, *args)
            assert row is not None
            if not row[1]:
                return bool(row[0])

        async def op(conn: asyncpg.Connection) -> bool:
            done, kept = await conn.fetchrow(sql.SUBMITTED_PROBED, *args)
            if kept:  # the MessageID's lock is held now: this statement sees every kept report
                done = await conn.fetchval(sql.SUBMITTED, *args)
            if done and relayed:
                await queue_status_event(
                    conn, item.recipient_id, RecipientStatus.SUBMITTED.value, args[4],
                    relay_all=self._relay_all_statuses, status_code=status_code,
                    status_text=status_text,
                )  # fmt: skip
            if done and kept and mm7_message_id is not None:
                await self._apply_early(conn, item, mm7_message_id, args[4])
            return bool(done)

        return await self._write(op)

    async def fail(
        self,
        item: WorkItem,
        status_code: int | None,
        status_text: str | None,
        details: JSONObject | None = None,
    ) -> bool:
        """A permanent error: the recipient is ``failed`` with the MM7 status; no retry (its
        SMS fallback queued in the same transaction when the message asked for one)."""
        info = _outcome_info(item, status_code, status_text, details)
        args = self._finish_args(item, "failed", info, status_code, status_text)
        if item.fields.get("fallback") is None:
            return await self._fenced(item, sql.FAILED, args, RecipientStatus.FAILED,
                                      status_code=status_code,
                                      status_text=status_text)  # fmt: skip
        relay_all = self._relay_all_statuses

        async def op(conn: asyncpg.Connection) -> bool:
            done = await conn.fetchval(sql.FAILED, *args)
            if done:
                if item.callback_url is not None or relay_all:
                    await queue_status_event(
                        conn, item.recipient_id, RecipientStatus.FAILED.value, args[4],
                        relay_all=relay_all, status_code=status_code, status_text=status_text,
                    )  # fmt: skip
                await queue_fallback(conn, item.message_id, item.recipient_id, FALLBACK_FAILED,
                                     args[4], relay_all)  # fmt: skip
            return bool(done)

        return await self._write(op)

    async def retry_later(
        self,
        item: WorkItem,
        at: datetime,
        status_code: int | None = None,
        status_text: str | None = None,
        details: JSONObject | None = None,
    ) -> bool:
        """A transient error: try again at ``at`` (dispatchers of the link notified); an
        ``at`` at or past the message's expiry expires the recipient instead."""
        at_ms = ms(at)
        info = {"retry_at": at.isoformat(), **_outcome_info(item, status_code, status_text,
                                                               details)}  # fmt: skip
        expires = opt_ms(item.expires_at)
        if expires is not None and at_ms >= expires:
            args = self._finish_args(item, "expired", info, status_code, status_text, "retry")
            return await self._fenced(item, sql.EXPIRED, args, RecipientStatus.EXPIRED,
                                      status_code=status_code,
                                      status_text=status_text)  # fmt: skip
        now = self._now_ms()
        stale = {"outcome": "retry", "owner": item.owner, **info}
        return await self._fenced(
            item, sql.RETRY,
            (item.recipient_id, item.lease_token, at_ms, status_code, status_text, now,
             to_json(info), item.message_id, to_json(stale)),
        )  # fmt: skip

    async def expire(
        self,
        item: WorkItem,
        status_code: int | None = None,
        status_text: str | None = None,
        details: JSONObject | None = None,
    ) -> bool:
        """Retrying stopped at its deadline: the recipient is expired with the last status."""
        info = _outcome_info(item, status_code, status_text, details)
        args = self._finish_args(item, "expired", info, status_code, status_text)
        return await self._fenced(item, sql.EXPIRED, args, RecipientStatus.EXPIRED,
                                  status_code=status_code, status_text=status_text)  # fmt: skip

    async def release(self, item: WorkItem) -> bool:
        """Hand the lease back without an attempt (shutdown before sending): due again now,
        dispatchers of the link notified."""
        stale = {"outcome": "released", "owner": item.owner}
        return await self._fenced(
            item, sql.RELEASE,
            (item.recipient_id, item.lease_token, self._now_ms(), item.message_id,
             to_json(stale)),
        )  # fmt: skip


# -- helpers ----------------------------------------------------------------------------------

#: enqueue one message (module docstring of ``enqueue_message``): $1 id, $2 idempotency key,
#: $3 request digest, $4 link, $5 api key, $6 fields, $7 now, $8 expires_at, $9 not_before,
#: $10 callback_url, $11 first due, $12 addresses, $13 their keys, $14 allow suppressed,
#: $15 the queued event's details, $16-$19 media arrays, $20-$23 part arrays. One row: the id
#: written (None: nothing written), how many are queued, the suppressed addresses.
_ENQUEUE = (
    "WITH s AS (SELECT address_key FROM suppressions"
    " WHERE NOT $14::boolean AND address_key = ANY($13::text[])),"
    " rs AS (SELECT x.address, x.key, x.n - 1 AS idx,"
    " x.key IN (SELECT address_key FROM s) AS blocked"
    " FROM unnest($12::text[], $13::text[]) WITH ORDINALITY AS x(address, key, n)),"
    " c AS (SELECT count(*) FILTER (WHERE NOT blocked) AS queued,"
    " count(*) FILTER (WHERE blocked) AS suppressed,"
    " array_agg(address ORDER BY idx) FILTER (WHERE blocked) AS skipped FROM rs),"
    " m AS (INSERT INTO messages (id, idempotency_key, request_digest, link, api_key, fields,"
    " status, recipient_count, queued_count, suppressed_count, created_at, updated_at,"
    " expires_at, not_before, callback_url)"
    " SELECT $1, $2, $3, $4, $5, $6, 'queued', c.queued + c.suppressed, c.queued,"
    " c.suppressed, $7, $7, $8, $9, $10 FROM c WHERE c.queued > 0"
    " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id),"
    " md AS ("
    + INSERT_MEDIA.format(
        now="$7",
        sha="$16",
        ct="$17",
        size="$18",
        data="$19",
        where="WHERE EXISTS (SELECT 1 FROM m)",
    )  # fmt: skip
    + "),"
    " p AS (INSERT INTO message_media (message_id, position, sha256, content_type,"
    " content_id, content_location) SELECT m.id, u.n - 1, u.sha, u.ct, u.cid, u.loc"
    " FROM m, unnest($20::text[], $21::text[], $22::text[], $23::text[])"
    " WITH ORDINALITY AS u(sha, ct, cid, loc, n)),"
    " r AS (INSERT INTO recipients (message_id, link, address, address_key, status,"
    " transaction_id, next_attempt_at, expires_at, updated_at)"
    " SELECT m.id, $4, rs.address, rs.key,"
    " CASE WHEN rs.blocked THEN 'suppressed' ELSE 'queued' END, m.id || '.' || rs.idx,"
    " $11, $8, $7 FROM m, rs ORDER BY rs.idx),"
    " e AS (INSERT INTO events (message_id, recipient_id, kind, status, details, at)"
    " SELECT m.id, NULL::bigint, 'queued', 'queued', $15, $7 FROM m"
    " UNION ALL SELECT m.id, NULL, 'suppressed', 'suppressed',"
    " json_build_object('recipients', c.skipped)::text, $7 FROM m, c WHERE c.suppressed > 0)"
    " SELECT (SELECT id FROM m), c.queued, c.skipped,"
    " (SELECT pg_notify('mm7_work', 'mt:' || $4::text) FROM m) FROM c"
)


def _same_request(message_id: str, stored: str | None, given: str | None) -> None:
    """A repeat under an idempotency key must be the request the key was first used with."""
    if stored is not None and given is not None and stored != given:
        raise IdempotencyConflictError(message_id)


def _outcome_info(
    item: WorkItem, status_code: int | None, status_text: str | None, details: JSONObject | None
) -> dict[str, Any]:
    """The details an outcome's event records: the status, the attempt and the caller's own."""
    return {
        "status_code": status_code,
        "status_text": status_text,
        "attempt": item.attempts,
        **(dict(details) if details else {}),
    }


def _counts(row: Sequence[int]) -> RecipientCounts:
    """``RecipientCounts`` from the ``statements.COUNT_COLUMNS`` of a message row."""
    total, queued, submitted, delivered, undelivered, expired, suppressed = row
    return RecipientCounts(
        queued=queued,
        submitted=submitted - delivered - undelivered,
        delivered=delivered,
        undelivered=undelivered,
        failed=total - queued - submitted - expired - suppressed,
        expired=expired,
        suppressed=suppressed,
    )
