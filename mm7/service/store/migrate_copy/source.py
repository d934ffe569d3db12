"""The source of a copy: an SQLite store read in one transaction, so every table is one snapshot.

SQLite in WAL mode gives a reader the database as it was at its first read, while a gateway
running on the file goes on committing; those later commits are not in the snapshot. The file
is opened read-only (``mode=ro``): the copy never writes to it. Rows come in batches bounded by
count and by bytes, and media files are read one at a time, so memory holds one batch (and the
largest medium), never a table.

Each medium's bytes, from its BLOB or its file (``<database>.media/<path>``, as
``SqliteStore`` writes them), are checked against its size and SHA-256 before they are copied.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from mm7.service.errors import StoreCopyError, StoreCopyRefusedError
from mm7.service.store.migrate_copy.tables import MEDIA, TablePlan
from mm7.service.store.sqlite.migrations import LATEST

#: a batch ends after this many rows or this many bytes of values, whichever comes first
BATCH_ROWS = 1000
BATCH_BYTES = 8 * 1024 * 1024

Row = tuple[Any, ...]


def _size(row: Row) -> int:
    return sum(len(v) for v in row if isinstance(v, str | bytes))


class SqliteSnapshot:
    """A read-only SQLite store in one read transaction. Open with ``SqliteSnapshot.open``."""

    def __init__(
        self, path: Path, conn: sqlite3.Connection, version: int, *, batch_rows: int,
        batch_bytes: int, in_use: bool,
    ) -> None:  # fmt: skip
        self.path = path
        self.media_dir = path.with_name(path.name + ".media")
        self.version = version
        #: a write-ahead log was there before the copy opened the file: a gateway may be
        #: running on it (or one stopped without closing the store)
        self.in_use = in_use
        self._conn = conn
        self._batch_rows = batch_rows
        self._batch_bytes = batch_bytes

    @classmethod
    def open(
        cls, path: Path, *, batch_rows: int = BATCH_ROWS, batch_bytes: int = BATCH_BYTES
    ) -> SqliteSnapshot:
        """Open ``path`` read-only and start the snapshot; refuse a schema other than ``LATEST``.

        Raises ``StoreCopyRefusedError`` for an older or newer schema, ``StoreCopyError`` for a
        file that is missing or not an mm7 store.
        """
        if not path.is_file():
            raise StoreCopyError(f"--from {path}: no such file")
        wal = path.with_name(path.name + "-wal")
        in_use = wal.is_file() and wal.stat().st_size > 0
        try:
            conn = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise StoreCopyError(f"--from {path}: cannot open: {exc}") from None
        try:
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute("BEGIN")  # the first SELECT below fixes the snapshot
            version = _version(conn, path)
        except sqlite3.Error as exc:
            conn.close()
            raise StoreCopyError(f"--from {path}: not an SQLite database: {exc}") from None
        except BaseException:
            conn.close()
            raise
        return cls(
            path, conn, version, batch_rows=batch_rows, batch_bytes=batch_bytes, in_use=in_use
        )

    def close(self) -> None:
        """End the read transaction and close the file."""
        self._conn.close()

    def batches(self, plan: TablePlan) -> Iterator[list[Row]]:
        """The rows of ``plan``'s table in batches; media with their bytes, checked."""
        batch: list[Row] = []
        size = 0
        # row by row from SQLite: a fetch of many rows would hold as many BLOBs at once
        for raw in self._conn.execute(_MEDIA_SELECT if plan is MEDIA else plan.select):
            row = self._medium(raw) if plan is MEDIA else tuple(raw)
            batch.append(row)
            size += _size(row)
            if len(batch) >= self._batch_rows or size >= self._batch_bytes:
                yield batch
                batch, size = [], 0
        if batch:
            yield batch

    def _medium(self, raw: Row) -> Row:
        sha256, content_type, size, data, rel, created_at = raw
        if data is None:
            data = self._read_file(sha256, rel)
            where = f"media {sha256}: the file {self.media_dir / rel}"
        else:
            where = f"media {sha256} (in the database)"
        if len(data) != size:
            raise StoreCopyError(f"{where} holds {len(data)} bytes, its row says {size}")
        if hashlib.sha256(data).hexdigest() != sha256:
            raise StoreCopyError(f"{where} does not hash to its SHA-256: it is damaged")
        return sha256, content_type, size, data, created_at

    def _read_file(self, sha256: str, rel: str) -> bytes:
        relative = PurePosixPath(rel)
        if relative.is_absolute() or ".." in relative.parts:
            raise StoreCopyError(f"media {sha256}: its path {rel!r} is outside the media folder")
        file = self.media_dir / relative
        try:
            return file.read_bytes()
        except FileNotFoundError:
            raise StoreCopyError(
                f"media {sha256}: the file {file} is missing (a gateway running on the source "
                "may have purged it since the snapshot: run the copy again)"
            ) from None
        except OSError as exc:
            raise StoreCopyError(
                f"media {sha256}: cannot read {file}: {exc.strerror or exc}"
            ) from None


_MEDIA_SELECT = (
    "SELECT sha256, content_type, size, data, path, created_at FROM media ORDER BY sha256"
)


def _version(conn: sqlite3.Connection, path: Path) -> int:
    """The source's schema version; refused unless it is the one this mm7 copies."""
    known = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if known is None:
        raise StoreCopyError(f"--from {path}: not an mm7 store (it has no schema_version table)")
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    version = int(row[0]) if row is not None and row[0] is not None else 0
    if version > LATEST:
        raise StoreCopyRefusedError(
            f"--from {path}: schema version {version} was written by a newer mm7 (this one knows "
            f"{LATEST}): copy it with that mm7"
        )
    if version < LATEST:
        raise StoreCopyRefusedError(
            f"--from {path}: schema version {version}, and this mm7 copies version {LATEST} "
            "only: start this mm7 once on it to migrate it (mm7 serve, or mm7 relay counts "
            "--config with its [store] path, which opens and migrates the store), then copy"
        )
    return version
