"""What the MMSC sends the PostgreSQL store: delivery reports, read replies, MO messages.

A mixin of ``PostgresStore`` with the behaviour of ``SqliteStore``'s inbound half: reports are
correlated by (link, MessageID, recipient), then the report's other address, then the other
links of the same MMSC; final outcomes never regress; every report is kept, also unknown ones.
MOs are stored once (a retry of one stored is a duplicate) with their media, their relay event
and their opt-out change.

Each is two statements at most: one read that correlates (all the candidate links at once),
one write that records everything (report, recipient, counters and roll-up, event, relay event
and its ``NOTIFY``) in one round trip. The write re-checks the recipient's status, so a report
racing another one for the same handset on another instance never counts twice. A report or read
reply whose MessageID no link sent yet takes one transaction more: under the MessageID's lock it
correlates again and, still unknown, is kept early for the completion that records the MessageID
(``early.py``; ``mm7.service.store.early``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mm7.core.leniency import Leniency
from mm7.core.status import MMStatus
from mm7.service.store.early import PG_LOCK_CLASS
from mm7.service.store.outbox import RelayKind, status_event
from mm7.service.store.postgres import statements as sql
from mm7.service.store.postgres.base import asyncpg
from mm7.service.store.postgres.fallback import queue_fallback
from mm7.service.store.postgres.media import (
    INSERT_MEDIA,
    PostgresMedia,
    media_rows,
    unknown_media,
)
from mm7.service.store.postgres.relay_rows import (
    apply_opt_out,
    queue_status_event,
    report_target,
)
from mm7.service.store.postgres.rows import dt, mo_parts, new_id, to_json
from mm7.service.store.postgres.statements import Statement
from mm7.service.store.records import (
    DLR_RECIPIENT_STATUS,
    DeliveryReportRecord,
    DeliveryReportResult,
    JSONObject,
    MoRecord,
    MoResult,
    NewMo,
    RecipientStatus,
    normalize_address,
    report_trigger,
)

_REPORTABLE = frozenset({RecipientStatus.SUBMITTED.value, RecipientStatus.INDETERMINATE.value})
#: the ``_REPORT_RELAY`` values when nothing is relayed
_NO_RELAY: dict[str, Any] = {"relay": False, "relay_kind": None, "relay_key": None,
                             "callback_url": None, "api_key": None, "body": None}  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Sent:
    """A recipient a MessageID was sent to, with what the report's relay event needs."""

    link: str
    id: int
    message_id: str
    address_key: str
    status: str
    address: str
    callback_url: str | None
    api_key: str | None
    fields: str


@dataclass(frozen=True, slots=True)
class _Correlation:
    """What a report's MessageID and addresses matched (``sqlite/store.py``'s namesake)."""

    link: str
    rows: list[_Sent]
    matches: list[_Sent]
    address: str
    alternate: bool
    #: matched by the one-recipient fallback, not by an address
    fallback: bool = False


_SENT = (
    "SELECT r.link, r.id, r.message_id, r.address_key, r.status, r.address, m.callback_url,"
    " m.api_key, m.fields FROM recipients r JOIN messages m ON m.id = r.message_id"
    " WHERE r.link = ANY($1::text[]) AND r.mm7_message_id = $2 ORDER BY r.id"
)


@dataclass(frozen=True, slots=True)
class _Report:
    """A delivery report as its statement writes it: how it correlated, the message and
    recipient it names, whether it moves the recipient (to ``status``) and the values."""

    found: _Correlation
    message: _Sent | None
    matched: _Sent | None
    moves: bool
    status: RecipientStatus | None
    values: dict[str, Any]


async def sent_on(
    conn: asyncpg.Connection, links: Sequence[str], mm7_message_id: str
) -> list[_Sent]:
    """The recipients ``links`` sent the MessageID to, read on ``conn`` (in its transaction)."""
    return [_Sent(*r) for r in await conn.fetch(_SENT, list(dict.fromkeys(links)),
                                                 mm7_message_id)]  # fmt: skip


def to_json_list(items: Sequence[str]) -> str:
    """A list of strings as JSON text (``early_reports.other_links``)."""
    return json.dumps(list(items))


