"""The PostgreSQL store's relay operations: outbox leases, outcomes, listings, suppressions.

A mixin of ``PostgresStore`` (it uses ``PostgresBase``'s pool, clock and transactions), the
counterpart of ``sqlite/relay.py`` with the same behaviour. Events are written by the MO, MT
and report operations in the same transaction as what they report (``relay_rows``); this
module leases them to the relay workers of every instance, records outcomes fenced by the
lease token, and lists, requeues and drops dead letters.

A lease lives on the event's row (``lease_owner``, ``lease_token``, ``lease_expires_at``) and
is taken in one statement with ``FOR UPDATE SKIP LOCKED``: workers of several instances
leasing at once get disjoint events and never wait for each other's rows. For an ordered hook
only the oldest pending event of each sender is ever eligible; while it is leased or waits for
its retry no later event of that sender is, on any instance.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from mm7.service.store.outbox import (
    Outcome,
    RelayItem,
    RelayKind,
    RelayOutcome,
    RelayRecord,
    RelayStatus,
    Suppression,
)
from mm7.service.store.postgres.base import PostgresBase, asyncpg
from mm7.service.store.postgres.relay_rows import suppressed_keys
from mm7.service.store.postgres.rows import dt, ms, new_token, opt_dt
from mm7.service.store.records import PartRecord, normalize_address

__all__ = ["PostgresRelayOps"]

_STATUS_OF: dict[str, RelayStatus] = {
    "delivered": RelayStatus.DELIVERED,
    "retry": RelayStatus.PENDING,
    "dead": RelayStatus.DEAD,
    "skipped": RelayStatus.SKIPPED,
}

_RECORD_COLUMNS = (
    "id, kind, idempotency_key, status, hook, callback_url, link, source_id, attempts,"
    " next_attempt_at, first_attempt_at, last_http_status, last_error, created_at, updated_at,"
    " event, api_key"
)

#: an event leasable at $1 (due, unleased or its lease expired; for the ordered hooks $2 only
#: the oldest pending event of its sender)
_LEASABLE = (
    "o.status = 'pending' AND o.next_attempt_at <= $1"
    " AND (o.lease_expires_at IS NULL OR o.lease_expires_at <= $1)"
    " AND (o.sender_key IS NULL OR o.hook IS NULL OR NOT (o.hook = ANY($2::text[]))"
    "  OR o.id = (SELECT min(p.id) FROM relay_outbox p WHERE p.status = 'pending'"
    "   AND p.hook = o.hook AND p.sender_key = o.sender_key))"
)

#: what a leased event returns: its row, and an MO's parts as JSON rows
_LEASED = (
    " RETURNING o.id, o.kind, o.idempotency_key, o.hook, o.callback_url, o.api_key, o.link,"
    " o.source_id, o.media, o.event, o.attempts, o.first_attempt_at, o.next_attempt_at,"
    " CASE WHEN o.kind = 'mo' AND o.source_id IS NOT NULL THEN"
    " (SELECT json_agg(json_build_array(p.position, p.sha256, p.content_type, m.size,"
    " p.content_id, p.content_location) ORDER BY p.position)::text"
    " FROM mo_media p JOIN media m ON m.sha256 = p.sha256 WHERE p.mo_id = o.source_id) END"
)

#: $1 id, $2 token, $3 status, $4 next attempt, $5 first attempt, $6 HTTP status, $7 error,
#: $8 now, $9 hook; $10 the MO's new status (None: the MO stays), $11 its attempts, $12 its id
_OUTCOME = (
    "WITH o AS (UPDATE relay_outbox SET status = $3, next_attempt_at = $4,"
    " first_attempt_at = COALESCE(first_attempt_at, $5), last_http_status = $6,"
    " last_error = $7, updated_at = $8, hook = COALESCE(hook, $9::text), lease_owner = NULL,"
    " lease_token = NULL, lease_expires_at = NULL WHERE id = $1 AND lease_token = $2"
    " RETURNING id),"
    " m AS (UPDATE mo_messages SET status = $10, attempts = $11, updated_at = $8"
    " WHERE id = $12 AND $10::text IS NOT NULL AND EXISTS (SELECT 1 FROM o))"
    " SELECT count(*) FROM o"
)


def _outcome_args(done: RelayOutcome, now: int) -> tuple[Any, ...]:
    """``_OUTCOME``'s arguments for ``done`` recorded at ``now``."""
    item = done.item
    first = ms(done.attempted_at) if done.attempted_at is not None else now
    due = ms(done.retry_at) if done.retry_at is not None else now
    mo_status: str | None = None
    if item.kind is RelayKind.MO and item.source_id is not None and done.outcome != "retry":
        mo_status = "relayed" if done.outcome == "delivered" else done.outcome
    return (
        item.id, item.lease_token, _STATUS_OF[done.outcome].value, due, first,
        done.http_status, done.error, now, done.hook, mo_status, item.attempt, item.source_id,
    )  # fmt: skip


