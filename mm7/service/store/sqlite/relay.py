"""The SQLite store's relay operations: the outbox of hook events, suppressions, own secrets.

A mixin of ``SqliteStore`` (it uses the store's writer thread, readers and clock). Rows are
written by the MO, MT and report operations in the same transaction as what they report
(``insert_status_event``, ``insert_mo_event``); this module leases them to the relay worker,
records outcomes fenced by the lease token, and lists, requeues and drops dead letters.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from mm7.service.store.base import Clock
from mm7.service.store.early import CORRELATED_SUFFIX
from mm7.service.store.outbox import (
    MoRelay,
    OptOut,
    Outcome,
    RelayItem,
    RelayKind,
    RelayOutcome,
    RelayRecord,
    RelayStatus,
    Suppression,
)
from mm7.service.store.records import normalize_address
from mm7.service.store.sqlite.rows import dt, ms, opt_dt, parts, to_json

T = TypeVar("T")

LEASE_KIND_RELAY = "relay"

_STATUS_OF: dict[str, str] = {
    "delivered": RelayStatus.DELIVERED.value,
    "retry": RelayStatus.PENDING.value,
    "dead": RelayStatus.DEAD.value,
    "skipped": RelayStatus.SKIPPED.value,
}

_RECORD_COLUMNS = (
    "id, kind, idempotency_key, status, hook, callback_url, link, source_id, attempts,"
    " next_attempt_at, first_attempt_at, last_http_status, last_error, created_at, updated_at,"
    " event, api_key"
)


def _record(row: Sequence[Any]) -> RelayRecord:
    return RelayRecord(
        row[0], RelayKind(row[1]), row[2], RelayStatus(row[3]), row[4], row[5], row[6], row[7],
        row[8], dt(row[9]), opt_dt(row[10]), row[11], row[12], dt(row[13]), dt(row[14]),
        json.loads(row[15]), row[16],
    )  # fmt: skip


def insert_event(
    conn: sqlite3.Connection,
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
    """Queue one event (ignored when its idempotency key is queued already: a repeat)."""
    conn.execute(
        "INSERT OR IGNORE INTO relay_outbox (kind, idempotency_key, hook, callback_url, api_key,"
        " link, sender_key, source_id, media, event, status, next_attempt_at, created_at,"
        " updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (kind.value, key, hook, callback_url, api_key, link, sender_key, source_id, media,
         to_json(event), RelayStatus.PENDING.value, now, now, now),
    )  # fmt: skip


def replace_unknown_event(
    conn: sqlite3.Connection,
    key: str,
    event: dict[str, Any],
    now: int,
    *,
    callback_url: str | None,
    api_key: str | None,
    source_id: str | None,
) -> str | None:
    """A report kept early and correlated now, whose event as an unknown report may be queued
    under ``key`` (``mm7.service.store.early``): that event becomes this one while it waits
    untried and unleased (None: nothing more to queue); else the key to queue this one under."""
    row = conn.execute(
        "SELECT o.id, o.status, o.attempts, l.item_id FROM relay_outbox o"
        " LEFT JOIN leases l ON l.kind=? AND l.item_id=o.id WHERE o.idempotency_key=?",
        (LEASE_KIND_RELAY, key),
    ).fetchone()
    if row is None:
        return key
    if row[1] == RelayStatus.PENDING.value and row[2] == 0 and row[3] is None:
        conn.execute(
            "UPDATE relay_outbox SET event=?, callback_url=?, api_key=?, source_id=?,"
            " updated_at=? WHERE id=?",
            (to_json(event), callback_url, api_key, source_id, now, row[0]),
        )
        return None
    return key + CORRELATED_SUFFIX


def insert_mo_event(
    conn: sqlite3.Connection, mo_id: str, link: str, relay: MoRelay, now: int
) -> None:
    """Queue the relay of a just-stored MO to its route's hook."""
    insert_event(
        conn, RelayKind.MO, f"mo:{mo_id}", {**relay.event, "id": mo_id}, now,
        hook=relay.hook, link=link, sender_key=relay.sender_key, source_id=mo_id,
        media=relay.media,
    )  # fmt: skip


