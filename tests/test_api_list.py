"""``GET /v1/messages``: filters, cursor paging, one key's messages only, 422s naming the field.

The real API app on a loopback port over a real SQLite file; messages are posted through the
API and moved through the store as the dispatcher and the inbound endpoint would (lease,
complete, delivery report), with a ManualClock so that creation times differ.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from mm7.core.status import MMStatus
from mm7.service.api.app import create_api_app
from mm7.service.config.loader import load_config
from mm7.service.store import ManualClock, SqliteStore
from tests.helpers.api import AUTH, CONFIG, KEY, OTHER_KEY, make_config, validate

OTHER = {"Authorization": f"Bearer {OTHER_KEY}"}


@dataclass
class Api:
    client: TestClient[Any, Any]
    store: SqliteStore
    clock: ManualClock

    async def send(self, to: str, headers: dict[str, str] = AUTH, **extra: Any) -> str:
        self.clock.advance(timedelta(seconds=1))
        response = await self.client.post(
            "/v1/messages", json={"to": to, "text": "hi", **extra}, headers=headers
        )
        assert response.status == 202, await response.text()
        return str((await response.json())["id"])

    async def list(self, headers: dict[str, str] = AUTH, **query: str) -> tuple[int, Any]:
        response = await self.client.get("/v1/messages", params=query, headers=headers)
        body = await response.json()
        validate("MessageList" if response.status == 200 else "Error", body)
        return response.status, body

    async def ids(self, **query: str) -> list[str]:
        status, body = await self.list(**query)
        assert status == 200, body
        return [m["id"] for m in body["messages"]]

    async def deliver(self, link: str, outcome: MMStatus | None) -> None:
        """Submit everything queued on ``link``; report ``outcome`` for each (None: none)."""
        for item in await self.store.lease(link, "w", 100, timedelta(seconds=30)):
            mm7_id = f"M-{item.recipient_id}"
            assert await self.store.complete(item, mm7_id, 1000)
            if outcome is not None:
                await self.store.record_delivery_report(link, mm7_id, item.address, outcome)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    config = make_config(tmp_path, allow_private=False)
    clock = ManualClock()
    store = await SqliteStore.open(config.store.path, clock=clock)
    client = TestClient(TestServer(create_api_app(config, store), host="127.0.0.1", port=0))
    await client.start_server()
    yield Api(client, store, clock)
    await client.close()
    await store.close()


async def test_lists_the_keys_own_messages_newest_first_with_filters(api: Api) -> None:
    first = await api.send("+12015550001")
    await api.deliver("main", MMStatus.RETRIEVED)
    second = await api.send("+12015550002")
    await api.deliver("main", MMStatus.REJECTED)
    third = await api.send("+447400900001")  # routed to the uk link
    fourth = await api.send("+1 (201) 555-0001")  # the first handset again, spelt otherwise
    theirs = await api.send("+12015550001", headers=OTHER)

    status, body = await api.list()
    assert status == 200 and body["next_cursor"] is None
    assert [m["id"] for m in body["messages"]] == [fourth, third, second, first]
    listed = {m["id"]: m for m in body["messages"]}
    assert listed[first]["status"] == "delivered"
    assert listed[first]["recipient_counts"]["delivered"] == 1
    assert listed[second]["status"] == "failed"
    assert listed[second]["recipient_counts"]["undelivered"] == 1
    assert listed[third]["link"] == "uk" and listed[third]["to"] == ["+447400900001"]
    assert listed[fourth]["status"] == "queued" and listed[fourth]["recipient_count"] == 1
    assert await api.ids(headers=OTHER) == [theirs]

    assert await api.ids(status="delivered") == [first]
    assert await api.ids(status="queued") == [fourth, third]
    assert await api.ids(to="tel:+1-201-555-0001") == [fourth, first]
    assert await api.ids(link="uk") == [third]
    assert await api.ids(link="main", status="queued") == [fourth]
    created = {m["id"]: m["created_at"] for m in body["messages"]}
    assert await api.ids(since=created[second]) == [fourth, third, second]
    assert await api.ids(since=created[second].replace("Z", "+02:00")) == [
        fourth,
        third,
        second,
        first,
    ]
    assert await api.ids(since="2026-01-01") == [fourth, third, second, first]
    assert await api.ids(since="2026-01-02") == []
    assert await api.ids(to="+12015550001", status="failed") == []


async def test_cursor_pages_are_stable_and_complete(api: Api) -> None:
    sent = [await api.send(f"+1201555{100 + n:04d}") for n in range(7)]
    newest_first = sent[::-1]
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        status, body = await api.list(**query)
        assert status == 200
        seen += [m["id"] for m in body["messages"]]
        pages += 1
        if pages == 1:
            # written while paging: not on the pages of this walk, and shifting none of them
            await api.send("+12015550200")
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == newest_first and pages == 3
    # an exactly full last page says so: no cursor to an empty page
    status, body = await api.list(limit="8")
    assert len(body["messages"]) == 8 and body["next_cursor"] is None
    # filters hold across pages
    await api.deliver("main", MMStatus.RETRIEVED)
    late = await api.send("+12015550300")
    status, body = await api.list(status="delivered", limit="5")
    assert late not in [m["id"] for m in body["messages"]] and body["next_cursor"]
    status, rest = await api.list(status="delivered", limit="5", cursor=body["next_cursor"])
    assert len(body["messages"]) + len(rest["messages"]) == 8 and rest["next_cursor"] is None


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"status": "done"}, "status"),
        ({"status": "suppressed"}, "status"),  # a recipient status, not a message's
        ({"to": "not a number"}, "to"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-01-01T00:00:00"}, "since"),  # no offset: which time zone?
        ({"link": "nowhere"}, "link"),
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "99999999999999999999"}, "limit"),
        ({"cursor": "bm90LWEtY3Vyc29y"}, "cursor"),
        ({"cursor": "%%%"}, "cursor"),
    ],
)
async def test_bad_filters_are_422_naming_the_field(
    api: Api, query: dict[str, str], field: str
) -> None:
    await api.send("+12015550400")
    status, body = await api.list(**query)
    assert status == 422 and body["error"]["field"] == field, body


async def test_unknown_or_repeated_parameters_are_refused_by_name(api: Api) -> None:
    status, body = await api.list(stauts="failed")
    assert status == 400 and body["error"]["field"] == "stauts"
    response = await api.client.get("/v1/messages?link=main&link=uk", headers=AUTH)
    assert response.status == 400 and (await response.json())["error"]["field"] == "link"
    response = await api.client.get("/v1/messages")
    assert response.status == 401


async def test_to_is_normalised_as_intake_stores_it_in_the_keys_region(tmp_path: Path) -> None:
    # the "app" key reads national numbers as US ones; "other" has no region
    text = CONFIG.format(
        key=KEY, other=OTHER_KEY, allow_private="false", db=(tmp_path / "mm7.sqlite").as_posix()
    ).replace('name = "app"\n', 'name = "app"\ndefault_region = "US"\n')
    (tmp_path / "gateway.toml").write_text(text)
    config = load_config(tmp_path / "gateway.toml", env={})
    clock = ManualClock()
    store = await SqliteStore.open(config.store.path, clock=clock)
    client = TestClient(TestServer(create_api_app(config, store), host="127.0.0.1", port=0))
    await client.start_server()
    try:
        api = Api(client, store, clock)
        national = await api.send("(201) 555-0123")  # stored as +12015550123
        e164 = await api.send("+12015550123")
        short = await api.send("12345")
        both = [e164, national]
        assert await api.ids(to="2015550123") == both
        assert await api.ids(to="201 555 0123") == both
        assert await api.ids(to="+1 201 555 0123") == both
        assert await api.ids(to="12345") == [short]
        # a number that cannot be read: 422 naming to, not an empty page
        for bad in ("+1", "+12", "1" * 20, "+999123456789"):
            status, body = await api.list(to=bad)
            assert status == 422 and body["error"]["field"] == "to", (bad, body)
        # without a region, a national number cannot be read
        status, body = await api.list(headers=OTHER, to="2015550123")
        assert status == 422 and body["error"]["field"] == "to"
        assert "region" in body["error"]["message"]
    finally:
        await client.close()
        await store.close()


async def test_to_is_read_in_the_links_region_when_the_key_has_none(tmp_path: Path) -> None:
    """As intake: the key's region, else the region of the link given (``link``), else of the
    link the number routes to (here the default link, "main", in the US)."""
    text = CONFIG.format(
        key=KEY, other=OTHER_KEY, allow_private="false", db=(tmp_path / "mm7.sqlite").as_posix()
    ).replace("default = true\n", 'default = true\ndefault_region = "US"\n', 1)
    text = text.replace('prefixes = ["+44"]\n', 'prefixes = ["+44"]\ndefault_region = "GB"\n', 1)
    (tmp_path / "gateway.toml").write_text(text)
    config = load_config(tmp_path / "gateway.toml", env={})
    assert all(key.default_region is None for key in config.api.keys)
    clock = ManualClock()
    store = await SqliteStore.open(config.store.path, clock=clock)
    client = TestClient(TestServer(create_api_app(config, store), host="127.0.0.1", port=0))
    await client.start_server()
    try:
        api = Api(client, store, clock)
        us = await api.send("(201) 555-0123")  # routed to main: read as a US number
        uk = await api.send("07400 900001", link="uk")  # the link given: read as a UK number
        assert await api.ids(to="2015550123") == [us]
        assert await api.ids(to="+12015550123") == [us]
        assert await api.ids(to="07400900001", link="uk") == [uk]
        assert await api.ids(to="+447400900001") == [uk]
    finally:
        await client.close()
        await store.close()
