"""What instances of one cluster share through the store: named leases, inbound request keys.

A mixin of ``PostgresStore``. A named lease (``leases``) has one holder at a time until it
expires: a link's dispatcher, housekeeping; its token grows by one each time it changes hands,
so work stamped with an older token can be told from the current holder's. Inbound request
keys (``seen_requests``) let any instance recognise a request another one already answered.
Times come from the store's clock, like every other time in the store.
"""

from __future__ import annotations

from datetime import timedelta

from mm7.service.store.postgres.base import PostgresBase

#: take the lease if free or expired, renew it for its holder; the token only changes hands
_CLAIM = (
    "INSERT INTO leases AS l (name, owner, token, expires_at) VALUES ($1, $2, 1, $3)"
    " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner,"
    " expires_at = excluded.expires_at,"
    " token = CASE WHEN l.owner = excluded.owner THEN l.token ELSE l.token + 1 END"
    " WHERE l.owner = excluded.owner OR l.expires_at <= $4"
    " RETURNING token"
)


def _ms(delta: timedelta) -> int:
    return int(delta.total_seconds() * 1000)


class PostgresCluster(PostgresBase):
    """Named leases and inbound request keys of ``PostgresStore`` (module docstring)."""

    async def claim(self, name: str, owner: str, ttl: timedelta) -> int | None:
        """Take or renew the named lease ``name`` for ``owner`` until now + ``ttl``: its
        fencing token (unchanged on renewal, +1 each time the lease changes hands), or None
        while another owner holds it unexpired."""
        now = self._now_ms()
        row = await self._write_row(_CLAIM, name, owner, now + _ms(ttl), now)
        return None if row is None else int(row[0])

    async def give_up(self, name: str, owner: str) -> None:
        """Release the named lease if ``owner`` holds it, so another instance takes it at
        once. The row stays (expired), so the next holder's token is still one more."""
        await self._execute_write(
            "UPDATE leases SET expires_at = 0 WHERE name = $1 AND owner = $2", name, owner
        )

    async def seen_request(self, key: str) -> bool:
        """Whether an inbound request with ``key`` was recorded and has not expired."""
        found = await self._fetchval(
            "SELECT 1 FROM seen_requests WHERE key = $1 AND expires_at > $2",
            key,
            self._now_ms(),
        )
        return found is not None

    async def record_request(self, key: str, ttl: timedelta) -> None:
        """Remember ``key`` until now + ``ttl`` (again: the expiry is refreshed); retention
        deletes expired keys."""
        await self._execute_write(
            "INSERT INTO seen_requests (key, expires_at) VALUES ($1, $2)"
            " ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at",
            key,
            self._now_ms() + _ms(ttl),
        )