def apply_opt_out(
    conn: sqlite3.Connection, opt_out: OptOut, link: str, mo_id: str, now: int
) -> None:
    """STOP adds the sender to the suppression list, START removes it."""
    key = normalize_address(opt_out.address)
    if opt_out.action == "stop":
        conn.execute(
            "INSERT OR REPLACE INTO suppressions (address_key, address, word, link, mo_id,"
            " created_at) VALUES (?,?,?,?,?,?)",
            (key, opt_out.address, opt_out.word, link, mo_id, now),
        )
    else:
        conn.execute("DELETE FROM suppressions WHERE address_key=?", (key,))


def suppressed_keys(conn: sqlite3.Connection, keys: Collection[str]) -> set[str]:
    """Which of the normalised addresses ``keys`` are suppressed."""
    found: set[str] = set()
    unique = list(dict.fromkeys(keys))
    for start in range(0, len(unique), 500):
        chunk = unique[start : start + 500]
        marks = ",".join("?" * len(chunk))
        found.update(
            r[0]
            for r in conn.execute(
                f"SELECT address_key FROM suppressions WHERE address_key IN ({marks})", chunk
            )
        )
    return found


def record_outcome(conn: sqlite3.Connection, done: RelayOutcome, now: int) -> bool:
    """Record how an attempt ended and release its lease (``relay_outcome``); False if the
    lease was lost (another worker leased the event since, or it was dropped)."""
    item = done.item
    row = conn.execute(
        "SELECT token FROM leases WHERE kind=? AND item_id=?", (LEASE_KIND_RELAY, item.id)
    ).fetchone()
    if row is None or row[0] != item.lease_token:
        return False
    conn.execute("DELETE FROM leases WHERE kind=? AND item_id=?", (LEASE_KIND_RELAY, item.id))
    first = ms(done.attempted_at) if done.attempted_at is not None else now
    due = ms(done.retry_at) if done.retry_at is not None else now
    conn.execute(
        "UPDATE relay_outbox SET status=?, next_attempt_at=?,"
        " first_attempt_at=COALESCE(first_attempt_at, ?), last_http_status=?,"
        " last_error=?, updated_at=?, hook=COALESCE(hook, ?) WHERE id=?",
        (_STATUS_OF[done.outcome], due, first, done.http_status, done.error, now, done.hook,
         item.id),
    )  # fmt: skip
    if item.kind is RelayKind.MO and item.source_id is not None and done.outcome != "retry":
        mo_status = "relayed" if done.outcome == "delivered" else done.outcome
        conn.execute(
            "UPDATE mo_messages SET status=?, attempts=?, updated_at=? WHERE id=?",
            (mo_status, item.attempt, now, item.source_id),
        )
    return True


def _set_mo_status(conn: sqlite3.Connection, event_id: int, status: str, now: int) -> None:
    """The MO a relay event carries follows it (dropped, pending again), for retention."""
    conn.execute(
        "UPDATE mo_messages SET status=?, updated_at=? WHERE id=(SELECT source_id FROM"
        " relay_outbox WHERE id=? AND kind='mo')",
        (status, now, event_id),
    )


