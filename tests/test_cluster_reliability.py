"""A cluster with real processes: three `mm7 serve` instances on one fresh PostgreSQL database, the
bundled simulator as the MMSC on loopback, and the instance holding the work SIGKILLed under load.

* MT: messages posted to all three APIs (a POST the kill cut short is retried on another instance
  with its Idempotency-Key, as a careful application does) while the link dispatches at its TPS;
  the link's owner is killed. Another instance takes the link once the dead one's lease expired in
  the store (never before) and within the claim pace after it; every acknowledged message is
  accepted by the MMSC; a TransactionID accepted twice is one the dead instance had leased at the
  kill (in flight); no one-second window at the MMSC holds more than the link's TPS allows; and
  the delivery reports of the messages the dead instance sent, received by a second instance,
  show ``delivered`` on the third.
* MO: DeliverReqs from a simulator per instance while the relay runs to a slow hook; the
  instance holding ``relay`` is killed; every MO answered 1000 reaches the hook, and an event
  reaches it twice only when the dead instance had it leased at the kill.

``[cluster] lease_ttl`` and the work items' lease TTL are 2 s (``--lease-ttl 2``), to keep the
file short. The database is created on ``MM7_TEST_PG_DSN`` (tests/helpers/stores.py) and dropped
after; without a server the tests skip, saying why. Waits are on conditions, each bounded by a
deadline that only guards against a hang."""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from mm7.service.cluster.ownership import POLL
from mm7.simulator.app import SIMULATOR, SimulatorConfig, create_simulator_app
from mm7.simulator.dlr import DlrPlan, RetryPolicy
from mm7.simulator.personas import load_persona
from tests.helpers.runtime import (
    AUTH,
    KEY,
    accepted,
    bound_socket,
    clean_env,
    drain,
    jpeg,
    message,
    read_until,
    wait_for,
)
from tests.helpers.stores import pg_database

INSTANCES = 3
TTL = 2.0
#: the link: TPS, burst and in-flight bound (a small in-flight bound keeps the wait for a TPS
#: token far below the items' 2 s lease)
LINK_TPS = 20
LINK_BURST = 1
IN_FLIGHT = 4
MT_MESSAGES = 150
#: how late the MMSC answers a SubmitReq: with IN_FLIGHT at LINK_TPS, some are always on the wire
SUBMIT_LATENCY = 0.15
#: POSTs per second over all APIs: a little above the link's TPS, so load continues past the kill
POST_RATE = 25.0
MOS = 60
HOOK_DELAY = 0.1
#: what the machine may add to a bound the design sets (a loaded CI host stalls processes)
SLACK = 1.5

CONFIG = """
[links.main]
url = "http://127.0.0.1:{mmsc_port}/mm7"
default = true
vasp_id = "vasp"
vas_id = "vas"
sender_address = "12345"
tps = {tps}
burst = {burst}
max_in_flight = {in_flight}
request_timeout = "5s"
connect_timeout = "2s"
retry = {{ initial_backoff = "0.05s", max_backoff = "0.2s" }}

[inbound]
listen = "127.0.0.1:0"
[inbound.peers.simulator]
link = "main"
allow = ["127.0.0.1/32"]

[api]
listen = "127.0.0.1:0"
[[api.keys]]
name = "app"
key = "{key}"

[store]
backend = "postgresql"
dsn_env = "MM7_TEST_DSN"

[cluster]
instance = "{instance}"
lease_ttl = "{ttl}s"

[logging]
level = "warning"
json = true
{extra}
"""

RELAY = """
[relay]
initial_backoff = "0.05s"
max_backoff = "0.3s"
[relay.hooks.app]
url = "http://127.0.0.1:{hook_port}/hook"
secret_env = "MM7_TEST_HOOK_SECRET"
concurrency = 2
timeout = "5s"
[relay.default_route]
hook = "app"
media = "url"
"""


# --------------------------------------------------------------------------- the instances


@dataclass
class Instance:
    """One `mm7 serve` process: its name, API and inbound URLs; stdout drained on a thread."""

    name: str
    proc: subprocess.Popen[str]
    api: str = ""
    inbound: str = ""
    lines: collections.deque[str] = field(default_factory=collections.deque)

    def drain(self) -> None:
        """Keep reading stdout so the process never blocks on a full pipe."""
        self.lines = drain(self.proc)


