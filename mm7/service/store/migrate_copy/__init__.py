"""``mm7 store copy``: move a single-node SQLite store into an empty PostgreSQL database.

- ``run``: ``copy_store`` (one read snapshot of the source, one transaction on the target) and
  its ``CopyReport``;
- ``tables``: what is copied, table by table, column by column, and what is not;
- ``source``: the SQLite snapshot, read in bounded batches, media checked by size and SHA-256;
- ``target``: migrations, the emptiness check, COPY, the identity sequences, own secrets.

Needs the asyncpg driver (``pip install 'mm7[postgresql]'``); importing this package without it
raises ``ConfigError`` saying so.
"""

from mm7.service.store.migrate_copy.run import CopyReport, copy_store

__all__ = ["CopyReport", "copy_store"]
