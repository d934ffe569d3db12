"""Stopping the relay worker while a hook hangs: the unfinished delivery is handed back at once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from mm7.service.config.settings import RelayHook, RelaySettings
from mm7.service.relay.worker import RelayWorker
from mm7.service.store import ManualClock, MoRelay, NewMo, RelayStatus, SqliteStore
from mm7.transport.link import Secret

Server = Callable[..., Awaitable[Any]]


async def test_stop_releases_a_delivery_cut_short(aiohttp_server: Server, tmp_path: Path) -> None:
    arrived = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        arrived.set()
        await asyncio.sleep(30)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hang)
    server = await aiohttp_server(app)
    hook = RelayHook("app", str(server.make_url("/hook")), Secret("s"), timeout=60)
    settings = RelaySettings(hooks=(hook,))
    store = await SqliteStore.open(tmp_path / "gw.db")
    try:
        relay = MoRelay(hook="app", route="default", media="url", event={"type": "mo"})
        await store.store_mo(NewMo("link", "t1", None, {}, relay=relay))
        worker = RelayWorker(store, settings, lease_ttl=timedelta(hours=1))
        assert await worker.run_once() == 1
        await asyncio.wait_for(arrived.wait(), 10)
        await worker.stop(grace=0.05)
        (event,) = await store.relay_events()
        assert event.status is RelayStatus.PENDING and event.attempts == 0
        # due now for the next worker, not after the hour-long lease
        (again,) = await store.lease_relay("next", 5, timedelta(seconds=60))
        assert again.id == event.id and again.attempt == 1
    finally:
        await store.close()


async def test_a_started_worker_purges_what_is_past_retain(tmp_path: Path) -> None:
    clock = ManualClock()
    store = await SqliteStore.open(tmp_path / "gw.db", clock=clock)
    try:
        relay = MoRelay(hook="app", route="default", media="url", event={"type": "mo"})
        for tid in ("t1", "t2"):
            await store.store_mo(NewMo("link", tid, None, {}, relay=relay))
        first, second = await store.lease_relay("w", 5, timedelta(seconds=60))
        assert await store.relay_outcome(first, "delivered")
        assert await store.relay_outcome(second, "dead", error="HTTP 500")
        clock.advance(timedelta(days=3))
        settings = RelaySettings(retain=2 * 86400.0)
        worker = RelayWorker(store, settings, poll_interval=0.01)
        worker.sender.clock = clock
        await worker.start()
        try:
            async with asyncio.timeout(10):
                while await store.relay_counts() != {"dead": 1}:
                    await asyncio.sleep(0.01)
        finally:
            await worker.stop()
    finally:
        await store.close()


async def test_hookless_events_are_leased_no_faster_than_the_narrowest_status_hook(
    tmp_path: Path,
) -> None:
    from mm7.service.config.settings import RelayRoute

    store = await SqliteStore.open(tmp_path / "gw.db")
    try:
        slow = RelayHook("slow", "http://127.0.0.1:9/s", Secret("s"), concurrency=1)
        app = RelayHook("app", "http://127.0.0.1:9/a", Secret("s"), concurrency=4)
        settings = RelaySettings(
            hooks=(slow, app), default_route=RelayRoute("default", "app", status_hook="slow")
        )
        worker = RelayWorker(store, settings, callback_concurrency=8)
        assert worker.quotas() == {"slow": 1, "app": 4, None: 1}
        plain = RelayWorker(store, RelaySettings(hooks=(app,)), callback_concurrency=8)
        assert plain.quotas() == {"app": 4, None: 8}
    finally:
        await store.close()
