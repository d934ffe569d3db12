"""SQL shared by the PostgreSQL store's operations: the status roll-up and recipient finishes.

A message's status follows its recipients (``mm7.service.store.records``, "How a message's
status rolls up"); here the rules are one SQL ``CASE`` over the counters of ``messages``, set
in the same statement that moves a recipient, so that no operation reads the counters back.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mm7.service.store.records import RecipientStatus

_NAME = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")


class Statement:
    """SQL written with ``:name`` parameters, compiled once to PostgreSQL's ``$n``: a statement
    takes only the values it names (PostgreSQL refuses a parameter it cannot type because the
    statement does not use it), so variants of one operation share one mapping of values."""

    __slots__ = ("names", "sql")

    def __init__(self, text: str) -> None:
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            if match[1] not in names:
                names.append(match[1])
            return f"${names.index(match[1]) + 1}"

        self.sql = _NAME.sub(number, text)
        self.names = tuple(names)

    def args(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The arguments in ``$n`` order, taken from ``values`` by name."""
        return tuple(values[name] for name in self.names)


#: the counter of ``messages`` a recipient leaving the queue with this status adds to (failed
#: is what is left: recipient_count minus every other counter)
FINISH_COUNTER: dict[RecipientStatus, str] = {
    RecipientStatus.SUBMITTED: "submitted_count",
    RecipientStatus.EXPIRED: "expired_count",
    RecipientStatus.SUPPRESSED: "suppressed_count",
}
COUNT_COLUMNS = (
    "recipient_count",
    "queued_count",
    "submitted_count",
    "delivered_count",
    "undelivered_count",
    "expired_count",
    "suppressed_count",
)


def rollup(**changed: str) -> str:
    """The message status (SQL ``CASE``) of the counters, some replaced by expressions of their
    new values: ``rollup(queued_count="queued_count - 1")`` in an UPDATE's SET, whose right-hand
    sides see the old row. The rules of ``RecipientCounts.status`` (a message rolled up after a
    change has been leased: ``sending`` while some recipient is queued)."""
    c = {name: f"({changed.get(name, name)})" for name in COUNT_COLUMNS}
    counted = f"({c['recipient_count']} - {c['suppressed_count']})"
    return (
        f"CASE WHEN {c['queued_count']} > 0 THEN 'sending'"
        f" WHEN {c['submitted_count']} - {c['delivered_count']} - {c['undelivered_count']} > 0"
        " THEN 'submitted'"
        f" WHEN {counted} <= 0 THEN 'failed'"
        f" WHEN {c['delivered_count']} >= {counted} THEN 'delivered'"
        f" WHEN {c['delivered_count']} > 0 THEN 'partially_delivered'"
        f" WHEN {c['expired_count']} >= {counted} THEN 'expired'"
        " ELSE 'failed' END"
    )


def _message_update(status: RecipientStatus) -> str:
    """SET clause of ``messages`` for a recipient leaving the queue with ``status``."""
    counter = FINISH_COUNTER.get(status)
    changed = {"queued_count": "queued_count - 1"}
    sets = ["queued_count = queued_count - 1"]
    if counter is not None:
        changed[counter] = f"{counter} + 1"
        sets.append(f"{counter} = {counter} + 1")
    sets.append(f"status = {rollup(**changed)}")
    return ", ".join(sets)


def fenced_finish(
    status: RecipientStatus, *, set_mm7_id: bool = False, probe_early: bool = False
) -> str:
    """One statement: the leased recipient ($1, lease token $2) leaves the queue with
    ``status``; counters, roll-up and its event follow; a lease lost meanwhile records a
    ``stale_result`` event instead. Returns one row: 1 if applied, 0 if the lease was lost.

    $3 last status code, $4 last status text, $5 now, $6 event kind, $7 event details (JSON),
    $8 message id, $9 stale-result details (JSON)[, $10 the MM7 MessageID].

    ``probe_early`` (with ``set_mm7_id``): first the MessageID's lock and whether a report is
    kept early for it (``mm7_early_reports``); if one is, nothing is written and the row's
    second value is true (the caller applies the outcome and the report in one transaction).
    """
    mm7 = ", mm7_message_id = $10" if set_mm7_id else ""
    probe = "x AS (SELECT mm7_early_reports($10) AS kept), " if probe_early else ""
    held = " AND NOT (SELECT kept FROM x)" if probe_early else ""
    result = (
        "SELECT (SELECT count(*) FROM r), (SELECT kept FROM x)"
        if probe_early
        else "SELECT count(*) FROM r"
    )
    return (
        f"WITH {probe}r AS (UPDATE recipients SET"
        f" status = '{status.value}', last_status_code = COALESCE($3, last_status_code),"
        " last_status_text = COALESCE($4, last_status_text), updated_at = $5,"
        f" lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL{mm7}"
        f" WHERE id = $1 AND lease_token = $2{held} RETURNING message_id),"
        f" m AS (UPDATE messages SET {_message_update(status)}, updated_at = $5"
        " FROM r WHERE messages.id = r.message_id),"
        " e AS (INSERT INTO events (message_id, recipient_id, kind, status, details, at)"
        f" SELECT r.message_id, $1, $6, '{status.value}', $7, $5 FROM r),"
        " s AS (INSERT INTO events (message_id, recipient_id, kind, status, details, at)"
        f" SELECT $8, $1, 'stale_result', NULL, $9, $5 WHERE NOT EXISTS (SELECT 1 FROM r){held})"
        f" {result}"
    )


