"""The relay worker (mm7.service.relay.worker) over a real SQLite outbox and real hooks.

The application is a small aiohttp server on loopback that verifies ``X-MM7-Signature`` with
``mm7.service.relay.signing.verify`` and records every request. Time is a ManualClock shared by
the store and the worker's sender: retries become due by moving it, never by sleeping. The
worker is driven one pass at a time (``run_once`` then ``idle``).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from PIL import Image

from mm7.service.config.settings import RelayHook, RelayRoute, RelaySettings
from mm7.service.relay.media_urls import MediaUrls, add_media_route
from mm7.service.relay.signing import verify
from mm7.service.relay.worker import RelayWorker
from mm7.service.store import (
    ManualClock,
    MediaPart,
    MoRelay,
    NewMessage,
    NewMo,
    RelayRecord,
    RelayStatus,
    SqliteStore,
    normalize_address,
)
from mm7.transport.link import Secret

Server = Callable[..., Awaitable[Any]]
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LINK = "carrier"
HOOK_SECRET = "hook-secret-1"
STATUS_SECRET = "status-secret-2"
API_SECRET = "api-key-secret-3"
MAX_AGE = 30.0


def image(fmt: str, color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 18), color).save(buffer, fmt)
    return buffer.getvalue()


JPEG = image("JPEG", (250, 120, 0))
PNG = image("PNG", (0, 120, 250))


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    signed_by: str | None


@dataclass
class Receiver:
    """The application: verifies signatures, answers statuses from a script per path."""

    clock: ManualClock
    url: str = ""
    seen: list[Request] = field(default_factory=list)
    script: dict[str, list[int]] = field(default_factory=dict)
    down: bool = False
    in_flight: int = 0
    max_in_flight: int = 0
    gate: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(0))
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def keys(self) -> Counter[str]:
        return Counter(r.headers["Idempotency-Key"] for r in self.seen)

    async def record(self, request: web.Request) -> None:
        raw = await request.read()
        header = request.headers.get("X-MM7-Signature", "")
        now = self.clock.now().timestamp()
        signed_by = next(
            (
                name
                for name, secret in (
                    ("hook", HOOK_SECRET),
                    ("status", STATUS_SECRET),
                    ("api", API_SECRET),
                )  # fmt: skip
                if verify(secret.encode(), header, raw, now=now)
            ),
            None,
        )
        self.seen.append(Request(request.path, dict(request.headers), json.loads(raw), signed_by))
        async with self.changed:
            self.changed.notify_all()

    async def scripted(self, request: web.Request) -> web.Response:
        await self.record(request)
        if self.down:
            return web.Response(status=503)
        script = self.script.get(request.path, [])
        return web.Response(status=script.pop(0) if script else 200)

    async def gated(self, request: web.Request) -> web.Response:
        await self.record(request)
        async with self.changed:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.changed.notify_all()
        await self.gate.acquire()
        async with self.changed:
            self.in_flight -= 1
            self.changed.notify_all()
        return web.Response(status=204)

    async def until(self, predicate: Callable[[], bool]) -> None:
        async def wait() -> None:
            async with self.changed:
                await self.changed.wait_for(predicate)

        await asyncio.wait_for(wait(), 10)  # a safety net only

    def app(self) -> web.Application:
        app = web.Application()
        for path in ("/hook", "/status", "/cb"):
            app.router.add_post(path, self.scripted)
        app.router.add_post("/gated", self.gated)
        return app


@dataclass
class Rig:
    store: SqliteStore
    clock: ManualClock
    rx: Receiver
    media_base: str
    urls: MediaUrls
    outcomes: list[tuple[str, str]]
    workers: list[RelayWorker] = field(default_factory=list)

    def settings(self, *, ordered: bool = False, concurrency: int = 4) -> RelaySettings:
        return RelaySettings(
            hooks=(
                RelayHook(
                    name="app",
                    url=self.rx.url + "/hook",
                    secret=Secret(HOOK_SECRET),
                    ordered=ordered,
                ),  # fmt: skip
                RelayHook(
                    name="status", url=self.rx.url + "/status", secret=Secret(STATUS_SECRET)
                ),  # fmt: skip
                RelayHook(
                    name="gated",
                    url=self.rx.url + "/gated",
                    secret=Secret(HOOK_SECRET),
                    concurrency=concurrency,
                ),  # fmt: skip
            ),
            max_age=MAX_AGE,
            initial_backoff=2.0,
            max_backoff=8.0,
        )

    def worker(self, settings: RelaySettings | None = None) -> RelayWorker:
        worker = RelayWorker(
            self.store,
            settings if settings is not None else self.settings(),
            api_key_secret={"dev": Secret(API_SECRET)}.get,
            allows_private=lambda name: name == "dev",  # its callbacks go to 127.0.0.1
            media_urls=self.urls,
            on_outcome=lambda hook, outcome: self.outcomes.append((hook, outcome)),
        )
        worker.sender.clock = self.clock
        worker.others_interval = 0.0  # look for events of removed hooks at every pass
        self.workers.append(worker)
        return worker

    async def mo(
        self,
        sender: str = "+15550001",
        *,
        hook: str = "app",
        media: str = "url",
        ordered: bool = False,
        text: str = "hi",
    ) -> str:
        relay = MoRelay(
            hook=hook,
            route="r1",
            media="inline" if media == "inline" else "url",
            event={"type": "mo", "from": sender, "text": text},
            sender_key=normalize_address(sender) if ordered else None,
        )
        result = await self.store.store_mo(
            NewMo(
                link=LINK,
                transaction_id=None,
                mm7_message_id=None,
                fields={"from": sender, "text": text},
                parts=(
                    MediaPart(
                        "image/jpeg", data=JPEG, content_id="photo", content_location="photo.jpg"
                    ),
                    MediaPart(
                        "text/plain; charset=utf-8",
                        data=text.encode(),
                        content_id="t1",
                        content_location="t1.txt",
                    ),
                    MediaPart("image/png", data=PNG, content_id="logo"),
                ),  # fmt: skip
                relay=relay,
            )
        )
        return result.mo_id

    async def event_of(self, mo_id: str) -> RelayRecord:
        for record in await self.store.relay_events():
            if record.source_id == mo_id:
                return record
        raise AssertionError(f"no relay event for {mo_id}")

    async def run(self, worker: RelayWorker) -> int:
        """One pass over what is due now; how many were leased."""
        count = await worker.run_once()
        await worker.idle()
        return count

    async def settle(self, worker: RelayWorker, limit: int = 200) -> None:
        """Pass after pass, moving the clock to the next retry, until nothing is pending."""
        for _ in range(limit):
            leased = await self.run(worker)
            pending = await self.store.relay_events(status=RelayStatus.PENDING)
            if not pending:
                return
            if leased == 0:
                later = [r.next_attempt_at for r in pending if r.next_attempt_at > self.clock.now()]
                assert later, "pending events that are due but never leased"
                self.clock.set(min(later))
        raise AssertionError("the outbox did not settle")


@pytest.fixture
async def rig(aiohttp_server: Server, tmp_path: Path) -> AsyncIterator[Rig]:
    clock = ManualClock(START)
    store = await SqliteStore.open(tmp_path / "gw.db", clock=clock)
    rx = Receiver(clock)
    server = await aiohttp_server(rx.app())
    rx.url = str(server.make_url("")).rstrip("/")
    urls = MediaUrls(b"media-key", "http://placeholder", 3600)
    media_app = web.Application()
    add_media_route(media_app, urls, store)
    media = await aiohttp_server(media_app)
    urls.base = str(media.make_url("")).rstrip("/")
    the_rig = Rig(store, clock, rx, urls.base, urls, [])
    try:
        yield the_rig
    finally:
        for _ in range(100):
            rx.gate.release()
        for worker in the_rig.workers:
            await worker.stop(grace=5)
        await store.close()


async def test_an_mo_is_delivered_once_signed(rig: Rig) -> None:
    mo_id = await rig.mo()
    worker = rig.worker()
    assert await rig.run(worker) == 1
    [seen] = rig.rx.seen
    assert seen.path == "/hook" and seen.signed_by == "hook"
    assert seen.headers["Idempotency-Key"] == f"mo:{mo_id}"
    assert seen.headers["X-MM7-Event-Type"] == "mo"
    assert seen.body["id"] == mo_id and seen.body["from"] == "+15550001"
    assert [m["index"] for m in seen.body["media"]] == [0, 1, 2]
    assert rig.outcomes == [("app", "delivered")]
    record = await rig.event_of(mo_id)
    assert record.status is RelayStatus.DELIVERED and record.attempts == 1
    assert record.last_http_status == 200 and record.first_attempt_at == START
    stored = await rig.store.get_mo(mo_id)
    assert stored is not None and stored.status == "relayed"
    rig.clock.advance(timedelta(hours=1))
    assert await rig.run(worker) == 0
    assert len(rig.rx.seen) == 1


async def test_a_503_then_200_is_two_attempts_with_one_key(rig: Rig) -> None:
    mo_id = await rig.mo()
    rig.rx.script["/hook"] = [503]
    worker = rig.worker()
    assert await rig.run(worker) == 1
    record = await rig.event_of(mo_id)
    assert record.status is RelayStatus.PENDING and record.last_http_status == 503
    assert record.last_error == "HTTP 503" and record.first_attempt_at == START
    assert START <= record.next_attempt_at <= START + timedelta(seconds=2)
    if record.next_attempt_at > START:
        assert await rig.run(worker) == 0  # not due yet
    rig.clock.set(record.next_attempt_at + timedelta(seconds=1))
    assert await rig.run(worker) == 1
    assert [r.signed_by for r in rig.rx.seen] == ["hook", "hook"]
    assert rig.rx.keys() == Counter({f"mo:{mo_id}": 2})
    # each attempt is signed at its own time
    stamps = [r.headers["X-MM7-Signature"].split(",")[0] for r in rig.rx.seen]
    assert stamps[0] != stamps[1]
    record = await rig.event_of(mo_id)
    assert record.status is RelayStatus.DELIVERED and record.attempts == 2
    assert record.first_attempt_at == START
    assert rig.outcomes == [("app", "retry"), ("app", "delivered")]


async def test_a_hook_down_past_max_age_makes_a_dead_letter_that_can_be_requeued(
    rig: Rig,
) -> None:
    mo_id = await rig.mo()
    rig.rx.down = True
    worker = rig.worker()
    await rig.settle(worker)
    record = await rig.event_of(mo_id)
    assert record.status is RelayStatus.DEAD and record.last_error == "HTTP 503"
    assert record.attempts == len(rig.rx.seen) >= 2
    assert rig.clock.now() >= START + timedelta(seconds=MAX_AGE)
    # the last try is at the deadline at the latest
    assert rig.clock.now() <= START + timedelta(seconds=MAX_AGE + 1)
    assert rig.outcomes[-1] == ("app", "dead")
    assert {o for _, o in rig.outcomes[:-1]} == {"retry"}
    stored = await rig.store.get_mo(mo_id)
    assert stored is not None and stored.status == "dead"
    rig.clock.advance(timedelta(days=1))
    attempts = len(rig.rx.seen)
    assert await rig.run(worker) == 0 and len(rig.rx.seen) == attempts

    rig.rx.down = False
    assert await rig.store.requeue_relay() == 1
    assert await rig.run(worker) == 1
    record = await rig.event_of(mo_id)
    assert record.status is RelayStatus.DELIVERED and record.attempts == 1
    assert rig.rx.keys() == Counter({f"mo:{mo_id}": attempts + 1})
    stored = await rig.store.get_mo(mo_id)
    assert stored is not None and stored.status == "relayed"


async def test_media_urls_fetch_the_exact_bytes(rig: Rig) -> None:
    mo_id = await rig.mo(text="héllo")
    assert await rig.run(rig.worker()) == 1
    [seen] = rig.rx.seen
    media = seen.body["media"]
    assert [(m["content_type"], m["content_id"], m["filename"]) for m in media] == [
        ("image/jpeg", "photo", "photo.jpg"),
        ("text/plain; charset=utf-8", "t1", "t1.txt"),
        ("image/png", "logo", None),
    ]
    assert all("data_base64" not in m for m in media)
    expected = [JPEG, "héllo".encode(), PNG]
    assert [m["size"] for m in media] == [len(b) for b in expected]
    async with aiohttp.ClientSession() as session:
        for entry, data in zip(media, expected, strict=True):
            assert entry["url"].startswith(f"{rig.media_base}/media/{mo_id}/{entry['index']}?")
            async with session.get(entry["url"]) as response:
                assert response.status == 200
                assert await response.read() == data
                assert response.content_type == entry["content_type"].split(";")[0]


async def test_inline_media_carry_the_bytes(rig: Rig) -> None:
    await rig.mo(media="inline")
    assert await rig.run(rig.worker()) == 1
    [seen] = rig.rx.seen
    media = seen.body["media"]
    assert [base64.b64decode(m["data_base64"]) for m in media] == [JPEG, b"hi", PNG]
    assert all("url" not in m for m in media)
    assert seen.signed_by == "hook"


async def message(rig: Rig, *, callback: str | None, api_key: str = "dev") -> str:
    result = await rig.store.enqueue_message(
        NewMessage(link=LINK, fields={"api_key": api_key}, callback_url=callback),
        ["+15551230001"],
    )
    for item in await rig.store.lease(LINK, "dispatcher", 10, timedelta(seconds=60)):
        assert await rig.store.complete(item, "MM7-1", 1000, "Success")
    return result.message_id


async def test_callbacks_are_signed_with_the_api_key_secret(rig: Rig) -> None:
    mid = await message(rig, callback=rig.rx.url + "/cb")
    assert await rig.run(rig.worker()) == 1
    [seen] = rig.rx.seen
    assert seen.path == "/cb" and seen.signed_by == "api"
    assert seen.headers["X-MM7-Event-Type"] == "status"
    assert seen.body["message_id"] == mid and seen.body["status"] == "submitted"
    host = rig.rx.url.split("//", 1)[1].split(":", 1)[0]
    assert rig.outcomes == [(f"callback:{host}", "delivered")]


async def test_a_callback_whose_api_key_is_gone_is_retried_not_sent(rig: Rig) -> None:
    await message(rig, callback=rig.rx.url + "/cb", api_key="revoked")
    assert await rig.run(rig.worker()) == 1
    assert rig.rx.seen == []
    [record] = await rig.store.relay_events()
    assert record.status is RelayStatus.PENDING and record.first_attempt_at == START
    assert record.last_error is not None and "'revoked'" in record.last_error


async def test_status_events_without_a_callback_go_to_the_status_hook_or_nowhere(
    rig: Rig, tmp_path: Path
) -> None:
    store = await SqliteStore.open(tmp_path / "all.db", clock=rig.clock, relay_all_statuses=True)
    rig.store, own = store, rig.store
    try:
        await message(rig, callback=None)
        # no status hook configured: nowhere to send it
        assert await rig.run(rig.worker()) == 1
        [record] = await store.relay_events()
        assert record.status is RelayStatus.SKIPPED and rig.rx.seen == []
        # with the default route's status hook
        mid = await message(rig, callback=None)
        base = rig.settings()
        settings = RelaySettings(
            hooks=base.hooks,
            default_route=RelayRoute(name="default", hook="app", status_hook="status"),
            max_age=MAX_AGE,
        )
        assert await rig.run(rig.worker(settings)) == 1
        [seen] = rig.rx.seen
        assert seen.path == "/status" and seen.signed_by == "status"
        assert seen.body["message_id"] == mid
        assert rig.outcomes == [("none", "skipped"), ("status", "delivered")]
        # the event names the hook it went to (mm7 relay list, GET /v1/relay/events)
        sent = [r for r in await store.relay_events(limit=10) if r.source_id == mid]
        assert [(r.status, r.hook) for r in sent] == [(RelayStatus.DELIVERED, "status")]
        assert (await store.relay_events(hook="status"))[0].source_id == mid
    finally:
        for worker in rig.workers:
            await worker.stop()
        rig.workers.clear()
        rig.store = own
        await store.close()


async def test_an_event_whose_hook_was_removed_is_retried_then_dead(rig: Rig) -> None:
    mo_id = await rig.mo(hook="removed")
    worker = rig.worker()
    assert await rig.run(worker) == 1
    record = await rig.event_of(mo_id)
    assert record.status is RelayStatus.PENDING and record.first_attempt_at == START
    assert record.last_error == "no hook named 'removed' in the configuration"
    await rig.settle(worker)
    record = await rig.event_of(mo_id)
    assert record.status is RelayStatus.DEAD and record.attempts >= 2
    assert rig.rx.seen == []
    assert rig.outcomes[-1] == ("none", "dead")
    # kept: back in a configuration that has the hook, it is delivered after a requeue
    assert await rig.store.requeue_relay([record.id]) == 1
    base = rig.settings()
    restored = RelaySettings(
        hooks=(
            *base.hooks,
            RelayHook(name="removed", url=rig.rx.url + "/hook", secret=Secret(HOOK_SECRET)),
        ),  # fmt: skip
    )
    assert await rig.run(rig.worker(restored)) == 1
    assert [r.body["id"] for r in rig.rx.seen] == [mo_id]


async def test_a_hooks_concurrency_is_never_exceeded(rig: Rig) -> None:
    ids = [await rig.mo(f"+1555000{i}", hook="gated") for i in range(6)]
    worker = rig.worker(rig.settings(concurrency=2))
    # only what the hook can take now is leased: nothing waits, leased, behind its limit
    assert await worker.run_once() == 2
    await rig.rx.until(lambda: rig.rx.in_flight == 2)
    assert await worker.run_once() == 0
    assert len(await rig.store.relay_events(status=RelayStatus.PENDING)) == 6
    delivered = 0
    while delivered < 6:
        rig.rx.gate.release()
        await rig.rx.until(lambda n=delivered: len(rig.rx.seen) > n + 1 or rig.rx.in_flight < 2)
        await worker.idle(timeout=0.05)
        delivered = (await rig.store.relay_counts()).get("delivered", 0)
        await worker.run_once()  # a slot is free: the next one goes
    await worker.idle()
    assert rig.rx.max_in_flight == 2
    assert sorted(r.body["id"] for r in rig.rx.seen) == sorted(ids)
    assert [o for _, o in rig.outcomes] == ["delivered"] * 6


async def test_an_ordered_hook_gets_a_senders_events_in_order(rig: Rig) -> None:
    a = [await rig.mo("+15550001", ordered=True, text=f"a{i}") for i in range(3)]
    b = [await rig.mo("+15550002", ordered=True, text=f"b{i}") for i in range(2)]
    rig.rx.script["/hook"] = [503]
    worker = rig.worker(rig.settings(ordered=True))
    await rig.settle(worker)
    of_a = [r.body["id"] for r in rig.rx.seen if r.body["from"] == "+15550001"]
    of_b = [r.body["id"] for r in rig.rx.seen if r.body["from"] == "+15550002"]
    assert of_a[0] == a[0]
    # whichever got the 503 was sent again before anything later of its sender
    assert [x for i, x in enumerate(of_a) if i == 0 or x != of_a[i - 1]] == a
    assert [x for i, x in enumerate(of_b) if i == 0 or x != of_b[i - 1]] == b
    assert len(rig.rx.seen) == 6
    assert await rig.store.relay_counts() == {"delivered": 5}


async def test_stop_gives_the_leases_of_unfinished_deliveries_back(rig: Rig) -> None:
    mo_id = await rig.mo(hook="gated")
    worker = rig.worker()
    assert await worker.run_once() == 1
    await rig.rx.until(lambda: rig.rx.in_flight == 1)
    await worker.stop(grace=0)
    # due again at once for the next process, the unfinished attempt not counted
    [item] = await rig.store.lease_relay("next", 10, timedelta(seconds=60))
    assert item.source_id == mo_id and item.attempt == 1


async def test_the_background_loop_delivers_on_wake(rig: Rig) -> None:
    worker = rig.worker()
    await worker.start()
    mo_id = await rig.mo()
    worker.wake()
    await rig.rx.until(lambda: bool(rig.rx.seen))
    await worker.idle()
    assert [r.body["id"] for r in rig.rx.seen] == [mo_id]
    assert (await rig.event_of(mo_id)).status is RelayStatus.DELIVERED


async def test_a_full_hook_leaves_the_next_event_unleased_for_anyone(rig: Rig) -> None:
    """The second event is not leased while the first holds the hook's only slot, so it can
    neither outlive a lease waiting nor be sent twice; it goes once the slot is free."""
    first = await rig.mo("+15550001", hook="gated")
    second = await rig.mo("+15550002", hook="gated")
    worker = RelayWorker(rig.store, rig.settings(concurrency=1), lease_ttl=timedelta(seconds=60))
    worker.sender.clock = rig.clock
    rig.workers.append(worker)
    assert await worker.run_once() == 1
    await rig.rx.until(lambda: rig.rx.in_flight == 1)
    assert await worker.run_once() == 0  # the hook is full
    (waiting,) = [
        r for r in await rig.store.relay_events(status=RelayStatus.PENDING) if r.attempts == 0
    ]
    assert waiting.source_id == second
    rig.rx.gate.release()
    await worker.idle()
    assert await worker.run_once() == 1
    rig.rx.gate.release()
    await worker.idle()
    assert await rig.store.relay_counts() == {"delivered": 2}
    assert rig.rx.keys() == {f"mo:{first}": 1, f"mo:{second}": 1}
    assert not worker._in_flight


async def test_only_the_instance_holding_the_relay_lease_relays(rig: Rig) -> None:
    """Two instances' workers on one outbox: the one that is not the cluster's relay leases
    nothing; events it leased just as it stopped being the relay go back unattempted."""
    mo_id = await rig.mo()
    relay = {"a": False, "b": True}
    a, b = rig.worker(), rig.worker()
    a.may_lease = lambda: relay["a"]
    b.may_lease = lambda: relay["b"]
    assert await rig.run(a) == 0
    assert (await rig.event_of(mo_id)).attempts == 0 and rig.rx.seen == []

    answers = iter([True, False])  # the relay when the lease call starts, not when it returns
    b.may_lease = lambda: next(answers)
    assert await rig.run(b) == 0
    record = await rig.event_of(mo_id)
    assert record.status is RelayStatus.PENDING and record.attempts == 0 and rig.rx.seen == []

    relay["a"] = True  # a took the relay lease over
    assert await rig.run(a) == 1
    assert (await rig.event_of(mo_id)).status is RelayStatus.DELIVERED
    assert len(rig.rx.seen) == 1


async def test_an_outcome_is_recorded_with_the_next_lease(rig: Rig) -> None:
    """One write per round: the first attempt's outcome waits for the second lease and goes
    into its transaction (or out by itself after outcome_delay; idle flushes it here)."""
    first = await rig.mo("+15550001")
    worker = rig.worker()
    assert await worker.run_once() == 1
    await rig.rx.until(lambda: len(rig.rx.seen) == 1)
    while worker._in_flight:
        await asyncio.sleep(0.01)
    assert (await rig.event_of(first)).status is RelayStatus.PENDING  # not recorded yet
    second = await rig.mo("+15550002")
    writes = rig.store.stats().writes
    assert await worker.run_once() == 1
    assert rig.store.stats().writes == writes + 1  # the outcome and the lease: one write
    assert (await rig.event_of(first)).status is RelayStatus.DELIVERED
    await worker.idle()
    assert (await rig.event_of(second)).status is RelayStatus.DELIVERED
    assert rig.rx.keys() == {f"mo:{first}": 1, f"mo:{second}": 1}


async def test_outcomes_whose_write_failed_are_recorded_by_the_next(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    mo_id = await rig.mo()
    worker = rig.worker()
    assert await worker.run_once() == 1
    while worker._in_flight:
        await asyncio.sleep(0.01)
    lease = rig.store.lease_relay

    async def failing(*args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(rig.store, "lease_relay", lease)
        raise RuntimeError("the store is away")

    monkeypatch.setattr(rig.store, "lease_relay", failing)
    with pytest.raises(RuntimeError):
        await worker.run_once()
    assert (await rig.event_of(mo_id)).status is RelayStatus.PENDING
    assert await worker.run_once() == 0  # kept, recorded now; nothing due to lease
    record = await rig.event_of(mo_id)
    assert record.status is RelayStatus.DELIVERED and record.attempts == 1
    assert len(rig.rx.seen) == 1


async def test_a_freed_slot_lets_the_background_loop_lease_what_waited_without_a_poll(
    rig: Rig,
) -> None:
    """An event committed while its hook was full is leased once the slot frees, by the
    outcome's own write (at most outcome_delay later), not by the next poll an hour away."""
    worker = rig.worker(rig.settings(concurrency=1))
    worker.poll_interval = 3600.0
    await worker.start()
    first = await rig.mo("+15550001", hook="gated")
    worker.wake()
    await rig.rx.until(lambda: rig.rx.in_flight == 1)
    second = await rig.mo("+15550002", hook="gated")
    worker.wake()  # leases nothing: the hook's one slot is taken
    for _ in range(50):
        await asyncio.sleep(0.01)  # let that lease run before the slot frees
    assert len(rig.rx.seen) == 1
    rig.rx.gate.release()
    await rig.rx.until(lambda: len(rig.rx.seen) == 2)
    rig.rx.gate.release()
    await rig.rx.until(lambda: rig.rx.in_flight == 0)
    assert [r.body["id"] for r in rig.rx.seen] == [first, second]


async def test_an_outcome_is_written_within_outcome_delay_while_the_loop_waits(rig: Rig) -> None:
    """The last outcome of a burst is recorded by itself after outcome_delay even when the loop
    went to sleep for a whole poll interval before the delivery ended (the hook had room, so
    the freed slot wakes nobody)."""
    worker = rig.worker(rig.settings(concurrency=4))
    worker.poll_interval = 3600.0
    await worker.start()
    mo_id = await rig.mo(hook="gated")
    worker.wake()
    await rig.rx.until(lambda: rig.rx.in_flight == 1)
    for _ in range(50):
        await asyncio.sleep(0.01)  # the loop is waiting on its poll interval now
    rig.rx.gate.release()
    for _ in range(500):
        if (await rig.event_of(mo_id)).status is RelayStatus.DELIVERED:
            break
        await asyncio.sleep(0.01)
    assert (await rig.event_of(mo_id)).status is RelayStatus.DELIVERED
