"""Work notifications: one LISTEN connection per store wakes its dispatchers and relay workers.

Every transaction that makes work due (an enqueue, a retry, a relay event) also sends
``NOTIFY mm7_work`` with ``mt:<link>`` or ``relay``; PostgreSQL delivers it at commit to every
instance listening, so none of them polls to find new work. ``WorkListener`` holds the
listening connection (outside the pool: a LISTEN is session state) and calls the callbacks
registered with ``PostgresStore.watch``.

The connection is checked every ``check_interval`` seconds and re-opened when it drops (a
server restart, a network cut); notifications sent while it was down are lost, so after each
reconnect every callback is called once: the woken workers lease whatever arrived meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from mm7.service.store.postgres.base import CHANNEL, asyncpg, why

log = structlog.get_logger("mm7.service.store.postgres")

#: the links with queued recipients, one index probe per link (a loose scan of recipients_due)
_QUEUED_LINKS = (
    "WITH RECURSIVE l(link) AS ("
    " SELECT min(link) FROM recipients WHERE status = 'queued'"
    " UNION ALL SELECT (SELECT min(r.link) FROM recipients r"
    "  WHERE r.status = 'queued' AND r.link > l.link) FROM l WHERE l.link IS NOT NULL)"
    " SELECT link FROM l WHERE link IS NOT NULL"
)


@dataclass(frozen=True, slots=True)
class _Watcher:
    on_mt: Callable[[str], None]
    on_relay: Callable[[], None]


class WorkListener:
    """The LISTEN connection and the callbacks it calls (module docstring)."""

    def __init__(
        self, dsn: str, *, check_interval: float = 5.0, retry_interval: float = 1.0
    ) -> None:
        self._dsn = dsn
        self._check_interval = check_interval
        self._retry_interval = retry_interval
        self._watchers: list[_Watcher] = []
        self._task: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None
        self._listening = asyncio.Event()
        self._connections = 0

    @property
    def connections(self) -> int:
        """How many times the listening connection was opened (1 until it first drops)."""
        return self._connections

    def add(self, on_mt: Callable[[str], None], on_relay: Callable[[], None]) -> None:
        """Call ``on_mt(link)`` / ``on_relay()`` for each notification; starts listening."""
        self._watchers.append(_Watcher(on_mt, on_relay))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="mm7-store-listen"
            )

    async def listening(self) -> None:
        """Wait until the connection listens (tests, and callers that must not miss work)."""
        await self._listening.wait()

    async def close(self) -> None:
        """Stop listening and close the connection."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._drop()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._listening.clear()
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=2.0)

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        if payload.startswith("mt:"):
            link = payload[3:]
            for watcher in list(self._watchers):
                watcher.on_mt(link)
        elif payload == "relay":
            for watcher in list(self._watchers):
                watcher.on_relay()

    async def _wake_all(self, conn: asyncpg.Connection) -> None:
        """After a reconnect: work may have arrived unannounced. Every callback once: the
        relay's, and the dispatchers' of each link with queued recipients."""
        try:
            links = [r[0] for r in await conn.fetch(_QUEUED_LINKS)]
        except Exception as exc:  # the connection dropped again: the next reconnect retries
            log.warning("mm7.store.listen_failed", error=why(exc))
            return
        for watcher in list(self._watchers):
            watcher.on_relay()
            for link in links:
                watcher.on_mt(link)

    async def _run(self) -> None:
        failing = False
        while True:
            try:
                conn = await asyncpg.connect(self._dsn, server_settings={"application_name": "mm7"})
            except Exception as exc:  # the server is down: try again, logged once per outage
                if not failing:
                    log.warning("mm7.store.listen_failed", error=why(exc))
                failing = True
                await asyncio.sleep(self._retry_interval)
                continue
            failing = False
            self._conn = conn
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _c, lost=lost: lost.set())
            try:
                await conn.add_listener(CHANNEL, self._notified)
            except Exception as exc:
                log.warning("mm7.store.listen_failed", error=why(exc))
                await self._drop()
                await asyncio.sleep(self._retry_interval)
                continue
            self._connections += 1
            self._listening.set()
            if self._connections > 1:
                log.info("mm7.store.listen_restored", connections=self._connections)
                await self._wake_all(conn)
            await self._watch(conn, lost)
            log.warning("mm7.store.listen_lost")
            await self._drop()

    async def _watch(self, conn: asyncpg.Connection, lost: asyncio.Event) -> None:
        """Until the connection drops: wait, and check it answers every ``check_interval``."""
        while not lost.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(lost.wait(), timeout=self._check_interval)
                return
            try:
                await asyncio.wait_for(conn.fetchval("SELECT 1"), timeout=self._check_interval)
            except Exception:
                return