def queued_finish(status: RecipientStatus) -> str:
    """One statement: a queued recipient ($1) leaves the queue with ``status`` whoever leased
    it (an expiry found while leasing, a STOP); its lease goes too, so an attempt in flight
    records nothing. Counters, roll-up and its event follow. One row: 1 if it was queued.

    $2 last status code, $3 last status text, $4 now, $5 event kind, $6 details (JSON).
    """
    return (
        "WITH r AS (UPDATE recipients SET"
        f" status = '{status.value}', last_status_code = COALESCE($2, last_status_code),"
        " last_status_text = COALESCE($3, last_status_text), updated_at = $4,"
        " lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL"
        " WHERE id = $1 AND status = 'queued' RETURNING message_id),"
        f" m AS (UPDATE messages SET {_message_update(status)}, updated_at = $4"
        " FROM r WHERE messages.id = r.message_id),"
        " e AS (INSERT INTO events (message_id, recipient_id, kind, status, details, at)"
        f" SELECT r.message_id, $1, $5, '{status.value}', $6, $4 FROM r)"
        " SELECT count(*) FROM r"
    )


SUBMITTED = fenced_finish(RecipientStatus.SUBMITTED, set_mm7_id=True)
#: ``SUBMITTED`` after probing for reports kept early for its MessageID (the hot path)
SUBMITTED_PROBED = fenced_finish(RecipientStatus.SUBMITTED, set_mm7_id=True, probe_early=True)
FAILED = fenced_finish(RecipientStatus.FAILED)
EXPIRED = fenced_finish(RecipientStatus.EXPIRED)
EXPIRED_AT_LEASE = queued_finish(RecipientStatus.EXPIRED)
SUPPRESSED = queued_finish(RecipientStatus.SUPPRESSED)

#: a transient error: due again at $3 (and dispatchers of its link woken)
RETRY = (
    "WITH r AS (UPDATE recipients SET next_attempt_at = $3, last_status_code = $4,"
    " last_status_text = $5, updated_at = $6, lease_owner = NULL, lease_token = NULL,"
    " lease_expires_at = NULL WHERE id = $1 AND lease_token = $2 RETURNING message_id, link),"
    " e AS (INSERT INTO events (message_id, recipient_id, kind, status, details, at)"
    " SELECT r.message_id, $1, 'retry', 'queued', $7, $6 FROM r),"
    " s AS (INSERT INTO events (message_id, recipient_id, kind, status, details, at)"
    " SELECT $8, $1, 'stale_result', NULL, $9, $6 WHERE NOT EXISTS (SELECT 1 FROM r))"
    " SELECT (SELECT count(*) FROM r), (SELECT pg_notify('mm7_work', 'mt:' || link) FROM r)"
)

#: a lease given back unattempted: due again now, the attempt not counted
RELEASE = (
    "WITH r AS (UPDATE recipients SET attempts = GREATEST(attempts - 1, 0), updated_at = $3,"
    " lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL"
    " WHERE id = $1 AND lease_token = $2 RETURNING message_id, link),"
    " s AS (INSERT INTO events (message_id, recipient_id, kind, status, details, at)"
    " SELECT $4, $1, 'stale_result', NULL, $5, $3 WHERE NOT EXISTS (SELECT 1 FROM r))"
    " SELECT (SELECT count(*) FROM r), (SELECT pg_notify('mm7_work', 'mt:' || link) FROM r)"
)

#: lease up to $3 due, unleased (or lease expired) queued recipients of link $1 at $2 for
#: owner $4 with token $5 until $6; rows whose message expired come back with ``dead`` set,
#: not leased. Each taken row: its message's fields and its parts (JSON), the previous owner.
LEASE = (
    "WITH due AS (SELECT id, message_id, expires_at, next_attempt_at, lease_owner AS previous,"
    " (expires_at IS NOT NULL AND expires_at <= $2) AS dead FROM recipients"
    " WHERE link = $1 AND status = 'queued' AND next_attempt_at <= $2"
    " AND (lease_expires_at IS NULL OR lease_expires_at <= $2)"
    " ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED),"
    " taken AS (UPDATE recipients r SET lease_owner = $4, lease_token = $5,"
    " lease_expires_at = $6, attempts = r.attempts + 1, updated_at = $2"
    " FROM due WHERE r.id = due.id AND NOT due.dead"
    " RETURNING r.id, r.message_id, r.address, r.transaction_id, r.attempts,"
    " due.previous, due.next_attempt_at),"
    " ev AS (INSERT INTO events (message_id, recipient_id, kind, status, details, at)"
    " SELECT message_id, id, 'lease_expired', NULL,"
    " json_build_object('previous_owner', previous, 'new_owner', $4::text)::text, $2"
    " FROM taken WHERE previous IS NOT NULL),"
    " sm AS (UPDATE messages SET status = 'sending', updated_at = $2"
    " WHERE id IN (SELECT message_id FROM taken) AND status = 'queued')"
    " SELECT t.id, t.message_id, t.address, t.transaction_id, t.attempts, m.fields,"
    " m.idempotency_key, m.expires_at, m.callback_url, m.created_at,"
    " (SELECT json_agg(json_build_array(p.position, p.sha256, p.content_type, md.size,"
    " p.content_id, p.content_location) ORDER BY p.position)::text"
    " FROM message_media p JOIN media md ON md.sha256 = p.sha256"
    " WHERE p.message_id = t.message_id), false, t.next_attempt_at"
    " FROM taken t JOIN messages m ON m.id = t.message_id"
    " UNION ALL SELECT id, message_id, NULL, NULL, NULL, NULL, NULL, expires_at, NULL, NULL,"
    " NULL, true, next_attempt_at FROM due WHERE dead"
)
