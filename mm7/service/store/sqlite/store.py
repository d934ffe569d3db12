"""The embedded store: SQLite in WAL mode, group commit, the fsync on a commit thread.

Durability. Every write runs inside ``BEGIN IMMEDIATE ... COMMIT`` with ``journal_mode=WAL``
and ``synchronous=FULL``: the WAL is fsync'd at every commit, so a committed transaction
survives a process crash *and* a power loss. ``synchronous=NORMAL`` in WAL mode only fsyncs at
checkpoints; it survives a process crash but may lose the last commits on power loss, and we
acknowledge (HTTP 202, DeliverRsp 1000) right after the commit, so NORMAL would break
"acknowledge only what is committed". FULL is affordable because of group commit: every write
queued while the previous fsync ran is committed with the others (each in its own SAVEPOINT, so
one failing write does not fail its neighbours). Each caller awaits a future resolved only
after the COMMIT holding its write has returned. Under load, one fsync (about 0.23 ms here) is
shared by many writes.

Where the work runs. A batch's statements run on the event loop's thread (the loop that wrote
first, the store's "home"): they touch SQLite's page cache and take tens of microseconds; only
the COMMIT, which waits for the disk, goes to the store's commit thread, and the writes queued
meanwhile form the next batch. That is one thread hand-over per batch each way; a writer thread
running the statements took the GIL from the loop and gave it back at every statement (SQLite
releases it around each step), and the loop's own work waited for it each time (issue 15 in
BENCHMARKS.md). The loop never waits for a lock: ``BEGIN IMMEDIATE`` is tried with no busy
timeout, and when another connection (a ``mm7`` command on the same file) holds the write lock,
that batch runs whole on the commit thread, waiting for the lock as long as ``busy_timeout``.
A write from another event loop is handed to the home loop. Reads run on a small pool of reader
threads, each with its own read-only connection (WAL lets readers proceed while a commit runs),
large media are hashed and written to files on worker threads.

Media storage. Media up to ``inline_media_max`` bytes (default 256 KiB) are BLOBs in the
``media`` table: one fsync covers message and media, and SQLite reads small blobs faster than
the file system. Larger media go to ``<media_dir>/<sha[:2]>/<sha>``, written to a temporary
file, fsync'd and renamed (and the directory fsync'd) *before* the row that refers to them is
committed, so a committed row never points at a missing file; a crash in between leaves only an
unreferenced file, which a later clean-up can remove.

A store that cannot write. A commit that fails as a whole (disk full, read-only file, lock never
released) or a media file that cannot be written raises ``StoreUnavailableError`` and is
remembered; ``writable()`` reports it (readiness) until a later write of the same kind, or a probe
run at most every ``probe_interval`` seconds (a one-row commit and a tiny media file, fsync'd),
succeeds. Nothing about the failure is kept in a connection: the writer rolls back and the next
batch starts afresh, so the store recovers by itself when the disk does.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import hashlib
import json
import os
import queue
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

from mm7.core.leniency import Leniency
from mm7.core.status import MMStatus
from mm7.service.errors import (
    AllSuppressedError,
    IdempotencyConflictError,
    StoreUnavailableError,
    UnknownMediaError,
)
from mm7.service.store import early, tally
from mm7.service.store.base import Clock, SystemClock
from mm7.service.store.outbox import OptOut, RelayKind, status_event
from mm7.service.store.records import (
    DLR_RECIPIENT_STATUS,
    FALLBACK_FAILED,
    DeliveryReportRecord,
    DeliveryReportResult,
    EnqueueResult,
    EventRecord,
    JSONObject,
    MediaBlob,
    MediaPart,
    MessageContent,
    MessageCursor,
    MessageFilter,
    MessagePage,
    MessageRecord,
    MessageStatus,
    MessageSummary,
    MoRecord,
    MoResult,
    NewMessage,
    NewMo,
    RecipientCounts,
    RecipientRecord,
    RecipientStatus,
    StoreStats,
    WorkItem,
    normalize_address,
    report_trigger,
)
from mm7.service.store.sqlite.cluster import SqliteCluster
from mm7.service.store.sqlite.fallback import SqliteFallback, queue_fallback
from mm7.service.store.sqlite.limits import SqliteLimits
from mm7.service.store.sqlite.migrations import migrate
from mm7.service.store.sqlite.relay import (
    SqliteRelayOps,
    apply_opt_out,
    insert_event,
    insert_mo_event,
    replace_unknown_event,
    suppressed_keys,
)
from mm7.service.store.sqlite.retention import SqliteRetention
from mm7.service.store.sqlite.rows import dt as _dt
from mm7.service.store.sqlite.rows import event as _event
from mm7.service.store.sqlite.rows import ms as _ms
from mm7.service.store.sqlite.rows import new_id as _new_id
from mm7.service.store.sqlite.rows import opt_dt as _opt_dt
from mm7.service.store.sqlite.rows import opt_ms as _opt_ms
from mm7.service.store.sqlite.rows import parts as _parts
from mm7.service.store.sqlite.rows import to_json as _json

T = TypeVar("T")

_LEASE_KIND_MT = "mt"
_SYNC_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
_HASH_ON_LOOP_MAX = 64 * 1024  # hashing more than this moves to a worker thread
_REPORTABLE = frozenset({RecipientStatus.SUBMITTED.value, RecipientStatus.INDETERMINATE.value})


@dataclass(frozen=True, slots=True)
class _Prepared:
    """Media hashed (and, if large, already written to its file) ready for the writer."""

    sha256: str
    content_type: str
    size: int
    data: bytes | None
    path: str | None


@dataclass(slots=True)
class _Job:
    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]


#: a call for the commit thread, and what the home loop calls with its (result, failure)
_CommitWork = tuple[Callable[[], Any], Callable[[Any, BaseException | None], None]]

#: how long (ms) a batch run on the commit thread waits for another connection's write lock
_BUSY_TIMEOUT_MS = 10_000
_COMMIT = "cannot commit"
_MEDIA = "cannot write media files"


def _why(exc: BaseException) -> str:
    """A failure's reason without paths: ``strerror`` for OS errors, SQLite's own text else."""
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _probe_commit(conn: sqlite3.Connection) -> None:
    # rewrites one row with its own value: SQLite still writes the page, so the commit reaches
    # the WAL and its fsync, which is what a failing disk refuses
    conn.execute(
        "UPDATE schema_version SET applied_at = applied_at"
        " WHERE version = (SELECT MAX(version) FROM schema_version)"
    )


def _resolve(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():  # the caller was cancelled; the write may still have committed
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(cast(BaseException, value))


def _outcome_info(
    item: WorkItem, status_code: int | None, status_text: str | None, details: JSONObject | None
) -> dict[str, Any]:
    """The details an outcome's event records: the status, the attempt and the caller's own."""
    return {
        "status_code": status_code,
        "status_text": status_text,
        "attempt": item.attempts,
        **(dict(details) if details else {}),
    }


class SqliteStore(SqliteRelayOps, SqliteRetention, SqliteCluster, SqliteLimits, SqliteFallback):
    """``Store`` on one SQLite file. Create with ``await SqliteStore.open(path)``."""

    def __init__(
        self,
        path: Path,
        writer: sqlite3.Connection,
        clock: Clock,
        media_dir: Path,
        inline_media_max: int,
        max_batch: int,
        readers: int,
        mo_duplicate_window: timedelta,
        relay_all_statuses: bool = False,
        probe_interval: float = 5.0,
    ) -> None:
        self._path = path
        self._probe_interval = probe_interval
        self._failures: dict[str, str] = {}
        self._last_commit = time.monotonic()
        self._last_probe = float("-inf")
        self._probing: asyncio.Lock | None = None
        self._relay_all_statuses = relay_all_statuses
        self._clock = clock
        self._media_dir = media_dir
        self._inline_media_max = inline_media_max
        self._max_batch = max_batch
        self._mo_window_ms = int(mo_duplicate_window.total_seconds() * 1000)
        self._conn = writer
        sync = writer.execute("PRAGMA synchronous").fetchone()[0]
        mode = writer.execute("PRAGMA journal_mode").fetchone()[0]
        self._durability = f"journal_mode={mode} synchronous={_SYNC_NAMES.get(sync, sync)}"
        #: writes waiting for the next batch, the loop that runs the batches, whether a batch
        #: is being written or committed now, and who waits for the last one (``close``)
        self._pending: list[_Job] = []
        self._home: asyncio.AbstractEventLoop | None = None
        self._flushing = False
        self._drained: list[asyncio.Future[None]] = []
        self._commits = 0
        self._writes = 0
        self._failed = 0
        self._largest = 0
        #: changes ``tally.note``d by the batch being written, and those committed so far
        self._uncommitted: list[str] = []
        self._tally: collections.Counter[str] = collections.Counter()
        self._closed = False
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="mm7-store-read")
        #: how long a batch run on the commit thread waits for another connection's lock (ms)
        self._busy_timeout_ms = _BUSY_TIMEOUT_MS
        #: calls for the commit thread (a COMMIT, or a batch waiting for a lock) and what to call
        #: on the home loop with (result, failure) when they return; None stops the thread
        self._to_commit: queue.SimpleQueue[_CommitWork | None] = queue.SimpleQueue()
        self._committer = threading.Thread(target=self._commit_loop, name="mm7-store-commit")
        self._committer.daemon = True
        self._committer.start()
        # the loop never waits for a lock (module docstring): BEGIN IMMEDIATE fails at once
        writer.execute("PRAGMA busy_timeout = 0")

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        clock: Clock | None = None,
        media_dir: str | os.PathLike[str] | None = None,
        inline_media_max: int = 256 * 1024,
        max_batch: int = 512,
        readers: int = 4,
        mo_duplicate_window: timedelta = timedelta(days=7),
        relay_all_statuses: bool = False,
        probe_interval: float = 5.0,
    ) -> SqliteStore:
        """Open (creating if needed) and migrate the database at ``path``.

        ``media_dir`` defaults to ``<path>.media`` beside the database. ``max_batch`` bounds how
        many writes share one commit. ``relay_all_statuses``: queue a relay event for every
        status change (for status hooks), not only for messages with a callback_url.
        ``probe_interval``: how often at most ``writable()`` probes the disk. Raises
        ``SchemaTooNewError`` for a newer database.
        """
        db = Path(path)
        the_clock = clock if clock is not None else SystemClock()
        media = Path(media_dir) if media_dir is not None else db.with_name(db.name + ".media")
        writer = await asyncio.to_thread(cls._open_writer, db, _ms(the_clock.now()))
        return cls(
            db,
            writer,
            the_clock,
            media,
            inline_media_max,
            max_batch,
            readers,
            mo_duplicate_window,
            relay_all_statuses,
            probe_interval,
        )

    @staticmethod
    def _open_writer(db: Path, now_ms: int) -> sqlite3.Connection:
        conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout = 10000")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"{db}: could not switch to WAL (got {mode})")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            migrate(conn, now_ms, where=str(db))
        except BaseException:
            conn.close()
            raise
        return conn

    async def close(self) -> None:
        """Let queued writes commit, stop the commit thread, close every connection."""
        if self._closed:
            return
        self._closed = True
        if self._flushing and self._home is not None and not self._home.is_closed():
            drained = asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(self._drain(), self._home)
            )
            await (self._drain() if self._home is asyncio.get_running_loop() else drained)
        self._to_commit.put(None)
        await asyncio.to_thread(self._committer.join)
        self._readers.shutdown(wait=True)
        with self._reader_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()
        self._conn.close()

    def stats(self) -> StoreStats:
        """Commits versus writes so far: fewer commits than writes means group commit worked."""
        return StoreStats(
            self._commits, self._writes, self._failed, self._largest, dict(self._tally)
        )

    @property
    def durability(self) -> str:
        """The writer's settings as read back from SQLite, e.g. for benchmarks and /readyz."""
        return self._durability

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    async def writable(self) -> str | None:
        """None when the store can commit and write media files, else why not (for /readyz).

        After a failure, or when no commit happened for ``probe_interval`` seconds, probes the
        disk (one-row commit, tiny fsync'd media file), at most once per ``probe_interval``.
        """
        now = time.monotonic()
        due = now - self._last_probe >= self._probe_interval
        idle = now - self._last_commit >= self._probe_interval
        if due and (self._failures or idle):
            if self._probing is None:
                self._probing = asyncio.Lock()
            async with self._probing:
                if time.monotonic() - self._last_probe >= self._probe_interval:
                    self._last_probe = time.monotonic()
                    with contextlib.suppress(StoreUnavailableError):
                        await self._write(_probe_commit)
                    with contextlib.suppress(StoreUnavailableError):
                        await asyncio.to_thread(self._probe_media)
        failures = dict(self._failures)
        if not failures:
            return None
        return "; ".join(f"{what}: {why}" for what, why in failures.items())

    def _probe_media(self) -> None:
        probe = self._media_dir / ".probe" / f"probe.{secrets.token_hex(4)}"
        try:
            _write_durably(probe, b"probe")
            probe.unlink()
        except OSError as exc:
            raise self._media_failed(exc) from exc
        self._failures.pop(_MEDIA, None)

    def _media_failed(self, exc: OSError) -> StoreUnavailableError:
        self._failures[_MEDIA] = _why(exc)
        return StoreUnavailableError(f"the store cannot write media files: {_why(exc)}")

    # -- writes: batches on the home loop, COMMIT on the commit thread --------------------

    def _flush(self) -> None:
        """On the home loop: run the statements of the writes queued so far in one transaction
        and hand its COMMIT to the commit thread (or, when another connection holds the write
        lock, the whole batch)."""
        batch = self._pending[: self._max_batch]
        del self._pending[: len(batch)]
        if not batch:
            self._flushing = False
            for waiter in self._drained:
                if not waiter.done():
                    waiter.set_result(None)
            self._drained.clear()
            return
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                self._batch_done(batch, [], exc)
                return
            self._to_commit.put(
                (
                    functools.partial(self._batch_waiting, batch),
                    lambda outcomes, failure: self._batch_done(batch, outcomes or [], failure),
                )
            )
            return
        try:
            outcomes = self._apply(conn, batch)
        except Exception as exc:
            self._batch_done(batch, [], exc)
            return
        self._to_commit.put(
            (
                functools.partial(conn.execute, "COMMIT"),
                lambda _, failure: self._batch_done(batch, outcomes, failure),
            )
        )

    def _commit_loop(self) -> None:
        """The commit thread: run each call handed over and give its result (or failure) back
        to the home loop, one wake-up of the loop per batch."""
        while (work := self._to_commit.get()) is not None:
            call, done = work
            result: Any = None
            failure: BaseException | None = None
            try:
                result = call()
            except Exception as exc:
                failure = exc
            # RuntimeError: the home loop is closed, nobody is waiting for this batch
            with contextlib.suppress(RuntimeError):
                cast(asyncio.AbstractEventLoop, self._home).call_soon_threadsafe(
                    done, result, failure
                )

    def _apply(self, conn: sqlite3.Connection, batch: list[_Job]) -> list[tuple[bool, Any]]:
        """Run each write of ``batch`` in its own SAVEPOINT of the open transaction."""
        outcomes: list[tuple[bool, Any]] = []
        # the batch's notes, added to the totals once COMMIT returns (``_batch_done``)
        with tally.counting() as notes:
            for job in batch:
                mark = len(notes)
                conn.execute("SAVEPOINT job")
                try:
                    value = job.fn(conn)
                except Exception as exc:  # this write fails alone; its neighbours still commit
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    del notes[mark:]
                    outcomes.append((False, self._unavailable(exc)))
                else:
                    conn.execute("RELEASE job")
                    outcomes.append((True, value))
        self._uncommitted = notes
        return outcomes

    def _batch_waiting(self, batch: list[_Job]) -> list[tuple[bool, Any]]:
        """On the commit thread: the whole batch, waiting for another connection's lock."""
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        try:
            conn.execute("BEGIN IMMEDIATE")
            outcomes = self._apply(conn, batch)
            conn.execute("COMMIT")
            return outcomes
        finally:
            conn.execute("PRAGMA busy_timeout = 0")

    def _batch_done(
        self,
        batch: list[_Job],
        outcomes: list[tuple[bool, Any]],
        failure: BaseException | None,
    ) -> None:
        """On the home loop, after the COMMIT returned (or failed): resolve the batch's futures,
        then start the next batch."""
        conn = self._conn
        if failure is not None:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            self._failures[_COMMIT] = _why(failure)
            failed = StoreUnavailableError(f"the store cannot commit: {_why(failure)}")
            failed.__cause__ = failure
            outcomes = [(False, failed)] * len(batch)
        else:
            self._failures.pop(_COMMIT, None)
            self._last_commit = time.monotonic()
            self._commits += 1
            self._largest = max(self._largest, len(batch))
            self._tally.update(self._uncommitted)
        self._uncommitted.clear()
        for job, (ok, value) in zip(batch, outcomes, strict=True):
            if ok:
                self._writes += 1
            else:
                self._failed += 1
            _resolve(job.future, ok, value)
        cast(asyncio.AbstractEventLoop, self._home).call_soon(self._flush)

    async def _drain(self) -> None:
        """Wait until every write queued so far has committed (or failed)."""
        if self._flushing:
            waiter = asyncio.get_running_loop().create_future()
            self._drained.append(waiter)
            await waiter

    def _unavailable(self, exc: Exception) -> Exception:
        """A job's failure as the caller sees it: the disk refusing (SQLite's operational errors,
        a media file that cannot be written) becomes ``StoreUnavailableError``."""
        if isinstance(exc, OSError):
            failed = self._media_failed(exc)
        elif isinstance(exc, sqlite3.OperationalError):
            self._failures[_COMMIT] = _why(exc)
            failed = StoreUnavailableError(f"the store cannot commit: {_why(exc)}")
        else:
            return exc
        failed.__cause__ = exc
        return failed

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the writer thread; return once the transaction holding it committed."""
        if self._closed:
            raise RuntimeError("store is closed")
        loop = asyncio.get_running_loop()
        home = self._home
        if home is not loop:
            if home is not None and home.is_running() and not self._closed:
                # another loop's write: the home loop runs it with the others
                handed = asyncio.run_coroutine_threadsafe(self._write(fn), home)
                return cast(T, await asyncio.wrap_future(handed))
            if self._flushing:  # the home loop stopped mid-batch: nothing will finish it
                raise RuntimeError("the store's event loop stopped with writes in flight")
            self._home = loop
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append(_Job(fn, future))
        if not self._flushing:
            self._flushing = True
            loop.call_soon(self._flush)
        return cast(T, await future)

    # -- readers ---------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn = cast(sqlite3.Connection | None, getattr(self._local, "conn", None))
        if conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
            with self._reader_lock:
                self._reader_conns.append(conn)
        return conn

    def _run_read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._reader()
        conn.execute("BEGIN")  # one snapshot for all the SELECTs of fn
        try:
            return fn(conn)
        finally:
            conn.execute("COMMIT")

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise RuntimeError("store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._run_read, fn)

    # -- media -----------------------------------------------------------------------------

    def _media_file(self, sha256: str) -> Path:
        return self._media_dir / sha256[:2] / sha256

    def _prepare_sync(self, data: bytes, content_type: str, sha256: str | None) -> _Prepared:
        digest = sha256 if sha256 is not None else hashlib.sha256(data).hexdigest()
        if len(data) <= self._inline_media_max:
            return _Prepared(digest, content_type, len(data), data, None)
        target = self._media_file(digest)
        if not target.exists():
            try:
                _write_durably(target, data)
            except OSError as exc:
                raise self._media_failed(exc) from exc
            self._failures.pop(_MEDIA, None)
        return _Prepared(digest, content_type, len(data), None, f"{digest[:2]}/{digest}")

    async def _prepare(
        self, data: bytes, content_type: str, digest: str | None = None
    ) -> _Prepared:
        if digest is not None and len(data) <= self._inline_media_max:
            return _Prepared(digest, content_type, len(data), data, None)
        if len(data) <= min(_HASH_ON_LOOP_MAX, self._inline_media_max):
            return self._prepare_sync(data, content_type, digest)
        return await asyncio.to_thread(self._prepare_sync, data, content_type, digest)

    async def _prepare_parts(self, parts: Sequence[MediaPart]) -> list[_Prepared | MediaPart]:
        out: list[_Prepared | MediaPart] = []
        for part in parts:
            if part.data is not None:
                out.append(await self._prepare(part.data, part.content_type, part.digest))
            else:
                out.append(part)
        return out

    def _insert_media(
        self, conn: sqlite3.Connection, media: _Prepared, now: int, data: bytes | None = None
    ) -> None:
        """Store media once; storing it again marks it as used now (``created_at``), which
        retention reads as "last used". ``data``: the bytes, to write the file again should
        retention have removed it since it was prepared."""
        conn.execute(
            "INSERT INTO media (sha256, content_type, size, data, path, created_at) "
            "VALUES (?,?,?,?,?,?) ON CONFLICT(sha256) DO UPDATE SET"
            " created_at=MAX(created_at, excluded.created_at)",
            (media.sha256, media.content_type, media.size, media.data, media.path, now),
        )
        if media.path is not None and data is not None:
            target = self._media_dir / media.path
            if not target.exists():
                _write_durably(target, data)

    def _link_parts(
        self,
        conn: sqlite3.Connection,
        table: str,
        owner_column: str,
        owner_id: str,
        prepared: Sequence[_Prepared | MediaPart],
        parts: Sequence[MediaPart],
        now: int,
    ) -> None:
        rows = []
        for position, (ready, part) in enumerate(zip(prepared, parts, strict=True)):
            if isinstance(ready, _Prepared):
                self._insert_media(conn, ready, now, part.data)
                digest = ready.sha256
            else:
                digest = cast(str, ready.sha256)
                if conn.execute("SELECT 1 FROM media WHERE sha256=?", (digest,)).fetchone() is None:
                    raise UnknownMediaError(f"part {position}: no stored media {digest}")
            rows.append(
                (owner_id, position, digest, part.content_type, part.content_id,
                 part.content_location)
            )  # fmt: skip
        conn.executemany(
            f"INSERT INTO {table} ({owner_column}, position, sha256, content_type, content_id, "
            "content_location) VALUES (?,?,?,?,?,?)",
            rows,
        )

    async def put_media(self, data: bytes, content_type: str) -> str:
        """Store ``data`` once by its sha256 (a second put of the same bytes writes nothing)."""
        ready = await self._prepare(data, content_type)
        now = _ms(self._clock.now())
        await self._write(lambda conn: self._insert_media(conn, ready, now, data))
        return ready.sha256

    async def get_media(self, sha256: str) -> MediaBlob | None:
        """The media's bytes, from the row or its file."""
        return (await self.get_media_many([sha256])).get(sha256)

    async def get_media_many(self, hashes: Sequence[str]) -> dict[str, MediaBlob]:
        """Several media by sha256 in one read; the ones not stored are absent from the answer.

        The rows are read on the caller's thread (the event loop): one indexed lookup each, the
        blobs of inline media from SQLite's cache or the WAL, tens of microseconds, less than a
        hand-over to a reader thread and back costs the loop. Media in files are read on a
        worker thread."""
        if self._closed:
            raise RuntimeError("store is closed")
        wanted = list(dict.fromkeys(hashes))

        def read(conn: sqlite3.Connection) -> tuple[dict[str, MediaBlob], list[tuple[Any, ...]]]:
            found: dict[str, MediaBlob] = {}
            in_files: list[tuple[Any, ...]] = []
            for sha256 in wanted:
                row = conn.execute(
                    "SELECT content_type, size, data, path FROM media WHERE sha256=?", (sha256,)
                ).fetchone()
                if row is None:
                    continue
                content_type, size, data, rel = row
                if data is None:
                    in_files.append((sha256, content_type, size, rel))
                else:
                    found[sha256] = MediaBlob(sha256, content_type, size, data)
            return found, in_files

        found, in_files = self._run_read(read)
        if in_files:

            def read_files() -> list[MediaBlob]:
                return [
                    MediaBlob(sha256, content_type, size, (self._media_dir / rel).read_bytes())
                    for sha256, content_type, size, rel in in_files
                ]

            for blob in await asyncio.to_thread(read_files):
                found[blob.sha256] = blob
        # in the order asked for, as before
        return {h: found[h] for h in wanted if h in found}

    # -- MT messages -----------------------------------------------------------------------

    async def enqueue_message(
        self, message: NewMessage, recipients: Sequence[str], parts: Sequence[MediaPart] = ()
    ) -> EnqueueResult:
        """Commit the message, one row per recipient and its parts in one transaction.

        A message whose ``idempotency_key`` exists already returns the original id with
        ``created=False`` and writes nothing (not even its media), when its ``request_digest``
        is the original's; another digest raises ``IdempotencyConflictError`` (nothing written).
        A digest missing on either side (a row from before digests, an opt-out confirmation)
        is not compared.

        Recipients on the suppression list (they sent a stop word) are stored ``suppressed``
        and never sent (``EnqueueResult.suppressed`` names them); when every recipient is
        suppressed nothing is written and ``AllSuppressedError`` is raised.
        """
        if not recipients:
            raise ValueError("a message needs at least one recipient")
        fields_json = _json(message.fields)
        prepared = await self._prepare_parts(parts)
        now = _ms(self._clock.now())
        expires = _opt_ms(message.expires_at)
        due = max(now, _opt_ms(message.not_before) or now)

        def op(conn: sqlite3.Connection) -> EnqueueResult:
            if message.idempotency_key is not None:
                row = conn.execute(
                    "SELECT id, request_digest FROM messages WHERE idempotency_key=?",
                    (message.idempotency_key,),
                ).fetchone()
                if row is not None:
                    _same_request(row[0], row[1], message.request_digest)
                    return EnqueueResult(row[0], False)
            keys = [normalize_address(a) for a in recipients]
            blocked = set() if message.allow_suppressed else suppressed_keys(conn, keys)
            if blocked and all(k in blocked for k in keys):
                raise AllSuppressedError(tuple(recipients))
            queued = sum(1 for k in keys if k not in blocked)
            message_id = _new_id(now)
            conn.execute(
                "INSERT INTO messages (id, idempotency_key, link, fields, status, recipient_count,"
                " queued_count, suppressed_count, created_at, updated_at, expires_at, not_before,"
                " callback_url, request_digest) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    message_id,
                    message.idempotency_key,
                    message.link,
                    fields_json,
                    MessageStatus.QUEUED.value,
                    len(recipients),
                    queued,
                    len(recipients) - queued,
                    now,
                    now,
                    expires,
                    _opt_ms(message.not_before),
                    message.callback_url,
                    message.request_digest,
                ),
            )
            self._link_parts(conn, "message_media", "message_id", message_id, prepared, parts, now)
            conn.executemany(
                "INSERT INTO recipients (message_id, link, address, address_key, status,"
                " transaction_id, next_attempt_at, expires_at, updated_at)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (
                        message_id,
                        message.link,
                        address,
                        key,
                        (
                            RecipientStatus.SUPPRESSED.value
                            if key in blocked
                            else RecipientStatus.QUEUED.value
                        ),
                        f"{message_id}.{index}",
                        due,
                        expires,
                        now,
                    )
                    for index, (address, key) in enumerate(zip(recipients, keys, strict=True))
                ],
            )
            _event(
                conn, message_id, None, "queued", MessageStatus.QUEUED.value,
                {"recipients": len(recipients), "parts": len(parts)}, now,
            )  # fmt: skip
            skipped = tuple(a for a, k in zip(recipients, keys, strict=True) if k in blocked)
            if skipped:
                _event(conn, message_id, None, "suppressed", RecipientStatus.SUPPRESSED.value,
                       {"recipients": list(skipped)}, now)  # fmt: skip
            return EnqueueResult(message_id, True, skipped)

        return await self._write(op)

    async def list_messages(
        self, where: MessageFilter, *, limit: int = 50, after: MessageCursor | None = None
    ) -> MessagePage:
        """Messages of ``where.api_key`` matching the filter, newest first, one page.

        Keyset paging on (created_at, id): each page is one indexed range scan whatever its
        depth (``messages_listed*``; ``to`` goes through ``recipients_address``), and a message
        written or purged between two pages neither shifts nor repeats the others.
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        clauses = ["m.api_key=?"]
        args: list[Any] = [where.api_key]
        source = "messages m"
        if where.to is not None:
            # a handset has few messages: start from them (a message naming it twice once)
            source = (
                "(SELECT DISTINCT message_id FROM recipients WHERE address_key=?) r"
                " CROSS JOIN messages m ON m.id=r.message_id"
            )
            args.insert(0, normalize_address(where.to))
        if where.status is not None:
            clauses.append("m.status=?")
            args.append(where.status.value)
        if where.link is not None:
            clauses.append("m.link=?")
            args.append(where.link)
        if where.since is not None:
            clauses.append("m.created_at>=?")
            args.append(_ms(where.since))
        if after is not None:
            clauses.append("(m.created_at, m.id) < (?, ?)")
            # round, not _ms: the cursor's time came from milliseconds and must go back exactly
            args.extend((round(after.created_at.timestamp() * 1000), after.id))
        sql = (
            f"SELECT m.id, m.link, m.status, m.fields, m.created_at, m.updated_at,"
            f" {', '.join('m.' + c.strip() for c in _COUNT_COLUMNS.split(','))}"
            f" FROM {source} WHERE {' AND '.join(clauses)}"
            " ORDER BY m.created_at DESC, m.id DESC LIMIT ?"
        )
        args.append(limit + 1)

        def read(conn: sqlite3.Connection) -> MessagePage:
            rows = conn.execute(sql, args).fetchall()
            found = tuple(
                MessageSummary(
                    r[0],
                    r[1],
                    MessageStatus(r[2]),
                    json.loads(r[3]),
                    _dt(r[4]),
                    _dt(r[5]),
                    _counts(r[6:]),
                )  # fmt: skip
                for r in rows[:limit]
            )
            more = len(rows) > limit
            last = found[-1] if found and more else None
            cursor = MessageCursor(last.created_at, last.id) if last is not None else None
            return MessagePage(found, cursor)

        return await self._read(read)

    async def message_for_key(
        self, idempotency_key: str, request_digest: str | None = None
    ) -> str | None:
        """The id of the message stored under ``idempotency_key``, or None;
        ``IdempotencyConflictError`` when it was made from a request of another digest."""

        def read(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT id, request_digest FROM messages WHERE idempotency_key=?",
                (idempotency_key,),
            ).fetchone()
            if row is None:
                return None
            _same_request(row[0], row[1], request_digest)
            return str(row[0])

        return await self._read(read)

    async def get_message(self, message_id: str) -> MessageRecord | None:
        """The message, its recipients, parts and events, read in one snapshot."""

        def read(conn: sqlite3.Connection) -> MessageRecord | None:
            row = conn.execute(
                "SELECT id, link, idempotency_key, status, fields, created_at, updated_at,"
                " expires_at, not_before, callback_url FROM messages WHERE id=?",
                (message_id,),
            ).fetchone()
            if row is None:
                return None
            recipients = tuple(
                RecipientRecord(
                    r[0],
                    r[1],
                    RecipientStatus(r[2]),
                    r[3],
                    r[4],
                    r[5],
                    _dt(r[6]),
                    r[7],
                    r[8],
                    _dt(r[9]),
                )  # fmt: skip
                for r in conn.execute(
                    "SELECT id, address, status, mm7_message_id, transaction_id, attempts,"
                    " next_attempt_at, last_status_code, last_status_text, updated_at"
                    " FROM recipients WHERE message_id=? ORDER BY id",
                    (message_id,),
                )
            )
            events = tuple(
                EventRecord(e[0], message_id, e[1], e[2], e[3], json.loads(e[4]), _dt(e[5]))
                for e in conn.execute(
                    "SELECT e.id, r.address, e.kind, e.status, e.details, e.at FROM events e"
                    " LEFT JOIN recipients r ON r.id = e.recipient_id"
                    " WHERE e.message_id=? ORDER BY e.id",
                    (message_id,),
                )
            )
            return MessageRecord(
                row[0], row[1], row[2], MessageStatus(row[3]), json.loads(row[4]), _dt(row[5]),
                _dt(row[6]), _opt_dt(row[7]), _opt_dt(row[8]), row[9], recipients,
                _parts(conn, "message_media", "message_id", message_id), events,
            )  # fmt: skip

        return await self._read(read)

    async def message_content(self, message_id: str) -> MessageContent | None:
        """The message's row and parts, read in one snapshot."""

        def read(conn: sqlite3.Connection) -> MessageContent | None:
            row = conn.execute(
                "SELECT id, link, fields, created_at FROM messages WHERE id=?", (message_id,)
            ).fetchone()
            if row is None:
                return None
            parts = _parts(conn, "message_media", "message_id", message_id)
            return MessageContent(row[0], row[1], json.loads(row[2]), _dt(row[3]), parts)

        return await self._read(read)

    async def queue_depth(self, link: str | None = None) -> int:
        """Recipients in ``queued`` (due or scheduled), on one link or all."""

        def read(conn: sqlite3.Connection) -> int:
            args: tuple[str, ...]
            if link is None:
                sql, args = "SELECT COUNT(*) FROM recipients WHERE status=?", ("queued",)
            else:
                sql = "SELECT COUNT(*) FROM recipients WHERE link=? AND status=?"
                args = (link, "queued")
            return int(conn.execute(sql, args).fetchone()[0])

        return await self._read(read)

    # -- leases and outcomes ---------------------------------------------------------------

    async def lease(self, link: str, owner: str, n: int, ttl: timedelta) -> list[WorkItem]:
        """Lease up to ``n`` queued recipients of ``link`` that are due and not leased.

        A lease whose ``expires_at`` passed counts as free: a dead worker's items come back
        (recorded as a ``lease_expired`` event naming the previous owner). Due recipients whose
        message expired are marked ``expired`` on the way instead of being handed out.
        Each lease counts as an attempt.
        """
        now_dt = self._clock.now()
        now = _ms(now_dt)
        until = now + int(ttl.total_seconds() * 1000)

        def op(conn: sqlite3.Connection) -> list[WorkItem]:
            taken: list[tuple[Any, ...]] = []
            while len(taken) < n:
                rows = conn.execute(
                    "SELECT r.id, r.message_id, r.address, r.transaction_id, r.attempts,"
                    " r.expires_at, l.owner FROM recipients r"
                    " LEFT JOIN leases l ON l.kind=? AND l.item_id=r.id"
                    " WHERE r.link=? AND r.status=? AND r.next_attempt_at<=?"
                    " AND (l.expires_at IS NULL OR l.expires_at<=?)"
                    " ORDER BY r.next_attempt_at, r.id LIMIT ?",
                    (_LEASE_KIND_MT, link, "queued", now, now, n - len(taken)),
                ).fetchall()
                expired = 0
                for row in rows:
                    if row[5] is not None and row[5] <= now:
                        info = {"expired_at": _dt(row[5]).isoformat()}
                        _finish(conn, row[0], row[1], RecipientStatus.EXPIRED, None, None,
                                "expired", info, now)  # fmt: skip
                        self._status_event(conn, row[0], RecipientStatus.EXPIRED.value, now)
                        expired += 1
                        continue
                    # leased at once, so that the next round of this loop skips it
                    token = secrets.token_hex(8)
                    conn.execute(
                        "INSERT OR REPLACE INTO leases (kind, item_id, owner, token, expires_at)"
                        " VALUES (?,?,?,?,?)",
                        (_LEASE_KIND_MT, row[0], owner, token, until),
                    )
                    taken.append((*row, token))
                if not expired:  # every due row was taken: nothing more to find
                    break
            items: list[WorkItem] = []
            messages: dict[str, tuple[Any, ...]] = {}
            for rid, mid, address, txn, attempts, _expires, previous, token in taken:
                conn.execute(
                    "UPDATE recipients SET attempts=attempts+1, updated_at=? WHERE id=?",
                    (now, rid),
                )
                if previous is not None:
                    _event(conn, mid, rid, "lease_expired", None,
                           {"previous_owner": previous, "new_owner": owner}, now)  # fmt: skip
                if mid not in messages:
                    conn.execute(
                        "UPDATE messages SET status=?, updated_at=? WHERE id=? AND status=?",
                        (MessageStatus.SENDING.value, now, mid, MessageStatus.QUEUED.value),
                    )
                    m = conn.execute(
                        "SELECT fields, idempotency_key, expires_at, callback_url, created_at"
                        " FROM messages WHERE id=?",
                        (mid,),
                    ).fetchone()
                    parts = _parts(conn, "message_media", "message_id", mid)
                    messages[mid] = (json.loads(m[0]), m[1], _opt_dt(m[2]), m[3], parts, _dt(m[4]))
                fields, key, expires_at, callback, parts, created_at = messages[mid]
                items.append(
                    WorkItem(
                        rid,
                        mid,
                        link,
                        address,
                        txn,
                        attempts + 1,
                        owner,
                        token,
                        _dt(until),
                        fields,
                        parts,
                        key,
                        expires_at,
                        callback,
                        created_at,
                    )
                )
            return items

        return await self._write(op)

    def _outcome(
        self,
        item: WorkItem,
        kind: str,
        details: dict[str, Any],
        apply: Callable[[sqlite3.Connection, int], None],
    ) -> Callable[[sqlite3.Connection], bool]:
        """Wrap an outcome so that it applies only while ``item``'s lease is still ours.

        A worker whose lease expired and was taken over gets False; what it tried to record is
        kept as a ``stale_result`` event so that nothing the MMSC said is lost.
        """
        now = _ms(self._clock.now())

        def op(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT token FROM leases WHERE kind=? AND item_id=?",
                (_LEASE_KIND_MT, item.recipient_id),
            ).fetchone()
            if row is None or row[0] != item.lease_token:
                _event(conn, item.message_id, item.recipient_id, "stale_result", None,
                       {"outcome": kind, "owner": item.owner, **details}, now)  # fmt: skip
                return False
            conn.execute(
                "DELETE FROM leases WHERE kind=? AND item_id=?",
                (_LEASE_KIND_MT, item.recipient_id),
            )
            apply(conn, now)
            return True

        return op

    async def complete(
        self,
        item: WorkItem,
        mm7_message_id: str | None,
        status_code: int | None = None,
        status_text: str | None = None,
        details: JSONObject | None = None,
    ) -> bool:
        """The MMSC accepted the SubmitReq: recipient ``submitted`` with its MM7 MessageID, and
        the reports kept for that MessageID that are this recipient's applied to it."""
        info = {
            "mm7_message_id": mm7_message_id,
            "status_code": status_code,
            "status_text": status_text,
            "attempt": item.attempts,
            "transaction_id": item.transaction_id,
            **(dict(details) if details else {}),
        }

        def apply(conn: sqlite3.Connection, now: int) -> None:
            conn.execute(
                "UPDATE recipients SET mm7_message_id=? WHERE id=?",
                (mm7_message_id, item.recipient_id),
            )
            _finish(conn, item.recipient_id, item.message_id, RecipientStatus.SUBMITTED,
                    status_code, status_text, "submitted", info, now)  # fmt: skip
            self._item_status_event(conn, item, RecipientStatus.SUBMITTED.value, now,
                               status_code=status_code, status_text=status_text)  # fmt: skip
            if mm7_message_id is not None:
                self._apply_early(conn, item, mm7_message_id, now)

        return await self._write(self._outcome(item, "submitted", info, apply))

    async def fail(
        self,
        item: WorkItem,
        status_code: int | None,
        status_text: str | None,
        details: JSONObject | None = None,
    ) -> bool:
        """A permanent error: the recipient is ``failed`` with the MM7 status; no retry (its
        SMS fallback queued in the same commit when the message asked for one)."""
        info = _outcome_info(item, status_code, status_text, details)
        fallback = item.fields.get("fallback") is not None

        def apply(conn: sqlite3.Connection, now: int) -> None:
            self._final(conn, item, RecipientStatus.FAILED, status_code, status_text, info, now)
            if fallback:
                queue_fallback(conn, item.message_id, item.recipient_id, FALLBACK_FAILED, now,
                               self._relay_all_statuses)  # fmt: skip

        return await self._write(self._outcome(item, "failed", info, apply))

    async def retry_later(
        self,
        item: WorkItem,
        at: datetime,
        status_code: int | None = None,
        status_text: str | None = None,
        details: JSONObject | None = None,
    ) -> bool:
        """A transient error: try again at ``at``; an ``at`` at or past the message's expiry
        expires the recipient instead (the dispatcher's ``next_step`` decides expiry and calls
        ``expire``; this keeps the store from ever scheduling past the expiry)."""
        at_ms = _ms(at)
        info = {
            "retry_at": at.isoformat(),
            **_outcome_info(item, status_code, status_text, details),
        }

        def apply(conn: sqlite3.Connection, now: int) -> None:
            expires = _opt_ms(item.expires_at)
            if expires is not None and at_ms >= expires:
                self._final(
                    conn, item, RecipientStatus.EXPIRED, status_code, status_text, info, now
                )
                return
            conn.execute(
                "UPDATE recipients SET next_attempt_at=?, last_status_code=?,"
                " last_status_text=?, updated_at=? WHERE id=?",
                (at_ms, status_code, status_text, now, item.recipient_id),
            )
            _event(conn, item.message_id, item.recipient_id, "retry", "queued", info, now)

        return await self._write(self._outcome(item, "retry", info, apply))

    async def expire(
        self,
        item: WorkItem,
        status_code: int | None = None,
        status_text: str | None = None,
        details: JSONObject | None = None,
    ) -> bool:
        """Retrying stopped at its deadline: the recipient is expired with the last status."""
        info = _outcome_info(item, status_code, status_text, details)

        def apply(conn: sqlite3.Connection, now: int) -> None:
            self._final(conn, item, RecipientStatus.EXPIRED, status_code, status_text, info, now)

        return await self._write(self._outcome(item, "expired", info, apply))

    def _final(
        self,
        conn: sqlite3.Connection,
        item: WorkItem,
        status: RecipientStatus,
        status_code: int | None,
        status_text: str | None,
        info: dict[str, Any],
        now: int,
    ) -> None:
        """Finish ``item``'s recipient with ``status`` (failed or expired), its event named after
        the status, and its status event when one is due (same transaction)."""
        _finish(conn, item.recipient_id, item.message_id, status, status_code, status_text,
                status.value, info, now)  # fmt: skip
        self._item_status_event(conn, item, status.value, now,
                                status_code=status_code, status_text=status_text)  # fmt: skip

    async def release(self, item: WorkItem) -> bool:
        """Hand the lease back without an attempt (shutdown before sending): due again now."""

        def apply(conn: sqlite3.Connection, now: int) -> None:
            conn.execute(
                "UPDATE recipients SET attempts=MAX(attempts-1, 0), updated_at=? WHERE id=?",
                (now, item.recipient_id),
            )

        return await self._write(self._outcome(item, "released", {}, apply))

    # -- delivery reports ------------------------------------------------------------------

    async def record_delivery_report(
        self,
        link: str,
        mm7_message_id: str,
        recipient: str,
        mm_status: MMStatus,
        raw_status: str | None = None,
        status_text: str | None = None,
        raw: str | None = None,
        details: JSONObject | None = None,
        *,
        alternate: str | None = None,
        other_links: Sequence[str] = (),
    ) -> DeliveryReportResult:
        """Record a DeliveryReportReq and move the recipient it correlates with.

        Correlation is by (link, MessageID, normalised recipient address), the report's
        ``alternate`` address tried next (an MMSC that puts the handset in Sender); when the
        MMSC spells the address differently and the MessageID names exactly one recipient, that
        one is taken. A MessageID ``link`` did not send is looked for in ``other_links``, in
        order. Every report is kept (several per message: Forwarded, then final), also when
        nothing matches, for inspection. Final outcomes (delivered/undelivered) never regress.
        An unknown MessageID's report is also kept in ``early_reports``: a completion that
        records the MessageID later applies it (``mm7.service.store.early``).
        """
        now = _ms(self._clock.now())
        info = {
            "mm7_message_id": mm7_message_id,
            "raw_status": raw_status if raw_status is not None else mm_status.value,
            "status_text": status_text,
            **(dict(details) if details else {}),
        }

        def op(conn: sqlite3.Connection) -> DeliveryReportResult:
            links = (link, *other_links)
            found = _correlate(conn, links, mm7_message_id, (recipient, alternate))
            if found.alternate:
                _name_swap(info)
            result = self._report(conn, found, mm7_message_id, mm_status, info, now, raw=raw)
            if result.message_id is None:
                _keep_early(conn, RelayKind.DELIVERY_REPORT, result.report_id, links,
                            mm7_message_id, (recipient, alternate), mm_status.value,
                            status_text, info, now)  # fmt: skip
            return result

        return await self._write(op)

    def _report(
        self,
        conn: sqlite3.Connection,
        found: _Correlation,
        mm7_message_id: str,
        mm_status: MMStatus,
        info: dict[str, Any],
        now: int,
        *,
        raw: str | None = None,
        report_id: int | None = None,
    ) -> DeliveryReportResult:
        """Apply a correlated (or unknown) report: the recipient's status, the message's
        counters and roll-up, the report's row, its event and relay event. ``report_id``: the
        row of a report kept early, correlated now (updated, not inserted again)."""
        target = DLR_RECIPIENT_STATUS.get(mm_status)
        rows, matches, link_used = found.rows, found.matches, found.link
        recipient_used, key = found.address, normalize_address(found.address)
        status_text = info.get("status_text")
        message_id = rows[0][1] if rows else None
        recipient_id: int | None = None
        status: RecipientStatus | None = None
        if matches:
            recipient_id, message_id, _, current, _ = matches[0]
            status = RecipientStatus(current)
            if target is not None and current in _REPORTABLE:
                conn.execute(
                    "UPDATE recipients SET status=?, updated_at=? WHERE id=?",
                    (target.value, now, recipient_id),
                )
                status = target
                column = _REPORT_COUNTER.get(target)
                if column is not None:
                    conn.execute(
                        f"UPDATE messages SET {column}={column}+1 WHERE id=?", (message_id,)
                    )
                    _roll_up(conn, message_id, now)
                if (trigger := report_trigger(mm_status)) is not None:
                    queue_fallback(conn, message_id, recipient_id, trigger, now,
                                   self._relay_all_statuses)  # fmt: skip
        if report_id is None:
            cursor = conn.execute(
                "INSERT INTO delivery_reports (link, mm7_message_id, recipient, mm_status,"
                " raw_status, status_text, raw, message_id, recipient_id, received_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?)",
                (link_used, mm7_message_id, recipient_used, mm_status.value, info["raw_status"],
                 status_text, raw, message_id, recipient_id, now),
            )  # fmt: skip
            report_id = cast(int, cursor.lastrowid)
            adopted = False
        else:
            conn.execute(
                "UPDATE delivery_reports SET link=?, recipient=?, message_id=?, recipient_id=?"
                " WHERE id=?",
                (link_used, recipient_used, message_id, recipient_id, report_id),
            )
            adopted = True
        if message_id is not None:
            _event(conn, message_id, recipient_id, "delivery_report", mm_status.value,
                   {"report_id": report_id, **info}, now)  # fmt: skip
        self._report_event(
            conn, RelayKind.DELIVERY_REPORT, link_used, mm7_message_id, recipient_used, key,
            message_id, status.value if status is not None else "unknown",
            mm_status=info["raw_status"], status_text=status_text, now=now,
            leniencies=info.get("leniencies") or (), adopted=adopted,
        )  # fmt: skip
        return DeliveryReportResult(
            report_id, message_id, recipient_id, status, link=link_used,
            recipient=recipient_used, alternate_matched=found.alternate,
        )  # fmt: skip

    async def delivery_reports(
        self, *, message_id: str | None = None, unknown_only: bool = False, limit: int = 100
    ) -> list[DeliveryReportRecord]:
        """The reports of ``message_id``, or (``unknown_only``) those that matched nothing."""

        def read(conn: sqlite3.Connection) -> list[DeliveryReportRecord]:
            sql = (
                "SELECT id, link, mm7_message_id, recipient, mm_status, raw_status, status_text,"
                " raw, message_id, recipient_id, received_at FROM delivery_reports"
            )
            args: tuple[Any, ...]
            if unknown_only:
                sql += " WHERE message_id IS NULL ORDER BY id LIMIT ?"
                args = (limit,)
            elif message_id is not None:
                sql += " WHERE message_id=? ORDER BY id LIMIT ?"
                args = (message_id, limit)
            else:
                sql += " ORDER BY id LIMIT ?"
                args = (limit,)
            return [
                DeliveryReportRecord(
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    MMStatus(r[4]),
                    r[5],
                    r[6],
                    r[7],
                    r[8],
                    r[9],
                    _dt(r[10]),
                )  # fmt: skip
                for r in conn.execute(sql, args)
            ]

        return await self._read(read)

    async def record_read_reply(
        self,
        link: str,
        mm7_message_id: str,
        recipient: str,
        read_status: str,
        status_text: str | None = None,
        details: JSONObject | None = None,
        *,
        alternate: str | None = None,
        other_links: Sequence[str] = (),
    ) -> str | None:
        """Record a ReadReplyReq as an event of the message it answers; its id, or None.

        Correlated like delivery reports (link, MessageID, recipient, then ``alternate`` and
        ``other_links``); the relay event goes to the message's callback_url or the link's
        status hook. One of an unknown MessageID is kept early, as a report is.
        """
        now = _ms(self._clock.now())
        info = {"mm7_message_id": mm7_message_id, "read_status": read_status,
                "status_text": status_text, **(dict(details) if details else {})}  # fmt: skip

        def op(conn: sqlite3.Connection) -> str | None:
            links = (link, *other_links)
            found = _correlate(conn, links, mm7_message_id, (recipient, alternate))
            if found.alternate:
                _name_swap(info)
            message_id = self._read_reply(conn, found, mm7_message_id, read_status, info, now)
            if message_id is None:
                _keep_early(conn, RelayKind.READ_REPLY, None, links, mm7_message_id,
                            (recipient, alternate), read_status, status_text, info,
                            now)  # fmt: skip
            return message_id

        return await self._write(op)

    def _read_reply(
        self,
        conn: sqlite3.Connection,
        found: _Correlation,
        mm7_message_id: str,
        read_status: str,
        info: dict[str, Any],
        now: int,
        *,
        adopted: bool = False,
    ) -> str | None:
        """Apply a correlated (or unknown) read reply: its event, its relay event; the id of
        the message it answers, or None. ``adopted``: one kept early, correlated now."""
        matches, address = found.matches, found.address
        message_id: str | None = None
        if matches:
            message_id = matches[0][1]
            _event(conn, message_id, matches[0][0], "read_reply", read_status, info, now)
        self._report_event(
            conn, RelayKind.READ_REPLY, found.link, mm7_message_id, address,
            normalize_address(address), message_id, read_status.lower(),
            mm_status=read_status, status_text=info.get("status_text"), now=now,
            leniencies=info.get("leniencies") or (), adopted=adopted,
        )  # fmt: skip
        return message_id

    # -- early reports (mm7.service.store.early) -------------------------------------------

    def _apply_early(
        self, conn: sqlite3.Connection, item: WorkItem, mm7_message_id: str, now: int
    ) -> None:
        """In ``complete``'s transaction: the reports and read replies kept for this MessageID
        that now correlate with ``item``'s recipient are applied, oldest first, and leave
        ``early_reports``. One indexed lookup when none is kept (the hot path)."""
        kept = conn.execute(
            f"SELECT {early.COLUMNS} FROM early_reports WHERE mm7_message_id=? ORDER BY id",
            (mm7_message_id,),
        ).fetchall()
        for row in kept:
            report = early.from_row(row)
            found = _correlate(conn, report.links, mm7_message_id, report.addresses)
            matched = found.matches[0][0] if found.matches else None
            sibling = found.fallback and _names_sibling(conn, item, report.keys())
            if not early.is_for(item.recipient_id, matched, by_fallback=found.fallback,
                                names_sibling=sibling):  # fmt: skip
                continue
            conn.execute("DELETE FROM early_reports WHERE id=?", (report.id,))
            info = {**report.details, "received_at": _dt(report.received_at).isoformat()}
            if found.alternate:
                _name_swap(info)
            if report.kind is RelayKind.DELIVERY_REPORT:
                self._report(conn, found, mm7_message_id, MMStatus(report.status), info, now,
                             report_id=report.report_id)  # fmt: skip
            else:
                self._read_reply(conn, found, mm7_message_id, report.status, info, now,
                                 adopted=True)  # fmt: skip

    # -- relay events written with what they report ----------------------------------------

    def _status_event(
        self,
        conn: sqlite3.Connection,
        recipient_id: int,
        status: str,
        now: int,
        *,
        status_code: int | None = None,
        status_text: str | None = None,
    ) -> None:
        """Queue the status change of an MT recipient for its message's callback / hook."""
        row = conn.execute(
            "SELECT r.message_id, r.address, r.mm7_message_id, m.link, m.callback_url,"
            " json_extract(m.fields, '$.api_key'), json_extract(m.fields, '$.sendmms.dlr_url'),"
            " json_extract(m.fields, '$.from') FROM recipients r"
            " JOIN messages m ON m.id = r.message_id WHERE r.id=?",
            (recipient_id,),
        ).fetchone()
        if row is None or (row[4] is None and not self._relay_all_statuses):
            return
        body = status_event(
            RelayKind.STATUS, message_id=row[0], recipient=row[1], status=status, at=_dt(now),
            link=row[3], mm7_message_id=row[2], status_code=status_code,
            status_text=status_text,
        )  # fmt: skip
        if row[6] is not None:
            body["kannel"] = {"url": row[6], "from": row[7], "user": row[5]}
        # the message id is random; recipient ids (rowids) come back after retention
        key = f"status:{row[0]}:{recipient_id}:{status}"
        insert_event(conn, RelayKind.STATUS, key, body, now,
                     callback_url=row[4], api_key=row[5], link=row[3],
                     source_id=row[0])  # fmt: skip

    def _item_status_event(
        self,
        conn: sqlite3.Connection,
        item: WorkItem,
        status: str,
        now: int,
        *,
        status_code: int | None = None,
        status_text: str | None = None,
    ) -> None:
        """``_status_event`` for a leased item: its callback_url is known, so the lookup is
        skipped when nothing would be relayed (the MT hot path: most messages have none)."""
        if item.callback_url is None and not self._relay_all_statuses:
            return
        self._status_event(conn, item.recipient_id, status, now,
                           status_code=status_code, status_text=status_text)  # fmt: skip

    def _report_event(
        self,
        conn: sqlite3.Connection,
        kind: RelayKind,
        link: str,
        mm7_message_id: str,
        recipient: str,
        recipient_key: str,
        message_id: str | None,
        status: str,
        *,
        mm_status: str,
        status_text: str | None,
        now: int,
        leniencies: Sequence[str] = (),
        adopted: bool = False,
    ) -> None:
        """Queue a delivery report or read reply (correlated or not) for the application;
        ``adopted``: one kept early and correlated now, whose unknown event may be queued."""
        callback = api_key = None
        kannel: dict[str, Any] | None = None
        if message_id is not None:
            # a sendmms message's reports go to its dlr-url / rr-url (Kannel-style GET)
            url_path = "$.sendmms.dlr_url" if kind is RelayKind.DELIVERY_REPORT else (
                "$.sendmms.rr_url")  # fmt: skip
            row = conn.execute(
                "SELECT callback_url, json_extract(fields, '$.api_key'),"
                " json_type(fields, '$.sendmms'), json_extract(fields, ?),"
                " json_extract(fields, '$.from') FROM messages WHERE id=?",
                (url_path, message_id),
            ).fetchone()
            if row is not None:
                callback, api_key = row[0], row[1]
                if row[2] is not None:
                    callback = row[3]
                    if callback is not None:
                        kannel = {"url": callback, "from": row[4], "user": api_key}
        if callback is None and not self._relay_all_statuses:
            return
        body = status_event(
            kind, message_id=message_id, recipient=recipient, status=status, at=_dt(now),
            link=link, mm7_message_id=mm7_message_id, mm_status=mm_status,
            status_text=status_text, leniencies=leniencies,
        )  # fmt: skip
        if kannel is not None:
            body["kannel"] = kannel
        prefix = "dlr" if kind is RelayKind.DELIVERY_REPORT else "rr"
        first = f"{prefix}:{link}:{mm7_message_id}:{recipient_key}:{mm_status}"
        key = first if not adopted else replace_unknown_event(
            conn, first, body, now, callback_url=callback, api_key=api_key, source_id=message_id
        )  # fmt: skip
        if key is not None:
            insert_event(conn, kind, key, body, now, callback_url=callback, api_key=api_key,
                         link=link, source_id=message_id)  # fmt: skip

    # -- MO messages -----------------------------------------------------------------------

    async def store_mo(self, mo: NewMo) -> MoResult:
        """Commit a DeliverReq with its media before DeliverRsp 1000 is sent.

        A duplicate (same MessageID from the same link ever; without a MessageID, same
        TransactionID and ``fingerprint`` from the same link within ``mo_duplicate_window``:
        MMSCs recycle TransactionID counters) returns the first one's id with
        ``duplicate=True`` and writes nothing.

        In the same transaction: the relay event to ``mo.relay``'s hook (none: the MO is kept
        as ``unrouted``) and the opt-out change ``mo.opt_out`` (STOP / START).
        """
        fields_json = _json(mo.fields)
        prepared = await self._prepare_parts(mo.parts)
        now = _ms(self._clock.now())
        since = now - self._mo_window_ms

        def op(conn: sqlite3.Connection) -> MoResult:
            row = None
            if mo.mm7_message_id is not None:
                row = conn.execute(
                    "SELECT id FROM mo_messages WHERE link=? AND mm7_message_id=?",
                    (mo.link, mo.mm7_message_id),
                ).fetchone()
            # a MessageID decides alone: MMSCs recycle TransactionIDs, so an MO with a new
            # MessageID is new even when its TransactionID was seen this week
            if mo.mm7_message_id is None and mo.transaction_id is not None:
                row = conn.execute(
                    "SELECT id FROM mo_messages WHERE link=? AND transaction_id=?"
                    " AND received_at>=? AND (? IS NULL OR fingerprint=?)"
                    " ORDER BY received_at DESC LIMIT 1",
                    (mo.link, mo.transaction_id, since, mo.fingerprint, mo.fingerprint),
                ).fetchone()
            if row is not None:
                return MoResult(row[0], True)
            mo_id = _new_id(now)
            conn.execute(
                "INSERT INTO mo_messages (id, link, transaction_id, mm7_message_id, fields,"
                " status, next_attempt_at, received_at, updated_at, fingerprint)"
                " VALUES (?,?,?,?,?,?,?,?,?,?)",
                (mo_id, mo.link, mo.transaction_id, mo.mm7_message_id, fields_json,
                 "pending" if mo.relay is not None else "unrouted", now, now, now,
                 mo.fingerprint),
            )  # fmt: skip
            self._link_parts(conn, "mo_media", "mo_id", mo_id, prepared, mo.parts, now)
            if mo.relay is not None:
                insert_mo_event(conn, mo_id, mo.link, mo.relay, now)
            if mo.opt_out is not None:
                apply_opt_out(conn, mo.opt_out, mo.link, mo_id, now)
                if mo.opt_out.action == "stop":
                    self._suppress_queued(conn, mo.opt_out, mo_id, now)
            return MoResult(mo_id, False)

        return await self._write(op)

    def _suppress_queued(
        self, conn: sqlite3.Connection, opt_out: OptOut, mo_id: str, now: int
    ) -> None:
        """STOP also stops what is queued for the sender: scheduled messages, a campaign's
        backlog, retries. Their leases go too, so an attempt in flight records nothing."""
        key = normalize_address(opt_out.address)
        rows = conn.execute(
            "SELECT id, message_id FROM recipients WHERE address_key=? AND status=?",
            (key, RecipientStatus.QUEUED.value),
        ).fetchall()
        for recipient_id, message_id in rows:
            conn.execute(
                "DELETE FROM leases WHERE kind=? AND item_id=?", (_LEASE_KIND_MT, recipient_id)
            )
            info = {"word": opt_out.word, "mo_id": mo_id}
            _finish(conn, recipient_id, message_id, RecipientStatus.SUPPRESSED, None,
                    "the recipient opted out", "suppressed", info, now)  # fmt: skip
            self._status_event(conn, recipient_id, RecipientStatus.SUPPRESSED.value, now,
                               status_text="the recipient opted out")  # fmt: skip

    async def get_mo(self, mo_id: str) -> MoRecord | None:
        """A stored MO message with its parts."""

        def read(conn: sqlite3.Connection) -> MoRecord | None:
            row = conn.execute(
                "SELECT id, link, transaction_id, mm7_message_id, fields, status, received_at"
                " FROM mo_messages WHERE id=?",
                (mo_id,),
            ).fetchone()
            if row is None:
                return None
            return MoRecord(
                row[0], row[1], row[2], row[3], json.loads(row[4]), row[5], _dt(row[6]),
                _parts(conn, "mo_media", "mo_id", mo_id),
            )  # fmt: skip

        return await self._read(read)


