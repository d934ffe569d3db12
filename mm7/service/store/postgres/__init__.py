"""The shared PostgreSQL backend of ``Store``, for several gateway instances on one database.

- ``store``: ``PostgresStore`` (messages, recipients, media, MOs, delivery reports, named
  leases and inbound request keys of the cluster);
- ``relay``: the relay half of ``PostgresStore`` (outbox leases, suppressions, own secrets);
- ``retention``: the purge of what is finished and older than ``[store] retain``;
- ``base``: the pool, clock and transaction helpers the three share;
- ``listen``: the LISTEN connection that wakes dispatchers and relay workers;
- ``relay_rows``: relay events and opt-outs written with what they report;
- ``migrations``: the numbered schema steps applied when a store opens;
- ``rows``: conversions between rows and the records of ``mm7.service.store.records``.

Needs the asyncpg driver (``pip install 'mm7[postgresql]'``); importing this package without it
raises ``ConfigError`` saying so.
"""

from mm7.service.store.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
