"""Per-sender limits (``sender_tps``) with a real gateway and the bundled simulator as the MMSC.

A slow sender's backlog is queued first, then a fast sender's recipients, on one link: at the
simulator (its traffic record: when each SubmitReq arrived, and whose it was) neither sender
passes its rate in any one-second window, the fast one keeps its own rate (counted over its
busy seconds, with a generous margin) and finishes long before the slow one, whose recipients
waited (deferred in the store, not failed). A dispatcher on a fake MMSC walks past a slow
backlog without passing its in-flight bound. Plus the pure ``SenderLimits`` on a hand-moved
clock, the sender key and the ``sender_tps`` setting.

Waits are on conditions, each bounded by a deadline that only guards against a hang.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from mm7.service.config.loader import load_config
from mm7.service.config.settings import LinkSettings, SenderRates
from mm7.service.mt.dispatcher import Dispatcher
from mm7.service.mt.senders import SenderLimits
from mm7.service.mt.submit_build import sender_of
from mm7.service.runtime import Gateway
from mm7.service.store import NewMessage, SqliteStore
from mm7.simulator.app import SIMULATOR
from mm7.transport.link import LinkConfig
from tests.helpers.fake_mmsc import PATH, FakeMMSC, ok
from tests.helpers.runtime import (
    AUTH,
    bound_socket,
    start_quiet_simulator,
    wait_for,
    write_config,
)

FAST, FAST_TPS, FAST_COUNT = "54321", 20, 60
SLOW_TPS, SLOW_COUNT = 2, 16  # the link's sender_address "12345" gets the default


def arrivals(app: web.Application, message_id: str) -> list[datetime]:
    """When each SubmitReq of ``message_id`` reached the simulator (record time minus handling
    time), in order; only those it accepted."""
    return sorted(
        e.at - timedelta(milliseconds=e.duration_ms)
        for e in app[SIMULATOR].store.exchanges
        if e.direction == "in"
        and e.operation == "SubmitReq"
        and e.status_code == 1000
        and e.transaction_id.startswith(f"{message_id}.")
    )


def busiest_second(times: list[datetime]) -> int:
    """The most arrivals within any one second."""
    best = first = 0
    for last, at in enumerate(times):
        while at - times[first] >= timedelta(seconds=1):
            first += 1
        best = max(best, last - first + 1)
    return best


def whole_seconds(times: list[datetime]) -> list[int]:
    """Arrivals in each whole second from the first one on, the last partial second left out."""
    counts: list[int] = []
    start = times[0]
    while start + timedelta(seconds=1) <= times[-1]:
        end = start + timedelta(seconds=1)
        counts.append(sum(start <= t < end for t in times))
        start = end
    return counts


async def post(http: aiohttp.ClientSession, api: str, body: dict[str, Any]) -> str:
    async with http.post(f"{api}/v1/messages", json=body) as rsp:
        assert rsp.status == 202, await rsp.text()
        message_id: str = (await rsp.json())["id"]
        return message_id


async def test_a_fast_sender_keeps_its_rate_beside_a_throttled_slow_one(tmp_path: Path) -> None:
    with bound_socket() as mmsc:
        path = write_config(tmp_path, mmsc.getsockname()[1])
        path.write_text(
            path.read_text().replace(
                "tps = 100\n",
                f'tps = 100\nsender_tps = {{ default = {SLOW_TPS}, "{FAST}" = {FAST_TPS} }}\n',
            )
        )
        gateway = Gateway(
            load_config(path, env={}), configure_logs=False, poll_interval=0.2,
            announce=lambda line: None,
        )  # fmt: skip
        await gateway.start()
        sim_app, sim_runner = await start_quiet_simulator(mmsc)
        try:
            api = gateway.api_url
            assert api is not None
            async with aiohttp.ClientSession(headers=AUTH) as http:
                slow = await post(http, api, {
                    "to": [f"+1202555{2000 + n}" for n in range(SLOW_COUNT)], "text": "slow",
                })  # fmt: skip
                fast = await post(http, api, {
                    "to": [f"+1202555{1000 + n}" for n in range(FAST_COUNT)], "text": "fast",
                    "from": FAST,
                })  # fmt: skip

                async def fast_done() -> bool:
                    return len(arrivals(sim_app, fast)) == FAST_COUNT

                await wait_for(fast_done, deadline=60)
                slow_sent_by_then = len(arrivals(sim_app, slow))

                async def slow_done() -> bool:
                    return len(arrivals(sim_app, slow)) == SLOW_COUNT

                await wait_for(slow_done, deadline=60)

                async def slow_recorded() -> dict[str, Any] | None:
                    async with http.get(f"{api}/v1/messages/{slow}") as rsp:
                        view: dict[str, Any] = await rsp.json()
                    return view if view["status"] == "submitted" else None

                slow_view = await wait_for(slow_recorded)
                async with http.get(f"{api}/metrics") as rsp:
                    metrics = await rsp.text()
        finally:
            await gateway.stop()
            await sim_runner.cleanup()

    fast_times, slow_times = arrivals(sim_app, fast), arrivals(sim_app, slow)
    # every recipient went once, from the sender it was meant to go from
    senders = {
        str(m.message.sender_address): m.message.transaction_id.split(".")[0]
        for m in sim_app[SIMULATOR].store.messages
    }
    assert senders == {FAST: fast, "12345": slow}
    # neither sender passed its rate in any one second (one more for where a window's edges fall)
    assert busiest_second(fast_times) <= FAST_TPS + 1, busiest_second(fast_times)
    assert busiest_second(slow_times) <= SLOW_TPS + 1, busiest_second(slow_times)
    # the fast one kept its rate although the slow one's backlog was queued before it: at least
    # 70% of it in every whole second it was sending, all sent while the slow one had a good
    # part of its recipients still waiting
    per_second = whole_seconds(fast_times)
    assert len(per_second) >= 2, per_second
    assert min(per_second) >= 0.7 * FAST_TPS, per_second
    fast_span = (fast_times[-1] - fast_times[0]).total_seconds()
    assert fast_span <= (FAST_COUNT - 1) / FAST_TPS / 0.7, fast_span
    assert slow_sent_by_then < SLOW_COUNT - 4, slow_sent_by_then
    slow_span = (slow_times[-1] - slow_times[0]).total_seconds()
    assert slow_span >= (SLOW_COUNT - 1) / SLOW_TPS - 0.5, slow_span
    # the slow one's recipients waited in the store (deferred, attempts not counted), none failed
    assert [r["status"] for r in slow_view["recipients"]] == ["submitted"] * SLOW_COUNT
    assert all(r["attempts"] == 1 for r in slow_view["recipients"]), slow_view["recipients"]
    throttled = [e for e in slow_view["events"] if e["kind"] == "throttled"]
    assert throttled and {e["details"]["sender"] for e in throttled} == {"12345"}
    assert 'mm7_sender_waits_total{how="deferred",link="main"}' in metrics


# -- the limits on their own, on a clock moved by hand ----------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_turns_follow_the_rate_and_kept_turns_come_back() -> None:
    clock = Clock()
    rates = SenderRates(rates=(("555", 4.0),), default=1.0)
    limits = SenderLimits(rates, link_tps=10.0, hold=1.0, clock=clock)
    delays = []
    for rid in range(6):
        turn = limits.turn("555", rid)
        assert turn is not None and turn.rate == 4.0
        delays.append(turn.delay)
    assert delays == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0, 1.25])
    late = limits.turn("555", 6)
    assert late is not None
    limits.keep(6, late)  # deferred to its turn, 1.5 s ahead
    assert limits.next_kept() == pytest.approx(1.5)
    # others' turns do not depend on this sender's; a new one of this sender comes after
    other = limits.turn("777", 10)
    assert other is not None and (other.rate, other.delay) == (1.0, 0.0)
    assert limits.turn("555", 7).delay == pytest.approx(1.75)  # type: ignore[union-attr]
    clock.now += 1.5
    back = limits.turn("555", 6)  # the deferred one takes the turn kept for it
    assert back is not None and back.delay == 0.0 and limits.kept == 0


def test_admit_spaces_the_sends_and_unlimited_senders_pass() -> None:
    clock = Clock()
    limits = SenderLimits(SenderRates(rates=(("555", 2.0),)), link_tps=None, clock=clock)
    assert limits.admit("555") == 0.0
    assert limits.admit("555") == pytest.approx(0.5)  # refused: half a second to go
    clock.now += 0.3
    assert limits.admit("555") == pytest.approx(0.2)
    clock.now += 0.2
    assert limits.admit("555") == 0.0
    # a sender not listed (no default) and a rate at or above the link's tps: no limit here
    assert limits.turn("999", 1) is None and limits.admit("999") == 0.0
    capped = SenderLimits(SenderRates(default=50.0), link_tps=20.0, clock=clock)
    assert capped.turn("555", 1) is None


def test_the_sender_is_the_address_as_sent() -> None:
    link = LinkConfig(name="l", url="http://127.0.0.1:1/mm7")
    settings = LinkSettings(name="l", link=link, sender_address=" 12345 ")
    assert sender_of({"from": " +12025550100 "}, settings) == "+12025550100"
    assert sender_of({"from": None}, settings) == "12345"
    assert sender_of({"from": ""}, settings) == "12345"
    assert sender_of({}, LinkSettings(name="l", link=link)) == ""


def test_sender_tps_is_read_and_checked(tmp_path: Path) -> None:
    from mm7.service.errors import ConfigError

    def load(line: str) -> Any:
        path = write_config(tmp_path, 1)
        path.write_text(path.read_text().replace("tps = 100\n", f"tps = 100\n{line}\n"))
        return load_config(path, env={}).link("main").sender_tps

    rates = load('sender_tps = { default = 1, " 12345" = 40, "info@example.com" = 0.5 }')
    assert rates == SenderRates(rates=(("12345", 40.0), ("info@example.com", 0.5)), default=1.0)
    assert rates.rate_for("12345") == 40.0 and rates.rate_for("other") == 1.0
    assert load("") == SenderRates() and not SenderRates()
    with pytest.raises(ConfigError, match=r"links\.main\.sender_tps\.12345: expected a positive"):
        load('sender_tps = { "12345" = 0 }')
    with pytest.raises(ConfigError, match=r"sender_tps\.default: expected a positive number"):
        load('sender_tps = { default = "fast" }')
    with pytest.raises(ConfigError, match=r"sender_tps\. 12345: the same sender as \"12345\""):
        load('sender_tps = { "12345" = 1, " 12345" = 2 }')
    with pytest.raises(ConfigError, match=r"links\.main\.sender_tps: expected a table"):
        load("sender_tps = 3")


async def test_walking_past_a_slow_backlog_keeps_the_in_flight_bound(
    tmp_path: Path, aiohttp_server: Any
) -> None:
    """A slow sender's 40 recipients queued before an unlimited sender's 12, on a link with two
    requests in flight: the dispatcher leases past the backlog in growing rounds (the slow ones
    deferred), sends every unlimited one, gives back what it leased beyond its room, and the
    MMSC never sees more than two requests at once."""
    fake = FakeMMSC(default=ok(delay=0.05))
    server = await aiohttp_server(fake.app())
    link = LinkConfig(name="l", url=str(server.make_url(PATH)), max_in_flight=2)
    settings = LinkSettings(
        name="l", link=link, sender_address="12345",
        sender_tps=SenderRates(rates=(("12345", 1.0),)),  # "777" is not limited
    )  # fmt: skip
    store = await SqliteStore.open(tmp_path / "gw.db")
    try:
        slow = await store.enqueue_message(
            NewMessage("l", {"text": "slow"}), [f"+1202555{2000 + n}" for n in range(40)]
        )
        fast = await store.enqueue_message(
            NewMessage("l", {"text": "fast", "from": "777"}),
            [f"+1202555{1000 + n}" for n in range(12)],
        )
        async with Dispatcher(store, settings, poll_interval=0.05) as dispatcher:

            async def fast_sent() -> bool:
                record = await store.get_message(fast.message_id)
                assert record is not None
                return all(r.status.value == "submitted" for r in record.recipients)

            await wait_for(fast_sent)
        record = await store.get_message(slow.message_id)
        assert record is not None
        still_queued = sum(r.status.value == "queued" for r in record.recipients)
    finally:
        await store.close()
    assert fake.max_in_flight <= 2
    assert still_queued >= 30  # the slow sender went on at its own pace
    assert dispatcher.counts["deferred"] >= 30 and dispatcher.counts["released_no_room"] > 0
    assert dispatcher.counts["submitted"] == 12 + (40 - still_queued)