# -- helpers shared by the write operations (run on the writer thread) ------------------------


def _same_request(message_id: str, stored: str | None, given: str | None) -> None:
    """A repeat under an idempotency key must be the request the key was first used with."""
    if stored is not None and given is not None and stored != given:
        raise IdempotencyConflictError(message_id)


def _name_swap(details: dict[str, Any]) -> None:
    """The report's handset was its Sender: name that in the details kept with it."""
    named = list(details.get("leniencies") or [])
    if Leniency.REPORT_ADDRESSES_SWAPPED.value not in named:
        details["leniencies"] = [*named, Leniency.REPORT_ADDRESSES_SWAPPED.value]


def _keep_early(
    conn: sqlite3.Connection,
    kind: RelayKind,
    report_id: int | None,
    links: Sequence[str],
    mm7_message_id: str,
    addresses: tuple[str, str | None],
    status: str,
    status_text: str | None,
    details: dict[str, Any],
    now: int,
) -> None:
    """Keep a report or read reply of an unknown MessageID for the completion that records
    it (``mm7.service.store.early``)."""
    conn.execute(
        "INSERT INTO early_reports (kind, report_id, link, other_links, mm7_message_id,"
        " recipient, alternate, status, status_text, details, received_at)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (kind.value, report_id, links[0], json.dumps(list(links[1:])), mm7_message_id, addresses[0],
         addresses[1], status, status_text, _json(details), now),
    )  # fmt: skip