#: a lease given back unattempted ($1 id, $2 token, $3 now); relay workers notified
_RELEASE = (
    "WITH o AS (UPDATE relay_outbox SET attempts = GREATEST(attempts - 1, 0), updated_at = $3,"
    " lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL"
    " WHERE id = $1 AND lease_token = $2 RETURNING id)"
    " SELECT (SELECT count(*) FROM o), (SELECT pg_notify('mm7_work', 'relay')"
    " WHERE EXISTS (SELECT 1 FROM o))"
)

#: the MOs of the events in CTE ``o`` (id, kind, source_id) follow them to {status} at $1
_MO_FOLLOWS = (
    " m AS (UPDATE mo_messages SET status = '{status}', updated_at = $1 FROM o"
    " WHERE o.kind = 'mo' AND mo_messages.id = o.source_id)"
)

#: requeue the events that {where} (at $1; $2 what selects them), their MOs pending again;
#: relay workers notified
_REQUEUE = (
    "WITH o AS (UPDATE relay_outbox SET status = 'pending', attempts = 0,"
    " first_attempt_at = NULL, next_attempt_at = $1, last_error = NULL,"
    " last_http_status = NULL, updated_at = $1, lease_owner = NULL, lease_token = NULL,"
    " lease_expires_at = NULL WHERE {where} RETURNING id, kind, source_id),"
    + _MO_FOLLOWS.replace("{status}", "pending")
    + " SELECT (SELECT count(*) FROM o), (SELECT pg_notify('mm7_work', 'relay')"
    " WHERE EXISTS (SELECT 1 FROM o))"
)
_REQUEUE_IDS = _REQUEUE.format(where="id = ANY($2::bigint[]) AND status IN ('dead', 'dropped')")
_REQUEUE_DEAD = _REQUEUE.format(where="status = 'dead'")
_REQUEUE_DEAD_OF_KEY = _REQUEUE.format(where="status = 'dead' AND api_key = $2")

#: drop the dead or pending events $2 at $1, their leases and MOs with them
_DROP = (
    "WITH o AS (UPDATE relay_outbox SET status = 'dropped', updated_at = $1,"
    " lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL"
    " WHERE id = ANY($2::bigint[]) AND status IN ('dead', 'pending')"
    " RETURNING id, kind, source_id),"
    + _MO_FOLLOWS.replace("{status}", "dropped")
    + " SELECT count(*) FROM o"
)

#: finished events deleted per statement by ``purge_relay``
PURGE_ROWS = 5000


def _record(row: asyncpg.Record) -> RelayRecord:
    return RelayRecord(
        row[0], RelayKind(row[1]), row[2], RelayStatus(row[3]), row[4], row[5], row[6], row[7],
        row[8], dt(row[9]), opt_dt(row[10]), row[11], row[12], dt(row[13]), dt(row[14]),
        json.loads(row[15]), row[16],
    )  # fmt: skip


def _parts(text: str | None) -> tuple[PartRecord, ...]:
    return tuple(PartRecord(*p) for p in json.loads(text)) if text else ()


