"""The gateway in a cluster, in process: the link owned by another instance is not dispatched
here (the API still takes its messages), /readyz and the metrics show the leases held, and the
link is taken over as soon as the other instance gives it up; retention runs only on the holder of
the ``retention`` lease.

The other instance is a second handle on the gateway's SQLite file holding ``link:main`` (a
second gateway cannot share a SQLite file: SQLite is one process). Waits are on conditions,
bounded only against a hang."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from mm7.service.config.loader import load_config
from mm7.service.runtime import Gateway
from mm7.service.store import ManualClock
from mm7.service.store.records import NewMessage
from mm7.service.store.sqlite.store import SqliteStore
from mm7.simulator.app import SIMULATOR
from tests.helpers.runtime import (
    AUTH,
    bound_socket,
    message,
    start_simulator,
    wait_for,
    write_config,
)

CLUSTER = """
[cluster]
instance = "gw-test"
lease_ttl = "1s"
"""


async def test_a_link_owned_elsewhere_waits_and_is_taken_over_when_given_up(
    tmp_path: Path,
) -> None:
    with bound_socket() as mmsc:
        config = load_config(write_config(tmp_path, mmsc.getsockname()[1], extra=CLUSTER), env={})
        db = tmp_path / "var" / "mm7.sqlite"
        db.parent.mkdir(parents=True)
        other = await SqliteStore.open(db)
        assert await other.claim("link:main", "gw-other", timedelta(hours=1)) == 1
        gateway = Gateway(config, configure_logs=False, poll_interval=3600, announce=print)
        await gateway.start()
        sim_app, sim_runner = await start_simulator(mmsc, gateway.inbound_url)
        asked = 0
        dispatcher = gateway.dispatchers["main"]
        owns = dispatcher.may_lease
        assert owns is not None

        def counting() -> bool:
            nonlocal asked
            asked += 1
            return owns()

        dispatcher.may_lease = counting
        try:
            async with aiohttp.ClientSession(headers=AUTH) as http:
                ready = await readyz(http, gateway)
                assert ready["cluster"] == {
                    "instance": "gw-test",
                    "leases": {"relay": 1, "retention": 1},
                }
                async with http.post(f"{gateway.api_url}/v1/messages", json=message()) as rsp:
                    assert rsp.status == 202, await rsp.text()
                    message_id = (await rsp.json())["id"]

                async def asked_twice() -> bool:
                    dispatcher.wake()
                    return asked >= 2

                await wait_for(asked_twice)
                view = await get(http, f"{gateway.api_url}/v1/messages/{message_id}")
                assert view["recipients"][0]["status"] == "queued"
                assert sim_app[SIMULATOR].submitted == {}
                metrics = await text(http, f"{gateway.api_url}/metrics")
                assert 'mm7_cluster_lease_held{lease="link:main"} 0.0' in metrics
                assert 'mm7_cluster_lease_held{lease="relay"} 1.0' in metrics

                await other.give_up("link:main", "gw-other")

                async def submitted() -> dict[str, Any] | None:
                    view = await get(http, f"{gateway.api_url}/v1/messages/{message_id}")
                    recipient = view["recipients"][0]
                    return view if recipient["status"] in ("submitted", "delivered") else None

                await wait_for(submitted)
                assert len(sim_app[SIMULATOR].submitted) == 1
                ready = await readyz(http, gateway)
                assert ready["cluster"]["leases"] == {"link:main": 2, "relay": 1, "retention": 1}
                metrics = await text(http, f"{gateway.api_url}/metrics")
                assert 'mm7_cluster_lease_held{lease="link:main"} 1.0' in metrics
            await sim_app[SIMULATOR].dlr.idle()
        finally:
            await gateway.stop()
            await sim_runner.cleanup()
        # stopped: every lease given up, the other instance takes them without waiting
        assert await other.claim("link:main", "gw-other", timedelta(hours=1)) == 3
        assert await other.claim("relay", "gw-other", timedelta(hours=1)) == 2
        await other.close()


async def test_an_instance_holding_nothing_is_ready(tmp_path: Path) -> None:
    with bound_socket() as mmsc:
        config = load_config(write_config(tmp_path, mmsc.getsockname()[1], extra=CLUSTER), env={})
        db = tmp_path / "var" / "mm7.sqlite"
        db.parent.mkdir(parents=True)
        other = await SqliteStore.open(db)
        for name in ("link:main", "relay", "retention"):
            assert await other.claim(name, "gw-other", timedelta(hours=1)) == 1
        gateway = Gateway(config, configure_logs=False, poll_interval=3600, announce=print)
        await gateway.start()
        try:
            async with (
                aiohttp.ClientSession(headers=AUTH) as http,
                http.get(f"{gateway.api_url}/readyz") as rsp,
            ):
                assert rsp.status == 200
                body = await rsp.json()
            assert body["status"] == "ready"
            assert body["cluster"] == {"instance": "gw-test", "leases": {}}
        finally:
            await gateway.stop()
            await other.close()


async def test_retention_runs_only_on_the_holder_of_its_lease(tmp_path: Path) -> None:
    """Housekeeping on one instance at a time: while another instance holds ``retention`` this
    one purges nothing, even when asked to; it purges at once when it takes the lease."""
    with bound_socket() as mmsc:
        config = load_config(write_config(tmp_path, mmsc.getsockname()[1], extra=CLUSTER), env={})
        db = tmp_path / "var" / "mm7.sqlite"
        db.parent.mkdir(parents=True)
        old = await SqliteStore.open(db, clock=ManualClock())  # 2026-01-01: long finished
        finished = await old.enqueue_message(NewMessage("main", {"text": "x"}), ["+15550001"])
        (item,) = await old.lease("main", "w", 1, timedelta(minutes=1))
        assert await old.complete(item, "mm7-1", 1000, "Success")
        await old.close()
        other = await SqliteStore.open(db)
        assert await other.claim("retention", "gw-other", timedelta(hours=1)) == 1
        gateway = Gateway(config, configure_logs=False, poll_interval=3600, announce=print)
        await gateway.start()
        store = gateway.store
        assert store is not None
        purges: list[datetime] = []
        purge = store.purge

        async def counted(before: datetime) -> Any:
            purges.append(before)  # at the call, before its first await
            return await purge(before)

        store.purge = counted  # type: ignore[method-assign]
        due = gateway._retention_due
        try:
            for _ in range(3):  # the hourly pass, made due now: it finds the lease elsewhere

                async def passed() -> bool:
                    return not due.is_set()

                due.set()
                await wait_for(passed)  # cleared: the pass decided (held is checked at once)
            assert purges == []
            assert await store.get_message(finished.message_id) is not None

            await other.give_up("retention", "gw-other")

            async def purged() -> bool:
                return await store.get_message(finished.message_id) is None

            await wait_for(purged)  # taken at the next claim, and purged at once
            assert len(purges) == 1
            assert gateway.ownership is not None and gateway.ownership.held("retention")
        finally:
            await gateway.stop()
            await other.close()


async def readyz(http: aiohttp.ClientSession, gateway: Gateway) -> dict[str, Any]:
    async with http.get(f"{gateway.api_url}/readyz") as rsp:
        assert rsp.status == 200, await rsp.text()
        body: dict[str, Any] = await rsp.json()
    return body


async def get(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(url) as rsp:
        assert rsp.status == 200, await rsp.text()
        body: dict[str, Any] = await rsp.json()
    return body


async def text(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url) as rsp:
        return await rsp.text()