class SqliteRelayOps:
    """The relay half of ``SqliteStore`` (module docstring)."""

    _clock: Clock
    _write: Callable[..., Any]
    _read: Callable[..., Any]

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
        """Lease up to ``n`` due pending events not leased by anyone else.

        ``finished``: outcomes of earlier attempts (``relay_outcome``'s arguments), recorded
        first in the same transaction, so a worker writes once per round, not once per event
        and again per lease; events they finish are not leased again by this call.

        For hooks in ``ordered_hooks`` only the oldest pending event of each sender is ever
        eligible, so one sender's events reach the hook one at a time, in order (an event
        waiting for its retry holds back the sender's later ones).

        ``quotas``: at most this many events per hook in this call (key None: events without a
        hook, i.e. callbacks and status hooks resolved at delivery); hooks not named are not
        limited. A worker passes its free slots per hook, so that it never holds leases on
        events that would only wait for the hook's concurrency limit (and could outlive their
        lease there). ``others`` (with ``quotas``): also events of hooks the quotas do not name
        (a hook removed from the configuration); that query walks the whole due backlog, so a
        worker asks for them now and then, not at every lease.
        """
        now = ms(self._clock.now())
        until = now + int(ttl.total_seconds() * 1000)
        ordered = json.dumps(sorted(ordered_hooks))
        # One indexed query per bucket (a hook with free slots, the hookless events, hooks the
        # quotas do not name): a full hook's backlog is never scanned, and a small quota never
        # crowds the others out of a shared LIMIT.
        buckets: list[tuple[str, tuple[Any, ...], int]] = []
        if quotas is None:
            buckets.append(("", (), n))
        else:
            for hook, quota in quotas.items():
                if quota > 0:
                    buckets.append((" AND o.hook IS ?", (hook,), min(quota, n)))
            if others:
                named = json.dumps(sorted(h for h in quotas if h is not None))
                buckets.append(
                    (
                        " AND o.hook IS NOT NULL"
                        " AND o.hook NOT IN (SELECT value FROM json_each(?))",
                        (named,),
                        n,
                    )
                )
        select = (
            "SELECT o.id, o.kind, o.idempotency_key, o.hook, o.callback_url, o.api_key,"
            " o.link, o.source_id, o.media, o.event, o.attempts, o.first_attempt_at,"
            " o.next_attempt_at"
            " FROM relay_outbox o LEFT JOIN leases l ON l.kind=? AND l.item_id=o.id"
            " WHERE o.status='pending' AND o.next_attempt_at<=?"
            " AND (l.expires_at IS NULL OR l.expires_at<=?)"
            " AND (o.sender_key IS NULL OR o.hook IS NULL"
            "  OR o.hook NOT IN (SELECT value FROM json_each(?))"
            "  OR o.id = (SELECT MIN(p.id) FROM relay_outbox p WHERE p.status='pending'"
            "   AND p.hook=o.hook AND p.sender_key=o.sender_key))"
        )

        def op(conn: sqlite3.Connection) -> list[RelayItem]:
            for done in finished:
                record_outcome(conn, done, now)
            if n <= 0:
                return []
            found: list[Any] = []
            for where, args, limit in buckets:
                found.extend(
                    conn.execute(
                        select + where + " ORDER BY o.next_attempt_at, o.id LIMIT ?",
                        (LEASE_KIND_RELAY, now, now, ordered, *args, limit),
                    ).fetchall()
                )
            rows = sorted(found, key=lambda r: (r[12], r[0]))[:n]
            items: list[RelayItem] = []
            for row in rows:
                token = secrets.token_hex(8)
                conn.execute(
                    "INSERT OR REPLACE INTO leases (kind, item_id, owner, token, expires_at)"
                    " VALUES (?,?,?,?,?)",
                    (LEASE_KIND_RELAY, row[0], owner, token, until),
                )
                conn.execute(
                    "UPDATE relay_outbox SET attempts=attempts+1, updated_at=? WHERE id=?",
                    (now, row[0]),
                )
                kind = RelayKind(row[1])
                items.append(
                    RelayItem(
                        id=row[0], kind=kind, idempotency_key=row[2], hook=row[3],
                        callback_url=row[4], api_key=row[5], link=row[6], source_id=row[7],
                        media=row[8], event=json.loads(row[9]), attempt=row[10] + 1,
                        first_attempt_at=opt_dt(row[11]), owner=owner, lease_token=token,
                        lease_expires_at=dt(until),
                        parts=(
                            parts(conn, "mo_media", "mo_id", row[7])
                            if kind is RelayKind.MO and row[7] is not None
                            else ()
                        ),
                    )
                )  # fmt: skip
            return items

        if n <= 0 and not finished:
            return []
        result: list[RelayItem] = await self._write(op)
        return result

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
        """Record how an attempt ended and release the lease; False if the lease was lost.

        ``hook``: the configured hook the attempt went to, recorded on an event that had none
        (a status event sent to its link's status hook), so listings name where it went.

        ``attempted_at``: when the attempt started (kept as the first attempt's time, from which
        ``max_age`` counts). ``retry_at`` is required for "retry". A delivered MO marks the MO
        ``relayed``; a dead one ``dead``.
        """
        done = RelayOutcome(
            item, outcome, attempted_at=attempted_at, retry_at=retry_at,
            http_status=http_status, error=error, hook=hook,
        )  # fmt: skip
        now = ms(self._clock.now())
        result: bool = await self._write(lambda conn: record_outcome(conn, done, now))
        return result

    async def release_relay(self, item: RelayItem) -> bool:
        """Give a lease back unattempted (shutdown): due again now, the attempt not counted."""
        now = ms(self._clock.now())

        def op(conn: sqlite3.Connection) -> bool:
            deleted = conn.execute(
                "DELETE FROM leases WHERE kind=? AND item_id=? AND token=?",
                (LEASE_KIND_RELAY, item.id, item.lease_token),
            ).rowcount
            if deleted:
                conn.execute(
                    "UPDATE relay_outbox SET attempts=MAX(attempts-1, 0), updated_at=? WHERE id=?",
                    (now, item.id),
                )
            return bool(deleted)

        result: bool = await self._write(op)
        return result

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
        where = ["id>?"]
        args: list[Any] = [after_id]
        if api_key is not None:
            where.append("api_key=?")
            args.append(api_key)
        if status is not None:
            where.append("status=?")
            args.append(status.value)
        if hook is not None:
            where.append("hook=?")
            args.append(hook)
        if kind is not None:
            where.append("kind=?")
            args.append(kind.value)
        sql = (
            f"SELECT {_RECORD_COLUMNS} FROM relay_outbox WHERE {' AND '.join(where)}"
            " ORDER BY id LIMIT ?"
        )
        args.append(limit)

        def read(conn: sqlite3.Connection) -> list[RelayRecord]:
            return [_record(r) for r in conn.execute(sql, args)]

        result: list[RelayRecord] = await self._read(read)
        return result

    async def get_relay_event(self, event_id: int) -> RelayRecord | None:
        """One relay event, or None."""

        def read(conn: sqlite3.Connection) -> RelayRecord | None:
            row = conn.execute(
                f"SELECT {_RECORD_COLUMNS} FROM relay_outbox WHERE id=?", (event_id,)
            ).fetchone()
            return None if row is None else _record(row)

        result: RelayRecord | None = await self._read(read)
        return result

    async def relay_counts(self, api_key: str | None = None) -> dict[str, int]:
        """How many events are in each status (for metrics and ``mm7 relay list``); with
        ``api_key``, of that key's events only."""
        sql = "SELECT status, COUNT(*) FROM relay_outbox"
        args: tuple[str, ...] = ()
        if api_key is not None:
            sql += " WHERE api_key=?"
            args = (api_key,)

        def read(conn: sqlite3.Connection) -> dict[str, int]:
            return {r[0]: int(r[1]) for r in conn.execute(sql + " GROUP BY status", args)}

        result: dict[str, int] = await self._read(read)
        return result

    async def requeue_relay(
        self, ids: Sequence[int] | None = None, *, api_key: str | None = None
    ) -> int:
        """Make dead or dropped events pending again (all dead ones when ``ids`` is None; with
        ``api_key``, all dead ones of that key's messages).

        Attempts and the first-attempt time start over, so a requeued event gets the full
        ``max_age`` again. Returns how many were requeued.
        """
        now = ms(self._clock.now())

        def op(conn: sqlite3.Connection) -> int:
            sql = (
                "UPDATE relay_outbox SET status='pending', attempts=0, first_attempt_at=NULL,"
                " next_attempt_at=?, last_error=NULL, last_http_status=NULL, updated_at=?"
            )
            if ids is None and api_key is not None:
                dead = [
                    r[0]
                    for r in conn.execute(
                        "SELECT id FROM relay_outbox WHERE api_key=? AND status='dead'",
                        (api_key,),
                    )
                ]
            elif ids is None:
                dead = [
                    r[0] for r in conn.execute("SELECT id FROM relay_outbox WHERE status='dead'")
                ]
            else:
                dead = list(ids)
            count = 0
            for event_id in dead:
                requeued = conn.execute(
                    sql + " WHERE id=? AND status IN ('dead', 'dropped')", (now, now, event_id)
                ).rowcount
                if requeued:
                    _set_mo_status(conn, event_id, "pending", now)
                count += requeued
            return count

        result: int = await self._write(op)
        return result

    async def drop_relay(self, ids: Sequence[int]) -> int:
        """Stop relaying these events (dead or pending ones): kept as ``dropped``. How many."""
        now = ms(self._clock.now())

        def op(conn: sqlite3.Connection) -> int:
            count = 0
            for event_id in ids:
                dropped = conn.execute(
                    "UPDATE relay_outbox SET status='dropped', updated_at=?"
                    " WHERE id=? AND status IN ('dead', 'pending')",
                    (now, event_id),
                ).rowcount
                if dropped:
                    _set_mo_status(conn, event_id, "dropped", now)
                count += dropped
                conn.execute(
                    "DELETE FROM leases WHERE kind=? AND item_id=?", (LEASE_KIND_RELAY, event_id)
                )
            return count

        result: int = await self._write(op)
        return result

    async def purge_relay(self, before: datetime) -> int:
        """Delete delivered, skipped and dropped events last changed before ``before``.

        Pending and dead events are never purged: they still have to reach the application
        (dead ones wait for an operator). Returns how many were deleted.
        """
        cutoff = ms(before)

        def op(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM relay_outbox WHERE status IN ('delivered', 'skipped', 'dropped')"
                " AND updated_at<?",
                (cutoff,),
            ).rowcount

        result: int = await self._write(op)
        return result

    # -- suppressions ----------------------------------------------------------------------

    async def suppressed(self, addresses: Sequence[str]) -> set[str]:
        """Which of ``addresses`` (as given) opted out."""
        keys = {a: normalize_address(a) for a in addresses}

        def read(conn: sqlite3.Connection) -> set[str]:
            hit = suppressed_keys(conn, keys.values())
            return {a for a, k in keys.items() if k in hit}

        result: set[str] = await self._read(read)
        return result

    async def suppressions(self, *, limit: int = 1000) -> list[Suppression]:
        """The suppression list, newest first."""

        def read(conn: sqlite3.Connection) -> list[Suppression]:
            return [
                Suppression(r[0], r[1], r[2], r[3], dt(r[4]))
                for r in conn.execute(
                    "SELECT address, word, link, mo_id, created_at FROM suppressions"
                    " ORDER BY created_at DESC LIMIT ?",
                    (limit,),
                )
            ]

        result: list[Suppression] = await self._read(read)
        return result

    # -- secrets the gateway keeps for itself ---------------------------------------------

    async def own_secret(self, name: str) -> str:
        """A random secret made once and kept in the database (e.g. the media URL key)."""
        candidate = secrets.token_hex(32)
        now = ms(self._clock.now())

        def op(conn: sqlite3.Connection) -> str:
            conn.execute(
                "INSERT OR IGNORE INTO store_secrets (name, value, created_at) VALUES (?,?,?)",
                (name, candidate, now),
            )
            row = conn.execute("SELECT value FROM store_secrets WHERE name=?", (name,)).fetchone()
            return str(row[0])

        result: str = await self._write(op)
        return result