def _names_sibling(conn: sqlite3.Connection, item: WorkItem, keys: set[str]) -> bool:
    """Whether one of the addresses ``keys`` is another recipient of ``item``'s message."""
    if not keys:
        return False
    marks = ",".join("?" * len(keys))
    row = conn.execute(
        f"SELECT 1 FROM recipients WHERE address_key IN ({marks}) AND message_id=? AND id<>?"
        " LIMIT 1",
        (*keys, item.message_id, item.recipient_id),
    ).fetchone()
    return row is not None


@dataclass(frozen=True, slots=True)
class _Correlation:
    """What a report's MessageID and addresses matched: the recipients ``link`` sent it to
    (``rows``), those the report means (``matches``), the handset ``address`` to record, and
    whether that was the report's other address (``alternate``)."""

    link: str
    rows: list[Any]
    matches: list[Any]
    address: str
    alternate: bool
    #: matched by the one-recipient fallback, not by an address
    fallback: bool = False


def _correlate(
    conn: sqlite3.Connection,
    links: Sequence[str],
    mm7_message_id: str,
    addresses: tuple[str, str | None],
) -> _Correlation:
    """Recipients sent under (link, MessageID), and those a report on ``addresses`` means.

    The first of ``links`` that sent the MessageID; in it, the recipient whose normalised
    address is the report's first address, else its second (the handset in Sender). On the
    first link only (the calling peer's own), when neither matches and the MessageID names
    exactly one recipient, that one (MMSCs spell addresses their own way), recorded under its
    stored address when the report gave none. On the other links an address must match: a
    MessageID is unique per MMSC, not across the MMSCs a host may front. An unknown MessageID
    is recorded under the first link and the first address given.
    """
    first, second = addresses
    for position, link in enumerate(links):
        rows = conn.execute(
            "SELECT id, message_id, address_key, status, address FROM recipients"
            " WHERE link=? AND mm7_message_id=? ORDER BY id",
            (link, mm7_message_id),
        ).fetchall()
        if not rows:
            continue
        for index, address in enumerate((first, second)):
            if address:
                key = normalize_address(address)
                matches = [r for r in rows if r[2] == key]
                if matches:
                    return _Correlation(link, rows, matches, address, index == 1)
        if position == 0 and len(rows) == 1:
            return _Correlation(link, rows, rows, first or rows[0][4], False, fallback=True)
        if position == 0:
            return _Correlation(link, rows, [], first or second or "", False)
    return _Correlation(links[0], [], [], first or second or "", False)