@dataclass(frozen=True, slots=True)
class _Bucket:
    """One indexed scan of a lease: due events matching ``where`` (SQL on ``o``, with
    ``{value}`` standing for ``value`` when it has one), at most ``limit``."""

    where: str
    value: object
    limit: int


#: the buckets' conditions: every due event; one hook's; events without a hook; events of the
#: hooks not named in ``{value}`` (an array)
_ALL = ""
_HOOK = " AND o.hook = {value}::text"
_HOOKLESS = " AND o.hook IS NULL"
_OTHERS = " AND o.hook IS NOT NULL AND NOT (o.hook = ANY({value}::text[]))"


def _lease_statement(buckets: Sequence[_Bucket]) -> tuple[str, list[Any]]:
    """The lease statement and the arguments of its buckets (from $7 on): each bucket's
    oldest due events locked with ``SKIP LOCKED`` (one indexed scan each: a full hook's
    backlog is never scanned, and a small quota never crowds the others out of a shared
    LIMIT), and the oldest $3 of them all leased to owner $4 with token $5 until $6.
    $1 now, $2 the ordered hooks."""
    ctes: list[str] = []
    args: list[Any] = []
    for index, bucket in enumerate(buckets):
        where = bucket.where
        if "{value}" in where:
            args.append(bucket.value)
            where = where.replace("{value}", f"${6 + len(args)}")
        args.append(bucket.limit)
        ctes.append(
            f"b{index} AS (SELECT o.id, o.next_attempt_at FROM relay_outbox o"
            f" WHERE {_LEASABLE}{where} ORDER BY o.next_attempt_at, o.id"
            f" LIMIT ${6 + len(args)} FOR UPDATE OF o SKIP LOCKED)"
        )
    union = " UNION ALL ".join(f"SELECT id, next_attempt_at FROM b{i}" for i in range(len(ctes)))
    sql = (
        f"WITH {', '.join(ctes)}, picked AS (SELECT id FROM ({union}) c"
        " ORDER BY next_attempt_at, id LIMIT $3)"
        " UPDATE relay_outbox o SET lease_owner = $4, lease_token = $5, lease_expires_at = $6,"
        " attempts = o.attempts + 1, updated_at = $1 FROM picked WHERE o.id = picked.id" + _LEASED
    )
    return sql, args


def _buckets(n: int, quotas: Mapping[str | None, int] | None, others: bool) -> list[_Bucket]:
    """The scans of one lease call (``lease_relay``'s ``quotas`` and ``others``)."""
    if quotas is None:
        return [_Bucket(_ALL, None, n)]
    buckets = [
        _Bucket(_HOOKLESS, None, min(quota, n))
        if hook is None
        else _Bucket(_HOOK, hook, min(quota, n))
        for hook, quota in quotas.items()
        if quota > 0
    ]
    if others:
        buckets.append(_Bucket(_OTHERS, sorted(h for h in quotas if h is not None), n))
    return buckets


