"""The PostgreSQL store's relay operations: outbox leases, outcomes, listings, suppressions.

A mixin of ``PostgresStore`` (it uses ``PostgresBase``'s pool, clock and transactions), the
counterpart of ``sqlite/relay.py``. Placeholder: the operations land separately.
"""

from __future__ import annotations

from mm7.service.store.postgres.base import PostgresBase

__all__ = ["PostgresRelayOps"]


class PostgresRelayOps(PostgresBase):
    """The relay half of ``PostgresStore``."""