def correlate(
    sent: list[_Sent], links: Sequence[str], addresses: tuple[str, str | None]
) -> _Correlation:
    """Of the recipients ``links`` sent the MessageID to, those a report on ``addresses``
    means: the rules of ``sqlite/store.py``'s ``_correlate`` (the first link that sent it;
    the first address, then the second; on the first link only, a MessageID naming exactly
    one recipient matches whatever the spelling)."""
    first, second = addresses
    for position, link in enumerate(links):
        rows = [s for s in sent if s.link == link]
        if not rows:
            continue
        for index, address in enumerate((first, second)):
            if address:
                key = normalize_address(address)
                matches = [r for r in rows if r.address_key == key]
                if matches:
                    return _Correlation(link, rows, matches, address, index == 1)
        if position == 0 and len(rows) == 1:
            return _Correlation(link, rows, rows, first or rows[0].address, False, fallback=True)
        if position == 0:
            return _Correlation(link, rows, [], first or second or "", False)
    return _Correlation(links[0], [], [], first or second or "", False)


def _name_swap(details: dict[str, Any]) -> None:
    """The report's handset was its Sender: name that in the details kept with it."""
    named = list(details.get("leniencies") or [])
    if Leniency.REPORT_ADDRESSES_SWAPPED.value not in named:
        details["leniencies"] = [*named, Leniency.REPORT_ADDRESSES_SWAPPED.value]


def _bump(column: str, status: str) -> str:
    return f"{column} + (CASE WHEN :target::text = '{status}' THEN 1 ELSE 0 END)"


#: a relay event for the application (``relay``: whether to queue one, ``relay_kind``,
#: ``relay_key``, ``callback_url``, ``api_key``, ``body``), of the report's link and message
_REPORT_RELAY = (
    " o AS (INSERT INTO relay_outbox (kind, idempotency_key, callback_url, api_key, link,"
    " source_id, event, status, next_attempt_at, created_at, updated_at)"
    " SELECT :relay_kind, :relay_key, :callback_url, :api_key, :link, :message_id, :body,"
    " 'pending', :now, :now, :now WHERE :relay::boolean"
    " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id)"
)


def _report_statement(record: str, relay: str) -> Statement:
    """A delivery report: the recipient moved to ``target`` (None: unchanged) with the counters
    and roll-up, the report's row written by ``record`` (a CTE ``d`` returning its id), its
    event (``info``: the details without the report id) and ``relay`` (a CTE ``o``, or "").
    One row: the report's id, whether the recipient moved, the NOTIFY (None without relay)."""
    return Statement(
        "WITH u AS (UPDATE recipients SET status = :target, updated_at = :now"
        " WHERE id = :recipient_id AND :target::text IS NOT NULL"
        " AND status IN ('submitted', 'indeterminate') RETURNING message_id),"
        " m AS (UPDATE messages SET"
        f" delivered_count = {_bump('delivered_count', 'delivered')},"
        f" undelivered_count = {_bump('undelivered_count', 'undelivered')},"
        " status = "
        + sql.rollup(
            delivered_count=_bump("delivered_count", "delivered"),
            undelivered_count=_bump("undelivered_count", "undelivered"),
        )
        + ", updated_at = :now FROM u WHERE messages.id = u.message_id"
        " AND :target::text IN ('delivered', 'undelivered')),"
        f" {record},"
        " e AS (INSERT INTO events (message_id, recipient_id, kind, status, details, at)"
        " SELECT :message_id, :recipient_id, 'delivery_report', :mm_status,"
        " '{\"report_id\":' || d.id || ',' || substr(:info::text, 2), :now"
        " FROM d WHERE :message_id::text IS NOT NULL)"
        + (f", {relay}" if relay else "")
        + " SELECT d.id, (SELECT count(*) FROM u),"
        + (" (SELECT pg_notify('mm7_work', 'relay') FROM o)" if relay else " NULL")
        + " FROM d"
    )


