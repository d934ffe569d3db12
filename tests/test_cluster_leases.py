"""Named leases and shared duplicate detection between two instances on one store.

Each test opens the database twice (``tests.helpers.cluster.open_pair``), as two gateway
processes would, on one ManualClock; an instance's own monotonic clock is a ``Monotonic`` the
test moves. Nothing sleeps for a TTL: the clocks are moved past it. Parametrised over
``BACKENDS`` so that every backend of the store runs the same tests.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from mm7.service.cluster.dedupe import StoreDedupe, for_store
from mm7.service.cluster.ownership import MARGIN, POLL, RENEW, Change, LeaseState, Ownership
from mm7.service.config.settings import RelayHook, RelayRoute, RelaySettings
from mm7.service.relay.ingest import MoIngest
from mm7.service.store.base import ManualClock, Store
from mm7.service.store.outbox import RelayKind
from mm7.service.store.records import NewMessage
from mm7.service.store.sqlite.store import SqliteStore
from mm7.transport.dedupe import dedupe_keys
from mm7.transport.link import Secret
from mm7.transport.server import InboundConfig, InboundHandlers
from tests.helpers.cluster import BACKENDS, Monotonic, open_pair
from tests.helpers.inbound import OPEN, Recorder, post_message, request_message, start

TTL = timedelta(seconds=10)


@pytest.fixture(params=BACKENDS)
async def stores(
    request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock
) -> AsyncIterator[tuple[Store, Store]]:
    async with open_pair(request.param, tmp_path, clock) as pair:
        yield pair


# --------------------------------------------------------------------------- the store


async def test_one_owner_at_a_time_and_renewal_keeps_the_token(
    stores: tuple[Store, Store], clock: ManualClock
) -> None:
    a, b = stores
    assert await a.claim("link:x", "gw-a", TTL) == 1
    assert await b.claim("link:x", "gw-b", TTL) is None
    clock.advance(timedelta(seconds=9))
    assert await a.claim("link:x", "gw-a", TTL) == 1  # renewed: until 19 s from the start
    clock.advance(timedelta(seconds=9))
    assert await b.claim("link:x", "gw-b", TTL) is None  # 18 s: still gw-a's
    # another name is another lease
    assert await b.claim("relay", "gw-b", TTL) == 1


async def test_an_expired_lease_changes_hands_and_the_token_grows(
    stores: tuple[Store, Store], clock: ManualClock
) -> None:
    a, b = stores
    tokens = [await a.claim("link:x", "gw-a", TTL)]
    for _ in range(3):
        clock.advance(TTL)  # the holder did not renew: expired now
        tokens.append(await b.claim("link:x", "gw-b", TTL))
        assert await a.claim("link:x", "gw-a", TTL) is None
        clock.advance(TTL)
        tokens.append(await a.claim("link:x", "gw-a", TTL))
    assert tokens == [1, 2, 3, 4, 5, 6, 7]


async def test_give_up_lets_the_other_take_at_once(
    stores: tuple[Store, Store], clock: ManualClock
) -> None:
    a, b = stores
    assert await a.claim("relay", "gw-a", TTL) == 1
    await b.give_up("relay", "gw-b")  # not b's: changes nothing
    assert await b.claim("relay", "gw-b", TTL) is None
    await a.give_up("relay", "gw-a")
    assert await b.claim("relay", "gw-b", TTL) == 2  # no clock moved
    await a.give_up("relay", "gw-a")  # no longer a's: b keeps it
    assert await a.claim("relay", "gw-a", TTL) is None


async def test_request_keys_are_shared_until_they_expire_then_purged(
    stores: tuple[Store, Store], clock: ManualClock
) -> None:
    a, b = stores
    await a.record_request("k1", timedelta(hours=1))
    await a.record_request("k2", timedelta(hours=3))
    assert await b.seen_request("k1") and await b.seen_request("k2")
    assert not await b.seen_request("k3")
    clock.advance(timedelta(minutes=50))
    await b.record_request("k1", timedelta(hours=1))  # seen again: its time starts over
    clock.advance(timedelta(minutes=20))
    assert await a.seen_request("k1")
    clock.advance(timedelta(minutes=45))
    assert not await a.seen_request("k1")
    stats = await b.purge(clock.now() - timedelta(days=30))
    assert stats.request_keys == 1  # k1 only: k2 has 65 minutes to go
    assert await a.seen_request("k2")
    clock.advance(timedelta(minutes=65))
    assert (await a.purge(clock.now())).request_keys == 1


async def test_watch_on_a_store_of_one_process_calls_nothing(
    stores: tuple[Store, Store],
) -> None:
    a, b = stores
    if not isinstance(a, SqliteStore):
        pytest.skip("a shared store's watch is tested in test_store_postgres (NOTIFY)")
    calls: list[object] = []
    a.watch(on_mt=calls.append, on_relay=lambda: calls.append("relay"))
    message = NewMessage(link="x", fields={"text": "hi"}, callback_url="https://app.example/s")
    await b.enqueue_message(message, ["+15551230001"])
    assert calls == []


# --------------------------------------------------------------------------- the decision


def test_a_lease_holds_until_its_deadline_then_is_lost() -> None:
    state = LeaseState("link:x", ttl=10.0)
    assert state.answered(sent=100.0, now=100.1, token=4) is Change.ACQUIRED
    assert state.held(107.9) and state.wake_at() == pytest.approx(100 + 10 * RENEW)
    assert state.failed(104.0) is None  # a failed renewal: still held, tried again soon
    assert state.next_claim == pytest.approx(104.0 + 10 * POLL)
    assert not state.held(100 + 10 * (1 - MARGIN))
    assert state.settle(108.0) is Change.LOST and state.token is None


def test_an_answer_after_the_deadline_does_not_hold() -> None:
    state = LeaseState("link:x", ttl=10.0)
    # sent at 100, answered at 109: the store's lease may already be someone else's soon
    assert state.answered(sent=100.0, now=109.0, token=1) is None
    assert not state.held(109.0) and not state.holding


def test_a_renewal_answered_after_the_holding_ran_out_is_announced_again() -> None:
    """While the renewal was on its way ``held`` said no, and the work it guards may have
    turned a wake-up away: announced as acquired, so that the runtime wakes it again."""
    state = LeaseState("link:x", ttl=10.0)
    state.answered(100.0, 100.0, 1)
    deadline = 100 + 10 * (1 - MARGIN)
    assert not state.held(deadline + 0.5) and state.holding  # nobody has checked yet
    assert state.answered(sent=deadline - 1, now=deadline + 0.5, token=1) is Change.ACQUIRED
    assert state.held(deadline + 0.5)
    # a renewal answered in time is no news
    assert state.answered(sent=deadline + 1, now=deadline + 1.1, token=1) is None


def test_a_refusal_of_a_held_lease_is_a_loss() -> None:
    state = LeaseState("link:x", ttl=10.0)
    state.answered(100.0, 100.0, 1)
    assert state.answered(103.0, 103.0, None) is Change.LOST
    assert not state.held(103.0)


# --------------------------------------------------------------------------- two instances


def pair(a: Store, b: Store, names: list[str], ttl: float = 10.0) -> tuple[Ownership, Ownership]:
    ma, mb = Monotonic(), Monotonic()
    return (
        Ownership(a, "gw-a", names, ttl, clock=ma),
        Ownership(b, "gw-b", names, ttl, clock=mb),
    )


async def test_the_first_instance_holds_everything_and_the_other_takes_over_after_the_ttl(
    stores: tuple[Store, Store], clock: ManualClock
) -> None:
    names = ["link:x", "relay", "retention"]
    a, b = pair(*stores, names)
    acquired: list[str] = []
    b._on_acquired = acquired.append
    for name in names:
        assert await a.claim_once(name) is Change.ACQUIRED
        assert await b.claim_once(name) is None
    assert a.holding() == dict.fromkeys(names, 1) and b.holding() == {}
    assert a.states() == dict.fromkeys(names, True)
    assert b.states() == dict.fromkeys(names, False)

    # a dies (no renewal); its own clock, had it lived, says its time is up before the store's
    a._clock.advance(10.0 * (1 - MARGIN))  # type: ignore[attr-defined]
    assert not a.held("link:x")
    clock.advance(timedelta(seconds=9.9))
    assert await b.claim_once("link:x") is None  # the store's lease is still a's
    clock.advance(timedelta(seconds=0.1))
    assert await b.claim_once("link:x") is Change.ACQUIRED
    assert b.holding() == {"link:x": 2}
    assert acquired == ["link:x"]
    with capture_logs() as logs:
        assert a.check("link:x") is Change.LOST
        assert await a.claim_once("link:x") is None  # b's now
    assert [e["event"] for e in logs] == ["mm7.cluster.lost"]


async def test_a_holder_that_cannot_renew_stops_before_its_ttl(
    stores: tuple[Store, Store], clock: ManualClock
) -> None:
    a_store, b_store = stores
    broken = Unreachable(a_store)
    mono = Monotonic()
    a = Ownership(broken, "gw-a", ["link:x"], 10.0, clock=mono)
    b = Ownership(b_store, "gw-b", ["link:x"], 10.0, clock=Monotonic())
    start = clock.now()
    assert await a.claim_once("link:x") is Change.ACQUIRED
    broken.down = True
    # renewals every third of the TTL fail; the lease holds on a's clock until 8 s ...
    for _ in range(2):
        mono.advance(10.0 * RENEW)
        clock.advance(timedelta(seconds=10.0 * RENEW))
        assert await a.claim_once("link:x") is None
        assert a.held("link:x")
    mono.advance(8.0 - 2 * 10.0 * RENEW)
    clock.advance(timedelta(seconds=8.0 - 2 * 10.0 * RENEW))
    # ... and stops there, while the store still gives the lease to nobody else
    assert not a.held("link:x")
    assert await b.claim_once("link:x") is None
    assert a.check("link:x") is Change.LOST
    clock.set(start + TTL)
    assert await b.claim_once("link:x") is Change.ACQUIRED


async def test_stop_gives_up_and_the_other_takes_at_once(
    stores: tuple[Store, Store],
) -> None:
    a, b = pair(*stores, ["link:x", "relay"])
    await a.start()
    await b.start()
    assert set(a.holding()) == {"link:x", "relay"} and b.holding() == {}
    with capture_logs() as logs:
        await a.stop()
    assert sorted(e["lease"] for e in logs if e["event"] == "mm7.cluster.released") == [
        "link:x",
        "relay",
    ]
    assert not a.held("link:x") and a.holding() == {}
    try:
        assert await b.claim_once("link:x") is Change.ACQUIRED  # no clock moved
        assert await b.claim_once("relay") is Change.ACQUIRED
        assert b.holding() == {"link:x": 2, "relay": 2}
    finally:
        await b.stop()


class Unreachable:
    """A store whose claims fail while ``down`` (a network partition from the database)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.down = False

    async def claim(self, name: str, owner: str, ttl: timedelta) -> int | None:
        if self.down:
            raise ConnectionError("store unreachable")
        return await self.store.claim(name, owner, ttl)

    async def give_up(self, name: str, owner: str) -> None:
        await self.store.give_up(name, owner)


