"""The PostgreSQL store's early reports: applied by the completion that records their MessageID.

A mixin of ``PostgresStore`` (the rules are in ``mm7.service.store.early``). Reports and
completions of one MessageID meet on an advisory lock keyed by it, with no cost to the hot path
beyond one function call in the completion's own statement:

- a report of an unknown MessageID takes the lock exclusively, correlates again and, still
  unknown, keeps itself in ``early_reports`` before it commits (``inbound``);
- every completion calls ``mm7_early_reports`` (postgres/migrations.py) in its statement: the
  lock, shared, then a look at ``early_reports`` in a snapshot taken after the lock was granted.

So either the report committed first and the completion sees it, or the completion holds the
lock and the report waits for its commit, and then finds the MessageID. When a report is kept,
the completion's statement writes nothing and says so; ``complete`` then runs the completion and
``apply_early`` in one transaction. Completions of one MessageID for several recipients take the
kept rows ``FOR UPDATE``: each report is applied once.
"""

from __future__ import annotations

from typing import Any

from mm7.core.status import MMStatus
from mm7.service.store import early
from mm7.service.store.outbox import RelayKind
from mm7.service.store.postgres.base import asyncpg
from mm7.service.store.postgres.inbound import (
    ADOPTED_READ_REPLY,
    ADOPTED_RELAY,
    ADOPTED_REPORT,
    PostgresInbound,
    correlate,
    sent_on,
)
from mm7.service.store.postgres.rows import dt
from mm7.service.store.records import WorkItem

__all__ = ["PostgresEarly"]


class PostgresEarly(PostgresInbound):
    """``apply_early`` of ``PostgresStore`` (module docstring)."""

    async def _apply_early(
        self, conn: asyncpg.Connection, item: WorkItem, mm7_message_id: str, now: int
    ) -> None:
        """In ``complete``'s transaction, after the MessageID's lock: the reports and read
        replies kept for it that now correlate with ``item``'s recipient are applied, oldest
        first, and leave ``early_reports``."""
        kept = await conn.fetch(
            f"SELECT {early.COLUMNS} FROM early_reports WHERE mm7_message_id = $1"
            " ORDER BY id FOR UPDATE",
            mm7_message_id,
        )
        for row in kept:
            report = early.from_row(tuple(row))
            found = correlate(
                await sent_on(conn, report.links, mm7_message_id), report.links, report.addresses
            )
            matched = found.matches[0].id if found.matches else None
            sibling = found.fallback and await _names_sibling(conn, item, report.keys())
            if not early.is_for(item.recipient_id, matched, by_fallback=found.fallback,
                                names_sibling=sibling):  # fmt: skip
                continue
            await conn.execute("DELETE FROM early_reports WHERE id = $1", report.id)
            info: dict[str, Any] = {**report.details,
                                    "received_at": dt(report.received_at).isoformat()}  # fmt: skip
            if report.kind is RelayKind.DELIVERY_REPORT:
                made = self._report_values(found, mm7_message_id, MMStatus(report.status), info,
                                           now, report_id=report.report_id)  # fmt: skip
                done = await conn.fetchrow(ADOPTED_REPORT.sql, *ADOPTED_REPORT.args(made.values))
                await self._report_fallback(conn, made, done, MMStatus(report.status), now)
                values = made.values
            else:
                values = self._read_reply_values(found, mm7_message_id, report.status, info, now)
                await conn.execute(ADOPTED_READ_REPLY.sql, *ADOPTED_READ_REPLY.args(values))
            if values["relay"]:
                key = values["relay_key"] + early.CORRELATED_SUFFIX
                relay = ADOPTED_RELAY.args({**values, "correlated_key": key})
                await conn.execute(ADOPTED_RELAY.sql, *relay)


async def _names_sibling(conn: asyncpg.Connection, item: WorkItem, keys: set[str]) -> bool:
    """Whether one of the addresses ``keys`` is another recipient of ``item``'s message."""
    if not keys:
        return False
    found = await conn.fetchval(
        "SELECT 1 FROM recipients WHERE address_key = ANY($1::text[]) AND message_id = $2"
        " AND id <> $3 LIMIT 1",
        sorted(keys),
        item.message_id,
        item.recipient_id,
    )
    return found is not None
