"""Media in PostgreSQL: content-addressed BYTEA rows, stored once whoever shares them.

Every instance reaches the same ``media`` table, so an image sent to 100,000 recipients, or
received twice on two instances, is one row. Media is hashed on the event loop up to 64 KiB,
on a worker thread above. Storing media again marks it as used now (``created_at``), which
retention reads as "last used"; a row whose time is already as new is not rewritten.

The message and MO statements write their media and parts in the same statement as the rest
(``MediaRows``: the arrays they pass); a part referring by hash to media never stored fails
that write alone with ``UnknownMediaError``, nothing written.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from mm7.service.errors import UnknownMediaError
from mm7.service.store.postgres.base import PostgresBase, asyncpg
from mm7.service.store.records import MediaBlob, MediaPart

_HASH_ON_LOOP_MAX = 64 * 1024  # hashing more than this moves to a worker thread
_MISSING_KEY = re.compile(r"\(sha256\)=\(([0-9a-f]+)\)")

#: insert media $1..$4 (arrays: sha256, content type, size, bytes) at $5; a repeat only
#: refreshes created_at (used by the statements of messages and MOs, as a CTE)
INSERT_MEDIA = (
    "INSERT INTO media (sha256, content_type, size, data, created_at)"
    " SELECT u.sha, u.ct, u.size, u.data, {now} FROM unnest({sha}::text[], {ct}::text[],"
    " {size}::bigint[], {data}::bytea[]) AS u(sha, ct, size, data) {where}"
    " ON CONFLICT (sha256) DO UPDATE SET created_at = excluded.created_at"
    " WHERE media.created_at < excluded.created_at"
)
_PUT = INSERT_MEDIA.format(now="$5", sha="$1", ct="$2", size="$3", data="$4", where="")


@dataclass(frozen=True, slots=True)
class MediaRows:
    """A message's or MO's media and parts as the arrays its statement takes."""

    #: media with bytes, once per sha256: hashes, content types, sizes, bytes
    sha: list[str]
    content_type: list[str]
    size: list[int]
    data: list[bytes]
    #: every part in order: sha256, content type, Content-ID, Content-Location
    part_sha: list[str]
    part_type: list[str]
    part_id: list[str | None]
    part_location: list[str | None]

    def media_args(self) -> tuple[list[str], list[str], list[int], list[bytes]]:
        """The four media arrays, in the order ``INSERT_MEDIA`` takes them."""
        return self.sha, self.content_type, self.size, self.data

    def part_args(self) -> tuple[list[str], list[str], list[str | None], list[str | None]]:
        """The four part arrays: sha256, content type, Content-ID, Content-Location."""
        return self.part_sha, self.part_type, self.part_id, self.part_location


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def media_rows(parts: Sequence[MediaPart]) -> MediaRows:
    """Hash the parts given with bytes (off the loop when large) and lay them out as arrays."""
    rows = MediaRows([], [], [], [], [], [], [], [])
    seen: set[str] = set()
    for part in parts:
        if part.data is not None:
            digest = part.digest
            if digest is None:
                if len(part.data) <= _HASH_ON_LOOP_MAX:
                    digest = _digest(part.data)
                else:
                    digest = await asyncio.to_thread(_digest, part.data)
            if digest not in seen:  # one row per hash: ON CONFLICT may touch a row once
                seen.add(digest)
                rows.sha.append(digest)
                rows.content_type.append(part.content_type)
                rows.size.append(len(part.data))
                rows.data.append(part.data)
        else:
            digest = str(part.sha256)
        rows.part_sha.append(digest)
        rows.part_type.append(part.content_type)
        rows.part_id.append(part.content_id)
        rows.part_location.append(part.content_location)
    return rows


def unknown_media(exc: asyncpg.ForeignKeyViolationError, rows: MediaRows) -> UnknownMediaError:
    """The error of a part that referred by hash to media never stored, naming the part."""
    found = _MISSING_KEY.search(getattr(exc, "detail", None) or str(exc))
    digest = found[1] if found else "?"
    position = rows.part_sha.index(digest) if digest in rows.part_sha else "?"
    return UnknownMediaError(f"part {position}: no stored media {digest}")


class PostgresMedia(PostgresBase):
    """``put_media``, ``get_media`` and ``get_media_many`` of ``PostgresStore``."""

    async def put_media(self, data: bytes, content_type: str) -> str:
        """Store ``data`` once by its sha256 (a second put of the same bytes writes nothing
        but the time it was last used)."""
        rows = await media_rows([MediaPart(content_type, data=data)])
        await self._execute_write(_PUT, *rows.media_args(), self._now_ms())
        return rows.sha[0]

    async def get_media(self, sha256: str) -> MediaBlob | None:
        """The media's bytes, or None."""
        return (await self.get_media_many([sha256])).get(sha256)

    async def get_media_many(self, hashes: Sequence[str]) -> dict[str, MediaBlob]:
        """Several media by sha256 in one statement; those not stored are absent."""
        rows = await self._fetch(
            "SELECT sha256, content_type, size, data FROM media WHERE sha256 = ANY($1::text[])",
            list(dict.fromkeys(hashes)),
        )
        return {r[0]: MediaBlob(r[0], r[1], r[2], r[3]) for r in rows}