# --------------------------------------------------------------------------- dedupe


async def test_a_key_recorded_by_one_instance_is_seen_by_the_other(
    stores: tuple[Store, Store], clock: ManualClock
) -> None:
    a, b = StoreDedupe(stores[0]), StoreDedupe(stores[1], ttl=3600)
    await a.record("mmsc\x1fdr\x1fid-1")
    assert await b.seen("mmsc\x1fdr\x1fid-1")
    assert not await b.seen("mmsc\x1fdr\x1fid-2")
    clock.advance(timedelta(hours=23, minutes=59))
    assert await b.seen("mmsc\x1fdr\x1fid-1")  # a's ttl: 24 h
    await b.record("mmsc\x1fdr\x1fid-2")
    clock.advance(timedelta(minutes=2))
    assert not await b.seen("mmsc\x1fdr\x1fid-1")
    assert await a.seen("mmsc\x1fdr\x1fid-2")  # b's: an hour


async def test_a_retry_reaching_the_other_instance_is_a_duplicate(
    aiohttp_server: object, stores: tuple[Store, Store]
) -> None:
    first, second = Recorder(), Recorder()
    server_a = await start(
        aiohttp_server,  # type: ignore[arg-type]
        first,
        config=InboundConfig(peers=OPEN),
        dedupe=StoreDedupe(stores[0]),
    )
    server_b = await start(
        aiohttp_server,  # type: ignore[arg-type]
        second,
        config=InboundConfig(peers=OPEN),
        dedupe=StoreDedupe(stores[1]),
    )
    report = request_message("DeliveryReportReq", "REL-6-MM7-1-4")
    assert (await post_message(server_a.make_url("/mm7"), report)).status == 200
    assert (await post_message(server_b.make_url("/mm7"), report)).status == 200
    assert [c.duplicate for c in first.contexts] == [False]
    assert [c.duplicate for c in second.contexts] == [True]


