"""The SQLite store's operations for the sender's own limits and the API keys' quotas.

A mixin of ``SqliteStore`` (its writer thread and clock); what they do is described in
``mm7.service.store.limits``. Each operation is one job of the writer thread, so a quota's check
and count are one transaction: nothing can count between them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from mm7.service.store.base import Clock
from mm7.service.store.limits import (
    Deferral,
    QuotaLimits,
    QuotaRefused,
    QuotaTaken,
    bucket_level,
    bucket_wait,
    day_of,
    until_next_day,
)
from mm7.service.store.sqlite.rows import event, ms

__all__ = ["SqliteLimits"]

#: the kind of an MT recipient's lease in ``leases`` (as ``store.py`` writes it)
_MT = "mt"


class SqliteLimits:
    """Deferrals and quotas of ``SqliteStore`` (module docstring)."""

    _clock: Clock
    _write: Callable[..., Any]

    async def defer(self, deferrals: list[Deferral]) -> int:
        """Give each lease back unattempted, due again at its ``at``, with a ``throttled``
        event; how many leases were still ours (the others are left alone)."""
        now = ms(self._clock.now())

        def op(conn: sqlite3.Connection) -> int:
            done = 0
            for deferral in deferrals:
                item = deferral.item
                row = conn.execute(
                    "SELECT token FROM leases WHERE kind=? AND item_id=?", (_MT, item.recipient_id)
                ).fetchone()
                if row is None or row[0] != item.lease_token:
                    continue
                conn.execute(
                    "DELETE FROM leases WHERE kind=? AND item_id=?", (_MT, item.recipient_id)
                )
                conn.execute(
                    "UPDATE recipients SET attempts=MAX(attempts-1, 0), next_attempt_at=?,"
                    " updated_at=? WHERE id=?",
                    (ms(deferral.at), now, item.recipient_id),
                )
                details = {**deferral.details, "until": deferral.at.isoformat()}
                event(conn, item.message_id, item.recipient_id, "throttled", "queued",
                      details, now)  # fmt: skip
                done += 1
            return done

        result: int = await self._write(op)
        return result

    async def take_quota(
        self, api_key: str, count: int, limits: QuotaLimits
    ) -> QuotaTaken | QuotaRefused:
        """Count ``count`` recipients against both quotas of ``api_key``, or refuse naming the
        first one over (nothing counted)."""
        now_dt = self._clock.now()
        now = ms(now_dt)
        day = day_of(now_dt)

        def op(conn: sqlite3.Connection) -> QuotaTaken | QuotaRefused:
            level: float | None = None
            if limits.per_second is not None:
                row = conn.execute(
                    "SELECT tokens, stamp FROM api_rate_buckets WHERE api_key=?", (api_key,)
                ).fetchone()
                tokens, stamp = (row[0], row[1]) if row is not None else (None, None)
                level = bucket_level(tokens, stamp, now, limits.per_second)
                wait = bucket_wait(level, limits.per_second, count)
                if wait > 0:
                    return QuotaRefused("max_per_second", limits.per_second, wait)
            if limits.per_day is not None:
                counted = conn.execute(
                    "INSERT INTO api_day_counts (api_key, day, used) SELECT ?, ?, ? WHERE ? <= ?"
                    " ON CONFLICT (api_key, day) DO UPDATE SET used = used + excluded.used"
                    " WHERE used + excluded.used <= ?",
                    (api_key, day, count, count, limits.per_day, limits.per_day),
                ).rowcount
                if counted == 0:
                    return QuotaRefused("max_per_day", limits.per_day, until_next_day(now_dt))
            if level is not None:
                conn.execute(
                    "INSERT INTO api_rate_buckets (api_key, tokens, stamp) VALUES (?,?,?)"
                    " ON CONFLICT (api_key) DO UPDATE SET tokens = excluded.tokens,"
                    " stamp = excluded.stamp",
                    (api_key, level - count, now),
                )
            return QuotaTaken(api_key, count, day, limits)

        result: QuotaTaken | QuotaRefused = await self._write(op)
        return result

    async def give_back_quota(self, taken: QuotaTaken, count: int) -> None:
        """Return ``count`` of the recipients ``taken`` counted, to its day and its bucket."""
        if count <= 0:
            return
        limits = taken.limits

        def op(conn: sqlite3.Connection) -> None:
            if limits.per_day is not None:
                conn.execute(
                    "UPDATE api_day_counts SET used = MAX(used - ?, 0) WHERE api_key=? AND day=?",
                    (count, taken.api_key, taken.day),
                )
            if limits.per_second is not None:
                conn.execute(
                    "UPDATE api_rate_buckets SET tokens = MIN(?, tokens + ?) WHERE api_key=?",
                    (float(limits.per_second), count, taken.api_key),
                )

        await self._write(op)