def _finish(
    conn: sqlite3.Connection,
    recipient_id: int,
    message_id: str,
    status: RecipientStatus,
    status_code: int | None,
    status_text: str | None,
    kind: str,
    details: JSONObject,
    now: int,
) -> None:
    """Move a queued recipient to a state it leaves the queue in, and update the counters."""
    conn.execute(
        "UPDATE recipients SET status=?, last_status_code=COALESCE(?, last_status_code),"
        " last_status_text=COALESCE(?, last_status_text), updated_at=? WHERE id=?",
        (status.value, status_code, status_text, now, recipient_id),
    )
    column = _FINISH_COUNTER.get(status)
    bump = f", {column}={column}+1" if column is not None else ""
    conn.execute(f"UPDATE messages SET queued_count=queued_count-1{bump} WHERE id=?", (message_id,))
    _roll_up(conn, message_id, now)
    _event(conn, message_id, recipient_id, kind, status.value, details, now)


#: the counter of ``messages`` a recipient leaving the queue with this status adds to (failed
#: is what is left: recipient_count minus every other counter)
_FINISH_COUNTER: dict[RecipientStatus, str] = {
    RecipientStatus.SUBMITTED: "submitted_count",
    RecipientStatus.EXPIRED: "expired_count",
    RecipientStatus.SUPPRESSED: "suppressed_count",
}
#: the counter a final delivery report adds to (the recipient was counted as submitted)
_REPORT_COUNTER: dict[RecipientStatus, str] = {
    RecipientStatus.DELIVERED: "delivered_count",
    RecipientStatus.UNDELIVERED: "undelivered_count",
}
_COUNT_COLUMNS = (
    "recipient_count, queued_count, submitted_count, delivered_count, undelivered_count,"
    " expired_count, suppressed_count"
)