async def test_a_deliver_req_key_is_left_to_the_store_of_the_mo(
    stores: tuple[Store, Store],
) -> None:
    """store_mo finds a retried MO itself: its key costs no request-key read or write."""
    deliver = request_message("DeliverReq", "REL-6-MM7-1-4", tid="tx-mo-1")
    report = request_message("DeliveryReportReq", "REL-6-MM7-1-4")
    (mo_key,) = dedupe_keys("mmsc", deliver)
    (dr_key,) = dedupe_keys("mmsc", report)
    a, b = StoreDedupe(stores[0]), StoreDedupe(stores[1])
    await a.record(mo_key)
    await a.record(dr_key)
    assert not await b.seen(mo_key)
    assert not await stores[1].seen_request(hashlib.sha256(mo_key.encode()).hexdigest())
    assert await b.seen(dr_key)


async def test_a_retried_mo_reaching_the_other_instance_is_stored_and_relayed_once(
    aiohttp_server: object, stores: tuple[Store, Store], clock: ManualClock
) -> None:
    settings = RelaySettings(
        hooks=(RelayHook(name="app", url="http://127.0.0.1:9/app", secret=Secret("s")),),
        default_route=RelayRoute(name="all", hook="app"),
    )
    servers = [
        await start(
            aiohttp_server,  # type: ignore[arg-type]
            handlers=InboundHandlers(on_deliver=MoIngest(store, settings, clock=clock).on_deliver),
            config=InboundConfig(peers=OPEN),
            dedupe=StoreDedupe(store),
        )
        for store in stores
    ]
    deliver = request_message("DeliverReq", "REL-6-MM7-1-4", tid="tx-mo-2")
    for server in (*servers, servers[0]):
        reply = await post_message(server.make_url("/mm7"), deliver)
        assert reply.status == 200 and reply.message.status.code == 1000  # type: ignore[attr-defined]
    events = await stores[1].relay_events(kind=RelayKind.MO)
    assert len(events) == 1 and events[0].event["mm7"]["transaction_id"] == "tx-mo-2"