#: record a delivery report as it arrives, with its relay event
_DELIVERY_REPORT = _report_statement(
    "d AS (INSERT INTO delivery_reports (link, mm7_message_id, recipient, mm_status,"
    " raw_status, status_text, raw, message_id, recipient_id, received_at)"
    " VALUES (:link, :mm7_message_id, :recipient, :mm_status, :raw_status, :status_text, :raw,"
    " :message_id, :recipient_id, :now) RETURNING id)",
    _REPORT_RELAY.strip(),
)
#: apply a report kept early (``:report_id``) now that its recipient is known; its relay event
#: is ``ADOPTED_RELAY``'s
ADOPTED_REPORT = _report_statement(
    "d AS (UPDATE delivery_reports SET link = :link, recipient = :recipient,"
    " message_id = :message_id, recipient_id = :recipient_id WHERE id = :report_id"
    " RETURNING id)",
    "",
)
#: keep a report or read reply of an unknown MessageID (``mm7.service.store.early``)
KEEP_EARLY = (
    "INSERT INTO early_reports (kind, report_id, link, other_links, mm7_message_id, recipient,"
    " alternate, status, status_text, details, received_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
)
#: the MessageID's lock, exclusive: taken by a report of an unknown MessageID before it
#: correlates again and keeps itself, so that a completion of that MessageID either committed
#: before (and is seen) or sees the kept report (``mm7_early_reports`` in postgres/migrations.py)
LOCK_MESSAGE_ID = f"SELECT pg_advisory_xact_lock({PG_LOCK_CLASS}, hashtext($1))"

#: record a read reply: its event on the message (if correlated) and its relay event
_READ_REPLY = Statement(
    "WITH e AS (INSERT INTO events (message_id, recipient_id, kind, status, details, at)"
    " SELECT :message_id, :recipient_id, 'read_reply', :mm_status, :info, :now"
    " WHERE :message_id::text IS NOT NULL),"
    + _REPORT_RELAY
    + " SELECT (SELECT pg_notify('mm7_work', 'relay') FROM o)"
)
#: a read reply kept early, applied: its event (its relay event is ``ADOPTED_RELAY``'s)
ADOPTED_READ_REPLY = Statement(
    "INSERT INTO events (message_id, recipient_id, kind, status, details, at)"
    " VALUES (:message_id, :recipient_id, 'read_reply', :mm_status, :info, :now)"
)
#: the relay event of a report kept early, applied (``_REPORT_RELAY``'s values): its event as an
#: unknown report becomes this one while it waits untried and unleased; else this one is queued,
#: under its key, or under ``correlated_key`` (``early.CORRELATED_SUFFIX`` added) when the
#: unknown one holds it
ADOPTED_RELAY = Statement(
    "WITH u AS (UPDATE relay_outbox SET event = :body, callback_url = :callback_url,"
    " api_key = :api_key, source_id = :message_id, updated_at = :now"
    " WHERE idempotency_key = :relay_key AND status = 'pending' AND attempts = 0"
    " AND lease_token IS NULL RETURNING id),"
    " i AS (INSERT INTO relay_outbox (kind, idempotency_key, callback_url, api_key, link,"
    " source_id, event, status, next_attempt_at, created_at, updated_at)"
    " SELECT :relay_kind, :relay_key, :callback_url, :api_key, :link, :message_id, :body,"
    " 'pending', :now, :now, :now WHERE NOT EXISTS (SELECT 1 FROM u)"
    " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id),"
    " j AS (INSERT INTO relay_outbox (kind, idempotency_key, callback_url, api_key, link,"
    " source_id, event, status, next_attempt_at, created_at, updated_at)"
    " SELECT :relay_kind, :correlated_key, :callback_url, :api_key, :link,"
    " :message_id, :body, 'pending', :now, :now, :now"
    " WHERE NOT EXISTS (SELECT 1 FROM u) AND NOT EXISTS (SELECT 1 FROM i)"
    " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id)"
    " SELECT pg_notify('mm7_work', 'relay')"
)