def _counts(row: Sequence[int]) -> RecipientCounts:
    """``RecipientCounts`` from the ``_COUNT_COLUMNS`` of a message row."""
    total, queued, submitted, delivered, undelivered, expired, suppressed = row
    return RecipientCounts(
        queued=queued,
        submitted=submitted - delivered - undelivered,
        delivered=delivered,
        undelivered=undelivered,
        failed=total - queued - submitted - expired - suppressed,
        expired=expired,
        suppressed=suppressed,
    )


def _roll_up(conn: sqlite3.Connection, message_id: str, now: int) -> None:
    """Set the message's status from its counters (``mm7.service.store.records``) after one
    of its recipients changed."""
    row = conn.execute(
        f"SELECT {_COUNT_COLUMNS} FROM messages WHERE id=?", (message_id,)
    ).fetchone()
    if row is None:
        return
    conn.execute(
        "UPDATE messages SET status=?, updated_at=? WHERE id=?",
        (_counts(row).status().value, now, message_id),
    )


def _write_durably(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` so that it survives power loss once this returns."""
    parent = target.parent
    created = not parent.exists()
    parent.mkdir(parents=True, exist_ok=True)
    if created:
        _fsync_dir(parent.parent)
    tmp = parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, target)
    _fsync_dir(parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
