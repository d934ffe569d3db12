"""The PostgreSQL store's operations for the sender's own limits and the API keys' quotas.

A mixin of ``PostgresStore``; what they do is described in ``mm7.service.store.limits``. A
deferral of many recipients is one statement. A quota is one transaction: the key's bucket row
is locked first (an upsert that changes nothing), so instances counting for one key at once
take turns, and the day's count is raised by a conditional upsert that never passes the limit.
"""

from __future__ import annotations

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
from mm7.service.store.postgres.base import PostgresBase, asyncpg
from mm7.service.store.postgres.rows import ms, to_json

__all__ = ["PostgresLimits"]

#: leases given back unattempted ($1 ids, $2 their tokens, $3 due times, $4 event details) at
#: $5; the attempt is not counted; how many were still held
_DEFER = (
    "WITH d AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[])"
    " AS x(id, token, due, details)),"
    " r AS (UPDATE recipients SET attempts = GREATEST(recipients.attempts - 1, 0),"
    " next_attempt_at = d.due, updated_at = $5, lease_owner = NULL, lease_token = NULL,"
    " lease_expires_at = NULL FROM d WHERE recipients.id = d.id AND recipients.lease_token"
    " = d.token RETURNING recipients.id, recipients.message_id, d.details),"
    " e AS (INSERT INTO events (message_id, recipient_id, kind, status, details, at)"
    " SELECT message_id, id, 'throttled', 'queued', details, $5 FROM r)"
    " SELECT count(*) FROM r"
)
#: lock the key's bucket ($1), made full ($2 tokens at $3) when new: its tokens and stamp
_LOCK_BUCKET = (
    "INSERT INTO api_rate_buckets AS b (api_key, tokens, stamp) VALUES ($1, $2, $3)"
    " ON CONFLICT (api_key) DO UPDATE SET api_key = b.api_key RETURNING tokens, stamp"
)
#: count $3 recipients for key $1 on day $2 unless that passes $4: the new count, or no row
_COUNT_DAY = (
    "INSERT INTO api_day_counts AS d (api_key, day, used)"
    " SELECT $1::text, $2::text, $3::bigint WHERE $3::bigint <= $4::bigint"
    " ON CONFLICT (api_key, day) DO UPDATE SET used = d.used + excluded.used"
    " WHERE d.used + excluded.used <= $4::bigint RETURNING used"
)


class PostgresLimits(PostgresBase):
    """Deferrals and quotas of ``PostgresStore`` (module docstring)."""

    async def defer(self, deferrals: list[Deferral]) -> int:
        """Give each lease back unattempted, due again at its ``at``, with a ``throttled``
        event; how many leases were still ours (the others are left alone)."""
        if not deferrals:
            return 0
        ids = [d.item.recipient_id for d in deferrals]
        tokens = [d.item.lease_token for d in deferrals]
        due = [ms(d.at) for d in deferrals]
        details = [to_json({**d.details, "until": d.at.isoformat()}) for d in deferrals]
        row = await self._write_row(_DEFER, ids, tokens, due, details, self._now_ms())
        return int(row[0]) if row is not None else 0

    async def take_quota(
        self, api_key: str, count: int, limits: QuotaLimits
    ) -> QuotaTaken | QuotaRefused:
        """Count ``count`` recipients against both quotas of ``api_key``, or refuse naming the
        first one over (nothing counted)."""
        now_dt = self._clock.now()
        now = ms(now_dt)
        day = day_of(now_dt)

        async def op(conn: asyncpg.Connection) -> QuotaTaken | QuotaRefused:
            level: float | None = None
            if limits.per_second is not None:
                row = await conn.fetchrow(_LOCK_BUCKET, api_key, float(limits.per_second), now)
                level = bucket_level(row[0], row[1], now, limits.per_second)
                wait = bucket_wait(level, limits.per_second, count)
                if wait > 0:
                    return QuotaRefused("max_per_second", limits.per_second, wait)
            if limits.per_day is not None:
                used = await conn.fetchval(_COUNT_DAY, api_key, day, count, limits.per_day)
                if used is None:
                    return QuotaRefused("max_per_day", limits.per_day, until_next_day(now_dt))
            if level is not None:
                await conn.execute(
                    "UPDATE api_rate_buckets SET tokens = $2, stamp = $3 WHERE api_key = $1",
                    api_key,
                    level - count,
                    now,
                )
            return QuotaTaken(api_key, count, day, limits)

        return await self._write(op)

    async def give_back_quota(self, taken: QuotaTaken, count: int) -> None:
        """Return ``count`` of the recipients ``taken`` counted, to its day and its bucket."""
        if count <= 0:
            return
        limits = taken.limits

        async def op(conn: asyncpg.Connection) -> None:
            if limits.per_day is not None:
                await conn.execute(
                    "UPDATE api_day_counts SET used = GREATEST(used - $3, 0)"
                    " WHERE api_key = $1 AND day = $2",
                    taken.api_key,
                    taken.day,
                    count,
                )
            if limits.per_second is not None:
                await conn.execute(
                    "UPDATE api_rate_buckets SET tokens = LEAST($2, tokens + $3)"
                    " WHERE api_key = $1",
                    taken.api_key,
                    float(limits.per_second),
                    count,
                )

        await self._write(op)