async def test_the_gateway_shares_duplicate_detection_only_on_a_shared_store(
    stores: tuple[Store, Store],
) -> None:
    assert isinstance(for_store("postgresql", stores[0]), StoreDedupe)
    assert for_store("sqlite", stores[0]) is None  # one process: the endpoint's memory


async def test_the_renewal_tasks_hand_a_dead_holders_lease_to_the_standby(
    stores: tuple[Store, Store], clock: ManualClock
) -> None:
    """The asyncio side on the real monotonic clock (a 1 s TTL): the holder's task renews, the
    standby's task claims every tenth of the TTL and takes the lease once it expired."""
    a = Ownership(stores[0], "gw-a", ["link:x"], 1.0)
    acquired = asyncio.Event()
    b = Ownership(stores[1], "gw-b", ["link:x"], 1.0, on_acquired=lambda name: acquired.set())
    await a.start()
    await b.start()
    try:
        assert a.held("link:x") and not b.held("link:x")
        for task in a._tasks:  # a dies: no renewal, no give_up
            task.cancel()
        clock.advance(timedelta(seconds=1))  # its lease runs out in the store
        await asyncio.wait_for(acquired.wait(), 30)  # the guard only stops a hang
        assert b.holding() == {"link:x": 2}
    finally:
        a._tasks.clear()
        await b.stop()
