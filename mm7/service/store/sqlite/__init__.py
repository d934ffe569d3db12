"""The embedded SQLite backend of ``Store``: one file, one group-committing writer thread.

- ``store``: ``SqliteStore`` (messages, recipients, media, MOs, delivery reports) and its
  writer and reader threads;
- ``relay``: the relay half of ``SqliteStore`` (outbox leases, suppressions, own secrets);
- ``cluster``: named leases (one owner per link, relay, retention) and inbound request keys;
- ``retention``: the purge of what is finished and older than ``[store] retain``;
- ``migrations``: the numbered schema steps applied when a store opens;
- ``rows``: conversions between SQLite rows and the records of ``mm7.service.store.records``.
"""

from mm7.service.store.sqlite.store import SqliteStore

__all__ = ["SqliteStore"]
