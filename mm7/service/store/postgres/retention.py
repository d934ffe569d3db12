"""The PostgreSQL store's retention: deleting what is finished and older than ``[store] retain``.

A mixin of ``PostgresStore`` (it uses ``PostgresBase``'s pool, clock and transactions), the
counterpart of ``sqlite/retention.py``. Placeholder: the operations land separately.
"""

from __future__ import annotations

from mm7.service.store.postgres.base import PostgresBase

__all__ = ["PostgresRetention"]


class PostgresRetention(PostgresBase):
    """The retention half of ``PostgresStore``."""