def _mo_statement(duplicate: str) -> Statement:
    """Store one MO unless ``duplicate`` (a WHERE clause on mo_messages) finds an earlier one,
    with its media, parts and relay event. One row: the earlier MO's id (a duplicate), the new
    MO's id, the NOTIFY."""
    return Statement(
        "WITH dup AS (SELECT id FROM mo_messages WHERE link = :link AND "
        + duplicate
        + " ORDER BY received_at DESC LIMIT 1),"
        " mo AS (INSERT INTO mo_messages (id, link, transaction_id, mm7_message_id, fields,"
        " status, next_attempt_at, received_at, updated_at, fingerprint)"
        " SELECT :id, :link, :transaction_id, :mm7_message_id, :fields, :status, :now, :now,"
        " :now, :fingerprint WHERE NOT EXISTS (SELECT 1 FROM dup)"
        " ON CONFLICT (link, mm7_message_id) WHERE mm7_message_id IS NOT NULL DO NOTHING"
        " RETURNING id),"
        " md AS ("
        + INSERT_MEDIA.format(
            now=":now",
            sha=":media_sha",
            ct=":media_type",
            size=":media_size",
            data=":media_data",
            where="WHERE EXISTS (SELECT 1 FROM mo)",
        )  # fmt: skip
        + "), p AS (INSERT INTO mo_media (mo_id, position, sha256, content_type, content_id,"
        " content_location) SELECT mo.id, u.n - 1, u.sha, u.ct, u.cid, u.loc"
        " FROM mo, unnest(:part_sha::text[], :part_type::text[], :part_id::text[],"
        " :part_location::text[]) WITH ORDINALITY AS u(sha, ct, cid, loc, n)),"
        " o AS (INSERT INTO relay_outbox (kind, idempotency_key, hook, link, sender_key,"
        " source_id, media, event, status, next_attempt_at, created_at, updated_at)"
        " SELECT 'mo', :relay_key, :hook, :link, :sender_key, :id, :media_mode, :body,"
        " 'pending', :now, :now, :now FROM mo WHERE :relay::boolean"
        " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id)"
        " SELECT (SELECT id FROM dup), (SELECT id FROM mo),"
        " (SELECT pg_notify('mm7_work', 'relay') FROM o)"
    )


# A MessageID decides alone: MMSCs recycle TransactionIDs, so an MO with a new MessageID is
# new even when its TransactionID was seen this week.
_MO_BY_MESSAGE_ID = _mo_statement("mm7_message_id = :mm7_message_id")
_MO_BY_TRANSACTION = _mo_statement(
    "transaction_id = :transaction_id AND received_at >= :since"
    " AND (:fingerprint::text IS NULL OR fingerprint = :fingerprint)"
)
_MO_NEW = _mo_statement("false")