class PostgresRelayOps(PostgresBase):
    """The relay half of ``PostgresStore`` (module docstring)."""

    async def lease_relay(
        self,
        owner: str,
        n: int,
        ttl: timedelta,
        *,
        ordered_hooks: Collection[str] = (),
        quotas: Mapping[str | None, int] | None = None,
        others: bool = True,
        finished: Sequence[RelayOutcome] = (),
    ) -> list[RelayItem]:
        """Lease up to ``n`` due pending events not leased by anyone else (on any instance).

        ``finished``: outcomes of earlier attempts recorded first, in the same transaction (as
        ``SqliteStore.lease_relay``).

        As ``SqliteStore.lease_relay``: for hooks in ``ordered_hooks`` only the oldest pending
        event of each sender is eligible; ``quotas`` bounds the events per hook in this call
        (key None: events without a hook; hooks not named are not limited), ``others`` (with
        ``quotas``) also takes events of hooks the quotas do not name. Each lease counts as an
        attempt; every event leased carries this call's fencing token.
        """
        buckets = _buckets(n, quotas, others) if n > 0 else []
        if not buckets and not finished:
            return []
        now = self._now_ms()
        until = now + int(ttl.total_seconds() * 1000)
        token = new_token()
        sql, args = _lease_statement(buckets) if buckets else ("", [])
        outcomes = [_outcome_args(done, now) for done in finished]

        async def lease(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            found: list[asyncpg.Record] = await conn.fetch(
                sql, now, sorted(ordered_hooks), n, owner, token, until, *args
            )
            return found

        async def op(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            await conn.executemany(_OUTCOME, outcomes)
            return await lease(conn) if buckets else []

        rows = await (self._write(op) if outcomes else self._autocommit(lease))
        return [
            RelayItem(
                id=row[0],
                kind=RelayKind(row[1]),
                idempotency_key=row[2],
                hook=row[3],
                callback_url=row[4],
                api_key=row[5],
                link=row[6],
                source_id=row[7],
                media=row[8],
                event=json.loads(row[9]),
                attempt=row[10],
                first_attempt_at=opt_dt(row[11]),
                owner=owner,
                lease_token=token,
                lease_expires_at=dt(until),
                parts=_parts(row[13]),
            )  # fmt: skip
            for row in sorted(rows, key=lambda r: (r[12], r[0]))
        ]

    async def relay_outcome(
        self,
        item: RelayItem,
        outcome: Outcome,
        *,
        attempted_at: datetime | None = None,
        retry_at: datetime | None = None,
        http_status: int | None = None,
        error: str | None = None,
        hook: str | None = None,
    ) -> bool:
        """Record how an attempt ended and release the lease; False if the lease was lost
        (another worker leased the event since, or it was dropped).

        As ``SqliteStore.relay_outcome``: ``hook`` is recorded on an event that had none,
        ``attempted_at`` kept as the first attempt's time, ``retry_at`` required for "retry";
        a delivered MO becomes ``relayed``, a dead or skipped one ``dead`` or ``skipped``.
        """
        done = RelayOutcome(
            item, outcome, attempted_at=attempted_at, retry_at=retry_at,
            http_status=http_status, error=error, hook=hook,
        )  # fmt: skip
        row = await self._write_row(_OUTCOME, *_outcome_args(done, self._now_ms()))
        return bool(row is not None and row[0])

    async def release_relay(self, item: RelayItem) -> bool:
        """Give a lease back unattempted (shutdown): due again now, the attempt not counted;
        relay workers of every instance are notified."""
        row = await self._write_row(_RELEASE, item.id, item.lease_token, self._now_ms())
        return bool(row is not None and row[0])

    async def relay_events(
        self,
        *,
        status: RelayStatus | None = None,
        hook: str | None = None,
        kind: RelayKind | None = None,
        after_id: int = 0,
        limit: int = 100,
        api_key: str | None = None,
    ) -> list[RelayRecord]:
        """Relay events by id, filtered (``api_key``: only the events of that key's messages);
        page with ``after_id`` (the last id seen)."""
        where = ["id > $1"]
        args: list[Any] = [after_id]
        for column, value in (
            ("api_key", api_key),
            ("status", status.value if status is not None else None),
            ("hook", hook),
            ("kind", kind.value if kind is not None else None),
        ):
            if value is not None:
                args.append(value)
                where.append(f"{column} = ${len(args)}")
        args.append(limit)
        rows = await self._fetch(
            f"SELECT {_RECORD_COLUMNS} FROM relay_outbox WHERE {' AND '.join(where)}"
            f" ORDER BY id LIMIT ${len(args)}",
            *args,
        )
        return [_record(r) for r in rows]

    async def get_relay_event(self, event_id: int) -> RelayRecord | None:
        """One relay event, or None."""
        row = await self._fetchrow(
            f"SELECT {_RECORD_COLUMNS} FROM relay_outbox WHERE id = $1", event_id
        )
        return None if row is None else _record(row)

    async def relay_counts(self, api_key: str | None = None) -> dict[str, int]:
        """How many events are in each status (for metrics and ``mm7 relay list``); with
        ``api_key``, of that key's events only."""
        if api_key is None:
            rows = await self._fetch("SELECT status, count(*) FROM relay_outbox GROUP BY status")
        else:
            rows = await self._fetch(
                "SELECT status, count(*) FROM relay_outbox WHERE api_key = $1 GROUP BY status",
                api_key,
            )
        return {r[0]: int(r[1]) for r in rows}

    async def requeue_relay(
        self, ids: Sequence[int] | None = None, *, api_key: str | None = None
    ) -> int:
        """Make dead or dropped events pending again (all dead ones when ``ids`` is None; with
        ``api_key``, all dead ones of that key's messages); their MOs become ``pending``.

        Attempts and the first-attempt time start over, so a requeued event gets the full
        ``max_age`` again; relay workers of every instance are notified. How many.
        """
        now = self._now_ms()
        if ids is not None:
            row = await self._write_row(_REQUEUE_IDS, now, list(ids))
        elif api_key is not None:
            row = await self._write_row(_REQUEUE_DEAD_OF_KEY, now, api_key)
        else:
            row = await self._write_row(_REQUEUE_DEAD, now)
        return int(row[0]) if row is not None else 0

    async def drop_relay(self, ids: Sequence[int]) -> int:
        """Stop relaying these events (dead or pending ones, leased or not): kept as
        ``dropped``, with their MOs. How many."""
        row = await self._write_row(_DROP, self._now_ms(), list(ids))
        return int(row[0]) if row is not None else 0

    async def purge_relay(self, before: datetime) -> int:
        """Delete delivered, skipped and dropped events last changed before ``before``, in
        statements of at most ``PURGE_ROWS`` rows.

        Pending and dead events are never purged: they still have to reach the application
        (dead ones wait for an operator). Returns how many were deleted.
        """
        cutoff = ms(before)
        total = 0
        while True:
            tag = await self._execute_write(
                "DELETE FROM relay_outbox WHERE id IN (SELECT id FROM relay_outbox"
                " WHERE status IN ('delivered', 'skipped', 'dropped') AND updated_at < $1"
                " LIMIT $2)",
                cutoff,
                PURGE_ROWS,
            )
            count = int(tag.rsplit(" ", 1)[-1])
            total += count
            if count < PURGE_ROWS:
                return total

    # -- suppressions ----------------------------------------------------------------------

    async def suppressed(self, addresses: Sequence[str]) -> set[str]:
        """Which of ``addresses`` (as given) opted out."""
        keys = {a: normalize_address(a) for a in addresses}
        if not keys:
            return set()
        async with self._connection() as conn:
            hit = await suppressed_keys(conn, keys.values())
        self._succeeded()
        return {a for a, k in keys.items() if k in hit}

    async def suppressions(self, *, limit: int = 1000) -> list[Suppression]:
        """The suppression list, newest first."""
        rows = await self._fetch(
            "SELECT address, word, link, mo_id, created_at FROM suppressions"
            " ORDER BY created_at DESC, address_key LIMIT $1",
            limit,
        )
        return [Suppression(r[0], r[1], r[2], r[3], dt(r[4])) for r in rows]

    # -- secrets the gateway keeps for itself ---------------------------------------------

    async def own_secret(self, name: str) -> str:
        """A random secret made once and kept in the database (e.g. the media URL key): every
        instance gets the same one, whichever made it."""
        candidate = secrets.token_hex(32)
        now = self._now_ms()

        async def op(conn: asyncpg.Connection) -> str:
            await conn.execute(
                "INSERT INTO store_secrets (name, value, created_at) VALUES ($1, $2, $3)"
                " ON CONFLICT (name) DO NOTHING",
                name,
                candidate,
                now,
            )
            # a second statement: its snapshot sees a row another instance committed while
            # the INSERT waited for it (the INSERT's own snapshot would not)
            return str(await conn.fetchval("SELECT value FROM store_secrets WHERE name = $1", name))

        return await self._write(op)