async def start_instance(
    tmp_path: Path, name: str, mmsc_port: int, dsn: str, extra: str = ""
) -> Instance:
    """`mm7 serve` named ``name`` on the database ``dsn``, up and announcing its addresses."""
    config = tmp_path / f"{name}.toml"
    config.write_text(
        CONFIG.format(
            mmsc_port=mmsc_port,
            tps=LINK_TPS,
            burst=LINK_BURST,
            in_flight=IN_FLIGHT,
            key=KEY,
            instance=name,
            ttl=TTL,
            extra=extra,
        )
    )
    env = {**clean_env(), "MM7_TEST_DSN": dsn, "MM7_TEST_HOOK_SECRET": "hook-secret-0123456789"}
    stderr = (tmp_path / f"{name}.stderr").open("w")
    # --lease-ttl: the work items' leases too (by default longer than the worst submit)
    argv = ["serve", "--config", str(config), "--poll-interval", "0.2", "--lease-ttl", str(TTL)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mm7.cli.main", *argv],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    stderr.close()
    instance = Instance(name, proc)
    api = await asyncio.wait_for(
        asyncio.to_thread(read_until, proc, r"sending API on (\S+)/v1/messages"), 60
    )
    inbound = await asyncio.wait_for(
        asyncio.to_thread(read_until, proc, r"inbound MM7 endpoint on (\S+)"), 10
    )
    instance.api, instance.inbound = api[1], inbound[1]
    instance.drain()
    return instance


@contextlib.asynccontextmanager
async def cluster(
    tmp_path: Path, mmsc_port: int, dsn: str, extra: str = ""
) -> AsyncIterator[list[Instance]]:
    """Three instances on ``dsn``: the first started alone (it claims every named lease), then
    the other two together; all killed at the end."""
    instances: list[Instance] = []
    try:
        instances.append(await start_instance(tmp_path, "gw-1", mmsc_port, dsn, extra))
        instances += await asyncio.gather(
            *(
                start_instance(tmp_path, f"gw-{n}", mmsc_port, dsn, extra)
                for n in range(2, INSTANCES + 1)
            )
        )
        yield instances
    finally:
        for instance in instances:
            if instance.proc.poll() is None:
                instance.proc.kill()
            instance.proc.wait()


@dataclass
class Lease:
    owner: str
    token: int
    #: epoch milliseconds of the store's clock
    expires_at: int


class Database:
    """Reads behind the instances' backs: named leases, work items leased, reports kept."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def lease(self, name: str) -> Lease | None:
        row = await self.conn.fetchrow(
            "SELECT owner, token, expires_at FROM leases WHERE name = $1", name
        )
        return None if row is None else Lease(row[0], int(row[1]), int(row[2]))

    async def leased_recipients(self, owner: str) -> set[str]:
        """TransactionIDs of the recipients ``owner`` holds leased and has not finished."""
        rows = await self.conn.fetch(
            "SELECT transaction_id FROM recipients WHERE status = 'queued' AND lease_owner = $1",
            owner,
        )
        return {row[0] for row in rows}

    async def leased_events(self, owner: str) -> set[str]:
        """Idempotency keys of the relay events ``owner`` holds leased and has not finished."""
        rows = await self.conn.fetch(
            "SELECT idempotency_key FROM relay_outbox WHERE status = 'pending'"
            " AND lease_owner = $1",
            owner,
        )
        return {row[0] for row in rows}

    async def unknown_reports(self) -> set[str]:
        """MM7 MessageIDs of the delivery reports kept without a message."""
        rows = await self.conn.fetch(
            "SELECT mm7_message_id FROM delivery_reports WHERE message_id IS NULL"
        )
        return {row[0] for row in rows}


@contextlib.asynccontextmanager
async def database(dsn: str) -> AsyncIterator[Database]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        yield Database(conn)
    finally:
        await conn.close()


async def holder(db: Database, lease: str, instances: list[Instance]) -> Instance:
    """The instance holding ``lease`` now."""
    got = await db.lease(lease)
    assert got is not None, f"nobody holds {lease}"
    (owner,) = [i for i in instances if i.name == got.owner]
    return owner


async def takeover(db: Database, lease: str, dead: str) -> tuple[Lease, Lease]:
    """Wait for another owner of ``lease`` than ``dead``; (the dead one's last lease, the first
    seen of the new owner)."""
    last = await db.lease(lease)
    assert last is not None and last.owner == dead, last

    async def taken() -> Lease | None:
        now = await db.lease(lease)
        assert now is not None
        if now.owner == dead:
            nonlocal last
            last = now
            return None
        return now

    new: Lease = await wait_for(taken, deadline=30)
    return last, new


def check_takeover(last: Lease, new: Lease, killed_at_ms: int) -> None:
    """The lease changed hands only after it expired in the store, within the claim pace (a
    tenth of the TTL) after that, and within the TTL (plus that pace) of the kill."""
    taken_at = new.expires_at - TTL * 1000  # the new owner's claim, on the store's clock
    assert new.token == last.token + 1
    assert taken_at >= last.expires_at, (taken_at, last)
    assert taken_at - last.expires_at <= (TTL * POLL + SLACK) * 1000, (taken_at, last)
    assert taken_at - killed_at_ms <= (TTL * (1 + POLL) + SLACK) * 1000, (taken_at, killed_at_ms)


def epoch_ms() -> int:
    return time.time_ns() // 1_000_000


# --------------------------------------------------------------------------- the simulators


def simulator_app(vasp_url: str | None, *, reports: bool, latency: float = 0.0) -> web.Application:
    """The strict-3gpp simulator reporting to ``vasp_url`` at once (``reports``), answering
    each SubmitReq ``latency`` seconds late (so that submits are on the wire at a kill)."""
    faults = {"rates": [{"kind": "latency", "delay": latency, "rate": 1.0}]} if latency else {}
    return create_simulator_app(
        SimulatorConfig(
            persona=load_persona("strict-3gpp"),
            vasp_url=vasp_url,
            faults=faults,
            dlr=DlrPlan(when="always" if reports else "never", delay=0.0, final_delay=0.0),
            retry=RetryPolicy(max_attempts=3, backoff=0.0, timeout=5.0),
            ui_path=None,
            max_exchanges=50_000,
            seed=3,
        )
    )


@contextlib.asynccontextmanager
async def serving(app: web.Application, sock: Any) -> AsyncIterator[None]:
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        yield
    finally:
        await runner.cleanup()


def submit_arrivals(app: web.Application) -> list[tuple[datetime, str]]:
    """When each SubmitReq reached the simulator (its record time minus its handling time),
    with its TransactionID, in order."""
    return sorted(
        (e.at - timedelta(milliseconds=e.duration_ms), e.transaction_id)
        for e in app[SIMULATOR].store.exchanges
        if e.direction == "in" and e.operation == "SubmitReq"
    )


def busiest_second(times: list[datetime]) -> int:
    """The most of ``times`` (sorted) within any one second."""
    best = 0
    first = 0
    for last, at in enumerate(times):
        while at - times[first] >= timedelta(seconds=1):
            first += 1
        best = max(best, last - first + 1)
    return best


# --------------------------------------------------------------------------- MT


@dataclass
class Poster:
    """Posts messages round robin over the live APIs at ``POST_RATE``; a POST that fails (the
    instance died) is retried on the next live one with the same Idempotency-Key."""

    instances: list[Instance]
    dead: set[str] = field(default_factory=set)
    acknowledged: dict[str, str] = field(default_factory=dict)  # id -> the instance answering
    retried: int = 0

    async def run(self, http: aiohttp.ClientSession, count: int) -> None:
        """``count`` POSTs started at ``POST_RATE`` (each its own task: a slow answer does not
        slow the rate offered)."""
        start = time.monotonic()
        posts = []
        for n in range(count):
            await asyncio.sleep(max(0.0, start + n / POST_RATE - time.monotonic()))
            posts.append(asyncio.create_task(self.post(http, n)))
        await asyncio.gather(*posts)

    async def post(self, http: aiohttp.ClientSession, n: int) -> None:
        body = message(to=f"+1202555{n:04d}", idempotency_key=f"cluster-{n}")
        turn = n
        while True:
            live = [i for i in self.instances if i.name not in self.dead]
            instance = live[turn % len(live)]
            try:
                async with http.post(f"{instance.api}/v1/messages", json=body) as rsp:
                    if rsp.status in (200, 202):
                        self.acknowledged[(await rsp.json())["id"]] = instance.name
                        return
                    assert rsp.status >= 500, await rsp.text()
            except (aiohttp.ClientError, TimeoutError):
                pass
            self.retried += 1
            turn += 1
            await asyncio.sleep(0.05)


async def view(http: aiohttp.ClientSession, api: str, message_id: str) -> dict[str, Any]:
    async with http.get(f"{api}/v1/messages/{message_id}") as rsp:
        assert rsp.status == 200, await rsp.text()
        result: dict[str, Any] = await rsp.json()
        return result


async def test_killing_the_link_owner_under_load_loses_nothing(tmp_path: Path) -> None:
    async with pg_database() as dsn, database(dsn) as db:
        with bound_socket() as mmsc:
            async with cluster(tmp_path, mmsc.getsockname()[1], dsn) as instances:
                owner = await holder(db, "link:main", instances)
                others = [i for i in instances if i is not owner]
                # the reports go to one survivor; the views are read on the other
                reporter, reader = others
                sim = simulator_app(reporter.inbound, reports=True, latency=SUBMIT_LATENCY)
                async with serving(sim, mmsc), aiohttp.ClientSession(headers=AUTH) as http:
                    poster = Poster(instances)
                    posting = asyncio.create_task(poster.run(http, MT_MESSAGES))

                    async def some_sent() -> bool:
                        return len(accepted(sim)) >= 40

                    await wait_for(some_sent, deadline=30)
                    owner.proc.kill()
                    killed_at = epoch_ms()
                    poster.dead.add(owner.name)
                    owner.proc.wait()
                    backlog_at_kill = len(poster.acknowledged) - len(accepted(sim))
                    sent_by_dead = {tid for _, tid in submit_arrivals(sim)}
                    await asyncio.sleep(0.3)  # a commit sent before the kill still lands
                    in_flight = await db.leased_recipients(f"{owner.name}/main")
                    last, new = await takeover(db, "link:main", owner.name)
                    await posting
                    wanted = {f"{i}.0" for i in poster.acknowledged}

                    async def all_accepted() -> bool:
                        return wanted <= set(accepted(sim))

                    await wait_for(all_accepted, deadline=60)
                    await sim[SIMULATOR].dlr.idle()
                    views = {i: await view(http, reader.api, i) for i in poster.acknowledged}
                unknown = await db.unknown_reports()

        assert backlog_at_kill > 0  # killed under load: messages were waiting
        check_takeover(last, new, killed_at)
        assert new.owner in {i.name for i in others}

        counts = accepted(sim)
        # every acknowledged message accepted by the MMSC, nothing else
        assert set(counts) == wanted, (len(wanted), len(counts))
        # a recipient twice only if it was in flight at the kill: leased by the dead instance
        # and its SubmitReq at the MMSC before the new owner took the link
        arrivals = submit_arrivals(sim)
        handover = datetime.fromtimestamp(new.expires_at / 1000 - TTL, tz=UTC)
        on_wire = in_flight & {tid for at, tid in arrivals if at < handover}
        twice = {tid for tid, n in counts.items() if n > 1}
        assert twice <= on_wire, (twice, in_flight, on_wire)
        assert all(n <= 2 for n in counts.values())
        assert len(in_flight) <= IN_FLIGHT
        # the new owner sent what was left
        assert len(arrivals) > len(sent_by_dead)
        # the link's TPS held at the MMSC across the handover
        busiest = busiest_second([at for at, _ in arrivals])
        assert busiest <= LINK_TPS + LINK_BURST

        # the reports of what the dead instance sent, received by `reporter`, read on `reader`
        statuses = collections.Counter(v["recipients"][0]["status"] for v in views.values())
        assert set(statuses) <= {"submitted", "delivered"}, statuses
        by_dead = {i: v for i, v in views.items() if f"{i}.0" in sent_by_dead}
        assert by_dead
        raced = {  # a report read before the submit's outcome committed: kept as unknown
            i
            for i, v in by_dead.items()
            if v["recipients"][0]["status"] == "submitted"
            and v["recipients"][0]["mm7_message_id"] in unknown
        }
        delivered = {i for i, v in by_dead.items() if v["recipients"][0]["status"] == "delivered"}
        assert delivered | raced == set(by_dead), set(by_dead) - delivered - raced
        assert delivered, raced
        print(
            f"\nMT: {len(poster.acknowledged)} acknowledged ({poster.retried} POSTs retried),"
            f" {len(by_dead)} sent by the dead instance, {len(delivered)} of them delivered,"
            f" {len(raced)} reports raced the submit's commit (kept unknown); leased by the dead"
            f" instance {len(in_flight)}, of them at the MMSC {len(on_wire)}, accepted twice"
            f" {len(twice)}; busiest second {busiest} SubmitReqs; takeover"
            f" {new.expires_at - TTL * 1000 - last.expires_at:.0f} ms after the expiry;"
            f" statuses {dict(statuses)}"
        )


# --------------------------------------------------------------------------- MO


@dataclass
class Hook:
    """The application's hook: slow, counting each Idempotency-Key and keeping each MO's text."""

    delay: float = HOOK_DELAY
    per_key: collections.Counter[str] = field(default_factory=collections.Counter)
    texts: dict[str, str] = field(default_factory=dict)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        event = await request.json()
        await asyncio.sleep(self.delay)
        key = request.headers["Idempotency-Key"]
        self.per_key[key] += 1
        if event.get("type") == "mo":
            self.texts[key] = event["text"]
        return web.Response(status=204)


async def originate(http: aiohttp.ClientSession, control: str, n: int) -> bool:
    """One MO (a JPEG and a unique text) through a simulator; whether the VASP answered 1000."""
    body = {
        "to": "12345",
        "from": f"+1555000{n:04d}",
        "text": f"mo number {n}",
        "media": [{"data": base64.b64encode(jpeg()).decode(), "filename": "p.jpg"}],
    }
    async with http.post(f"{control}/mo", json=body) as rsp:
        assert rsp.status == 200, await rsp.text()
        answer = await rsp.json()
    return bool(answer["status_code"] == 1000)


@contextlib.contextmanager
def sockets(n: int) -> Iterator[list[Any]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(bound_socket()) for _ in range(n)]


async def test_killing_the_relay_holder_loses_no_mo(tmp_path: Path) -> None:
    hook = Hook()
    async with pg_database() as dsn, database(dsn) as db:
        with bound_socket() as hook_sock, bound_socket() as unused, sockets(INSTANCES) as socks:
            hook_sock.listen()
            extra = RELAY.format(hook_port=hook_sock.getsockname()[1])
            # the link points at a port nobody listens on: this test is about the MO path only
            async with (
                serving(hook.app(), hook_sock),
                cluster(tmp_path, unused.getsockname()[1], dsn, extra) as instances,
                contextlib.AsyncExitStack() as sims,
            ):
                relaying = await holder(db, "relay", instances)
                # one simulator per instance, each originating into that instance's endpoint
                controls: dict[str, str] = {}
                for instance, sock in zip(instances, socks, strict=True):
                    app = simulator_app(instance.inbound, reports=False)
                    await sims.enter_async_context(serving(app, sock))
                    controls[instance.name] = f"http://127.0.0.1:{sock.getsockname()[1]}/control"
                dead: set[str] = set()
                answered: set[str] = set()

                async with aiohttp.ClientSession() as http:

                    async def originator(start: int) -> None:
                        for n in range(start, MOS, INSTANCES):
                            live = [i.name for i in instances if i.name not in dead]
                            name = live[n % len(live)]
                            if await originate(http, controls[name], n):
                                answered.add(f"mo number {n}")
                            await asyncio.sleep(0.05)

                    originating = asyncio.gather(*(originator(s) for s in range(INSTANCES)))

                    async def some_relayed() -> bool:
                        return len(hook.texts) >= 10

                    await wait_for(some_relayed, deadline=30)
                    dead.add(relaying.name)
                    relaying.proc.kill()
                    killed_at = epoch_ms()
                    relaying.proc.wait()
                    relayed_at_kill = len(hook.texts)
                    await asyncio.sleep(0.3)
                    in_flight = await db.leased_events(f"{relaying.name}/relay")
                    last, new = await takeover(db, "relay", relaying.name)
                    await originating

                    async def all_relayed() -> bool:
                        return answered <= set(hook.texts.values())

                    await wait_for(all_relayed, deadline=60)

        check_takeover(last, new, killed_at)
        assert relayed_at_kill < len(answered)  # killed while relaying
        # the MOs the dead instance took before the kill (answered 1000) are in `answered`;
        # those sent to it afterwards were not answered 1000 and need not arrive
        assert len(answered) >= MOS - INSTANCES
        assert answered <= set(hook.texts.values())
        twice = {key for key, n in hook.per_key.items() if n > 1}
        assert twice <= in_flight, (twice, in_flight)
        print(
            f"\nMO: {len(answered)} answered 1000, all relayed; {relayed_at_kill} relayed before"
            f" the kill; in flight at the kill {len(in_flight)}, relayed twice {len(twice)};"
            f" takeover {new.expires_at - TTL * 1000 - last.expires_at:.0f} ms after the expiry"
        )