class PostgresInbound(PostgresMedia):
    """Delivery reports, read replies and MOs of ``PostgresStore`` (module docstring)."""

    _relay_all_statuses: bool
    _mo_window_ms: int

    async def _sent(self, links: Sequence[str], mm7_message_id: str) -> list[_Sent]:
        """The recipients ``links`` sent the MessageID to (one read, outside a transaction)."""
        rows = await self._fetch(_SENT, list(dict.fromkeys(links)), mm7_message_id)
        return [_Sent(*r) for r in rows]

    def _relay_args(
        self,
        kind: RelayKind,
        found: _Correlation,
        mm7_message_id: str,
        key: str,
        message: _Sent | None,
        status: str,
        *,
        mm_status: str,
        status_text: str | None,
        now: int,
        leniencies: Sequence[str],
    ) -> dict[str, Any]:
        """The ``_REPORT_RELAY`` values of a report or read reply: its relay event, if any (to
        the message's callback or dlr-url / rr-url, or with status hooks to the link's)."""
        callback = api_key = None
        kannel: dict[str, Any] | None = None
        if message is not None:
            api_key = message.api_key
            callback, kannel = report_target(kind, message.callback_url, api_key, message.fields)
        if callback is None and not self._relay_all_statuses:
            return _NO_RELAY
        body = status_event(
            kind, message_id=message.message_id if message else None, recipient=found.address,
            status=status, at=dt(now), link=found.link, mm7_message_id=mm7_message_id,
            mm_status=mm_status, status_text=status_text, leniencies=leniencies,
        )  # fmt: skip
        if kannel is not None:
            body["kannel"] = kannel
        prefix = "dlr" if kind is RelayKind.DELIVERY_REPORT else "rr"
        idem = f"{prefix}:{found.link}:{mm7_message_id}:{key}:{mm_status}"
        return {"relay": True, "relay_kind": kind.value, "relay_key": idem,
                "callback_url": callback, "api_key": api_key, "body": to_json(body)}  # fmt: skip

    async def record_delivery_report(
        self,
        link: str,
        mm7_message_id: str,
        recipient: str,
        mm_status: MMStatus,
        raw_status: str | None = None,
        status_text: str | None = None,
        raw: str | None = None,
        details: JSONObject | None = None,
        *,
        alternate: str | None = None,
        other_links: Sequence[str] = (),
    ) -> DeliveryReportResult:
        """Record a DeliveryReportReq and move the recipient it correlates with (the rules of
        ``SqliteStore.record_delivery_report``); unknown reports are kept for inspection, and
        kept early for the completion that records their MessageID
        (``mm7.service.store.early``): correlated again under the MessageID's lock, so that a
        completion running meanwhile either is seen or sees the kept report."""
        now = self._now_ms()
        info: dict[str, Any] = {
            "mm7_message_id": mm7_message_id,
            "raw_status": raw_status if raw_status is not None else mm_status.value,
            "status_text": status_text,
            **(dict(details) if details else {}),
        }
        links = (link, *other_links)
        addresses = (recipient, alternate)
        found = correlate(await self._sent(links, mm7_message_id), links, addresses)
        if found.rows:
            report = self._report_values(found, mm7_message_id, mm_status, info, now, raw=raw)
            args = _DELIVERY_REPORT.args(report.values)
            if not report.moves or report_trigger(mm_status) is None:
                row = await self._write_row(_DELIVERY_REPORT.sql, *args)
            else:

                async def moving(conn: asyncpg.Connection) -> asyncpg.Record:
                    done = await conn.fetchrow(_DELIVERY_REPORT.sql, *args)
                    await self._report_fallback(conn, report, done, mm_status, now)
                    return done

                row = await self._write(moving)
        else:

            async def op(conn: asyncpg.Connection) -> tuple[_Report, asyncpg.Record]:
                await conn.execute(LOCK_MESSAGE_ID, mm7_message_id)
                again = correlate(await sent_on(conn, links, mm7_message_id), links, addresses)
                made = self._report_values(again, mm7_message_id, mm_status, info, now, raw=raw)
                done = await conn.fetchrow(_DELIVERY_REPORT.sql,
                                           *_DELIVERY_REPORT.args(made.values))  # fmt: skip
                await self._report_fallback(conn, made, done, mm_status, now)
                if made.message is None:
                    await conn.execute(
                        KEEP_EARLY, RelayKind.DELIVERY_REPORT.value, done[0], link,
                        to_json_list(other_links), mm7_message_id, recipient, alternate,
                        mm_status.value, status_text, to_json(info), now,
                    )  # fmt: skip
                return made, done

            report, row = await self._write(op)
        assert row is not None
        return await self._report_result(report, row)

    async def _report_fallback(
        self,
        conn: asyncpg.Connection,
        report: _Report,
        row: asyncpg.Record,
        mm_status: MMStatus,
        now: int,
    ) -> None:
        """In the report's transaction: the recipient it moved gets its SMS fallback when the
        MMStatus says the handset cannot take the MMS (``mm7.service.fallback.rules``)."""
        trigger = report_trigger(mm_status)
        matched = report.matched
        if trigger is not None and report.moves and row[1] and matched is not None:
            await queue_fallback(conn, matched.message_id, matched.id, trigger, now,
                                 self._relay_all_statuses)  # fmt: skip

    def _report_values(
        self,
        found: _Correlation,
        mm7_message_id: str,
        mm_status: MMStatus,
        info: dict[str, Any],
        now: int,
        *,
        raw: str | None = None,
        report_id: int | None = None,
    ) -> _Report:
        """What the report statements write for a report correlated as ``found`` (``info``
        gets the swap named); ``report_id``: a report kept early, applied now."""
        if found.alternate:
            _name_swap(info)
        target = DLR_RECIPIENT_STATUS.get(mm_status)
        message = found.matches[0] if found.matches else (found.rows[0] if found.rows else None)
        matched = found.matches[0] if found.matches else None
        moves = (
            target is not None and matched is not None and matched.status in _REPORTABLE
        )  # fmt: skip
        status: RecipientStatus | None = None
        if matched is not None:
            status = target if moves else RecipientStatus(matched.status)
        relay = self._relay_args(
            RelayKind.DELIVERY_REPORT, found, mm7_message_id, normalize_address(found.address),
            message, status.value if status is not None else "unknown",
            mm_status=info["raw_status"], status_text=info.get("status_text"), now=now,
            leniencies=info.get("leniencies") or (),
        )  # fmt: skip
        values = {
            "link": found.link, "mm7_message_id": mm7_message_id, "recipient": found.address,
            "mm_status": mm_status.value, "raw_status": info["raw_status"],
            "status_text": info.get("status_text"), "raw": raw,
            "message_id": message.message_id if message else None,
            "recipient_id": matched.id if matched else None, "now": now,
            "target": target.value if moves and target else None, "info": to_json(info),
            "report_id": report_id, **relay,
        }  # fmt: skip
        return _Report(found, message, matched, moves, status, values)

    async def _report_result(self, report: _Report, row: asyncpg.Record) -> DeliveryReportResult:
        """The result of a report written as ``report`` (its statement's ``row``)."""
        status, matched, message = report.status, report.matched, report.message
        if report.moves and not row[1] and matched is not None:
            # another report moved it first (another instance): say where it stands now
            current = await self._fetchval("SELECT status FROM recipients WHERE id = $1",
                                           matched.id)  # fmt: skip
            status = RecipientStatus(current) if current is not None else status
        found = report.found
        return DeliveryReportResult(
            row[0], message.message_id if message else None, matched.id if matched else None,
            status, link=found.link, recipient=found.address, alternate_matched=found.alternate,
        )  # fmt: skip

    async def delivery_reports(
        self, *, message_id: str | None = None, unknown_only: bool = False, limit: int = 100
    ) -> list[DeliveryReportRecord]:
        """The reports of ``message_id``, or (``unknown_only``) those that matched nothing."""
        select = (
            "SELECT id, link, mm7_message_id, recipient, mm_status, raw_status, status_text,"
            " raw, message_id, recipient_id, received_at FROM delivery_reports"
        )
        if unknown_only:
            rows = await self._fetch(select + " WHERE message_id IS NULL ORDER BY id LIMIT $1",
                                     limit)  # fmt: skip
        elif message_id is not None:
            rows = await self._fetch(select + " WHERE message_id = $1 ORDER BY id LIMIT $2",
                                     message_id, limit)  # fmt: skip
        else:
            rows = await self._fetch(select + " ORDER BY id LIMIT $1", limit)
        return [
            DeliveryReportRecord(
                r[0], r[1], r[2], r[3], MMStatus(r[4]), r[5], r[6], r[7], r[8], r[9], dt(r[10])
            )  # fmt: skip
            for r in rows
        ]

    async def record_read_reply(
        self,
        link: str,
        mm7_message_id: str,
        recipient: str,
        read_status: str,
        status_text: str | None = None,
        details: JSONObject | None = None,
        *,
        alternate: str | None = None,
        other_links: Sequence[str] = (),
    ) -> str | None:
        """Record a ReadReplyReq as an event of the message it answers (its id, or None),
        correlated like delivery reports, and relay it; one of an unknown MessageID is kept
        early as a report is."""
        now = self._now_ms()
        info: dict[str, Any] = {"mm7_message_id": mm7_message_id, "read_status": read_status,
                                "status_text": status_text,
                                **(dict(details) if details else {})}  # fmt: skip
        links = (link, *other_links)
        addresses = (recipient, alternate)
        found = correlate(await self._sent(links, mm7_message_id), links, addresses)
        if found.rows:
            values = self._read_reply_values(found, mm7_message_id, read_status, info, now)
            await self._write_row(_READ_REPLY.sql, *_READ_REPLY.args(values))
            return found.matches[0].message_id if found.matches else None

        async def op(conn: asyncpg.Connection) -> str | None:
            await conn.execute(LOCK_MESSAGE_ID, mm7_message_id)
            again = correlate(await sent_on(conn, links, mm7_message_id), links, addresses)
            values = self._read_reply_values(again, mm7_message_id, read_status, info, now)
            await conn.fetchrow(_READ_REPLY.sql, *_READ_REPLY.args(values))
            if not again.rows:
                await conn.execute(
                    KEEP_EARLY, RelayKind.READ_REPLY.value, None, link,
                    to_json_list(other_links), mm7_message_id, recipient, alternate, read_status,
                    status_text, to_json(info), now,
                )  # fmt: skip
            return again.matches[0].message_id if again.matches else None

        return await self._write(op)

    def _read_reply_values(
        self,
        found: _Correlation,
        mm7_message_id: str,
        read_status: str,
        info: dict[str, Any],
        now: int,
    ) -> dict[str, Any]:
        """What the read-reply statements write for a reply correlated as ``found``."""
        if found.alternate:
            _name_swap(info)
        matched = found.matches[0] if found.matches else None
        relay = self._relay_args(
            RelayKind.READ_REPLY, found, mm7_message_id, normalize_address(found.address),
            matched, read_status.lower(), mm_status=read_status,
            status_text=info.get("status_text"), now=now,
            leniencies=info.get("leniencies") or (),
        )  # fmt: skip
        return {
            "link": found.link, "mm_status": read_status,
            "message_id": matched.message_id if matched else None,
            "recipient_id": matched.id if matched else None, "now": now, "info": to_json(info),
            **relay,
        }  # fmt: skip

    # -- MO messages -----------------------------------------------------------------------

    async def store_mo(self, mo: NewMo) -> MoResult:
        """Commit a DeliverReq with its media before DeliverRsp 1000 is sent (the duplicate
        rules of ``SqliteStore.store_mo``); with it, in the same transaction, its relay event
        (relay workers of every instance notified) and its opt-out change."""
        media = await media_rows(mo.parts)
        now = self._now_ms()
        mo_id = new_id(now)
        if mo.mm7_message_id is not None:
            statement = _MO_BY_MESSAGE_ID
        elif mo.transaction_id is not None:
            statement = _MO_BY_TRANSACTION
        else:
            statement = _MO_NEW
        relay = mo.relay
        args = statement.args({
            "id": mo_id, "link": mo.link, "transaction_id": mo.transaction_id,
            "mm7_message_id": mo.mm7_message_id, "fields": to_json(mo.fields),
            "status": "pending" if relay is not None else "unrouted", "now": now,
            "fingerprint": mo.fingerprint, "since": now - self._mo_window_ms,
            "media_sha": media.sha, "media_type": media.content_type,
            "media_size": media.size, "media_data": media.data, "part_sha": media.part_sha,
            "part_type": media.part_type, "part_id": media.part_id,
            "part_location": media.part_location, "relay": relay is not None,
            "relay_key": f"mo:{mo_id}", "hook": relay.hook if relay else None,
            "sender_key": relay.sender_key if relay else None,
            "media_mode": relay.media if relay else None,
            "body": to_json({**relay.event, "id": mo_id}) if relay else None,
        })  # fmt: skip

        async def op(conn: asyncpg.Connection) -> asyncpg.Record:
            row: asyncpg.Record = await conn.fetchrow(statement.sql, *args)
            if row[1] is not None and mo.opt_out is not None:
                await apply_opt_out(conn, mo.opt_out, mo.link, mo_id, now)
                if mo.opt_out.action == "stop":
                    await self._suppress_queued(conn, mo.opt_out.address, mo.opt_out.word,
                                                mo_id, now)  # fmt: skip
            return row

        try:
            if mo.opt_out is None:
                row = await self._write_row(statement.sql, *args)
            else:
                row = await self._write(op)
        except asyncpg.ForeignKeyViolationError as exc:
            raise unknown_media(exc, media) from exc
        assert row is not None
        if row[0] is not None:
            return MoResult(row[0], True)
        if row[1] is not None:
            return MoResult(row[1], False)
        # stored meanwhile by another instance under the same MessageID
        first = await self._fetchval(
            "SELECT id FROM mo_messages WHERE link = $1 AND mm7_message_id = $2",
            mo.link, mo.mm7_message_id,
        )  # fmt: skip
        if first is None:
            raise AssertionError("an MO neither stored nor found under its MessageID")
        return MoResult(first, True)

    async def _suppress_queued(
        self, conn: asyncpg.Connection, address: str, word: str, mo_id: str, now: int
    ) -> None:
        """STOP also stops what is queued for the sender: scheduled messages, a campaign's
        backlog, retries. Their leases go too, so an attempt in flight records nothing."""
        rows = await conn.fetch(
            "SELECT id FROM recipients WHERE address_key = $1 AND status = 'queued'",
            normalize_address(address),
        )
        details = to_json({"word": word, "mo_id": mo_id})
        for (recipient_id,) in rows:
            done = await conn.fetchval(sql.SUPPRESSED, recipient_id, None,
                                       "the recipient opted out", now, "suppressed",
                                       details)  # fmt: skip
            if done:
                await queue_status_event(
                    conn, recipient_id, RecipientStatus.SUPPRESSED.value, now,
                    relay_all=self._relay_all_statuses, status_text="the recipient opted out",
                )  # fmt: skip

    async def get_mo(self, mo_id: str) -> MoRecord | None:
        """A stored MO message with its parts."""

        async def read(conn: asyncpg.Connection) -> MoRecord | None:
            row = await conn.fetchrow(
                "SELECT id, link, transaction_id, mm7_message_id, fields, status, received_at"
                " FROM mo_messages WHERE id = $1",
                mo_id,
            )
            if row is None:
                return None
            return MoRecord(row[0], row[1], row[2], row[3], json.loads(row[4]), row[5],
                            dt(row[6]), await mo_parts(conn, mo_id))  # fmt: skip

        return await self._read(read)
