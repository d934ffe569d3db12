"""API key roles and idempotency keys on a real server and SQLite store.

Three keys (tests.helpers.api): ``app`` and ``other`` are sending keys, ``ops`` an admin key.
The store holds what the gateway writes: each sending key's message with a callback_url whose
status event became a dead letter (leased by a "worker" and given up on), and an MO with its
dead relay event. Every cross-key attempt by a sending key is refused (403 naming why, 404 for
another key's message) and changes nothing; the admin key does the same successfully.
"""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer

from mm7.service.api.app import create_api_app
from mm7.service.config.loader import load_config
from mm7.service.errors import ConfigError, IdempotencyConflictError
from mm7.service.store.outbox import MoRelay, OptOut, RelayStatus
from mm7.service.store.records import NewMessage, NewMo
from mm7.service.store.sqlite.store import SqliteStore
from tests.helpers.api import (
    ADMIN_AUTH,
    AUTH,
    OTHER_AUTH,
    Gateway,
    make_config,
    validate,
)
from tests.helpers.media import png_bytes

LEASE = timedelta(minutes=1)


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    config = make_config(tmp_path, allow_private=False)
    store = await SqliteStore.open(config.store.path)
    client = TestClient(TestServer(create_api_app(config, store), host="127.0.0.1", port=0))
    await client.start_server()
    yield Gateway(client, store, config.store.path)
    await client.close()
    await store.close()


async def call(
    gw: Gateway, method: str, path: str, headers: dict[str, str], **kw: Any
) -> tuple[int, Any]:
    response = await gw.client.request(method, path, headers=headers, **kw)
    return response.status, await response.json()


async def send(gw: Gateway, headers: dict[str, str], text: str) -> str:
    """A message with a callback_url sent with the key of ``headers``, submitted: its id."""
    status, answer = await gw.post(
        {"to": "+12015550100", "text": text, "callback_url": "https://app.example/cb"}, headers
    )
    assert status == 202, answer
    [item] = await gw.store.lease("main", "dispatcher", 10, LEASE)
    assert await gw.store.complete(item, f"MMSC-{text}", 1000, "Success")
    return str(answer["id"])


@dataclass(frozen=True, slots=True)
class World:
    """The dead relay events of each owner: app's and other's status events, an MO's."""

    app_message: str
    other_message: str
    app_event: int
    other_event: int
    mo_event: int


async def world(gw: Gateway) -> World:
    app_message = await send(gw, AUTH, "one")
    other_message = await send(gw, OTHER_AUTH, "two")
    event = {"type": "mo", "link": "main", "from": "+12015550001", "to": ["12345"], "text": "STOP"}
    await gw.store.store_mo(
        NewMo(
            link="main",
            transaction_id="tx-roles",
            mm7_message_id=None,
            fields=event,
            relay=MoRelay(hook="app", route="r", media="url", event=event),
            opt_out=OptOut("stop", "+12015550001", "STOP"),
        )
    )
    items = await gw.store.lease_relay("worker", 100, LEASE)
    assert len(items) == 3
    for item in items:
        assert await gw.store.relay_outcome(item, "dead", http_status=503, error="HTTP 503")
    by_owner = {
        (i.kind.value, i.source_id if i.kind.value == "status" else None): i.id for i in items
    }
    return World(
        app_message,
        other_message,
        by_owner["status", app_message],
        by_owner["status", other_message],
        by_owner["mo", None],
    )


async def statuses(gw: Gateway, w: World) -> list[RelayStatus]:
    out = []
    for event_id in (w.app_event, w.other_event, w.mo_event):
        record = await gw.store.get_relay_event(event_id)
        assert record is not None
        out.append(record.status)
    return out


def refused(status: int, answer: Any, code: int, field: str | None, words: str) -> None:
    assert status == code, answer
    validate("Error", answer)
    assert answer["error"]["field"] == field, answer
    assert words in answer["error"]["message"], answer


# --------------------------------------------------------------------------- listing, counts


async def test_a_sending_key_lists_and_counts_only_its_own_events(gw: Gateway) -> None:
    w = await world(gw)
    status, answer = await call(gw, "GET", "/v1/relay/events", AUTH)
    assert status == 200
    validate("RelayEventList", answer)
    assert [e["id"] for e in answer["events"]] == [w.app_event]
    assert answer["events"][0]["source_id"] == w.app_message
    status, answer = await call(gw, "GET", "/v1/relay/events", OTHER_AUTH, params={"limit": 1})
    assert [e["id"] for e in answer["events"]] == [w.other_event]
    assert answer["next_after"] == w.other_event
    status, answer = await call(
        gw, "GET", "/v1/relay/events", AUTH, params={"after": str(w.app_event)}
    )
    assert answer["events"] == []

    # MO events belong to no key: asking for them is refused, not answered empty
    status, answer = await call(gw, "GET", "/v1/relay/events", AUTH, params={"kind": "mo"})
    refused(status, answer, 403, "kind", "admin key")

    status, counts = await call(gw, "GET", "/v1/relay/counts", AUTH)
    assert status == 200
    validate("RelayCounts", counts)
    assert counts["dead"] == 1 and sum(counts.values()) == 1

    # the admin key sees all of them
    status, answer = await call(gw, "GET", "/v1/relay/events", ADMIN_AUTH)
    assert status == 200
    assert sorted(e["id"] for e in answer["events"]) == sorted(
        [w.app_event, w.other_event, w.mo_event]
    )
    status, answer = await call(gw, "GET", "/v1/relay/events", ADMIN_AUTH, params={"kind": "mo"})
    assert [e["id"] for e in answer["events"]] == [w.mo_event]
    status, counts = await call(gw, "GET", "/v1/relay/counts", ADMIN_AUTH)
    assert counts["dead"] == 3


# --------------------------------------------------------------------------- one event


@pytest.mark.parametrize(("method", "suffix"), [("GET", ""), ("POST", "/retry"), ("POST", "/drop")])
async def test_another_keys_event_and_an_mo_event_are_403_and_unchanged(
    gw: Gateway, method: str, suffix: str
) -> None:
    w = await world(gw)
    before = await statuses(gw, w)
    status, answer = await call(gw, method, f"/v1/relay/events/{w.other_event}{suffix}", AUTH)
    refused(status, answer, 403, "id", "another API key")
    assert "event" not in answer and "two" not in str(answer)
    status, answer = await call(gw, method, f"/v1/relay/events/{w.mo_event}{suffix}", AUTH)
    refused(status, answer, 403, "id", "only an admin key")
    status, answer = await call(gw, method, f"/v1/relay/events/{w.app_event}{suffix}", OTHER_AUTH)
    refused(status, answer, 403, "id", "another API key")
    assert await statuses(gw, w) == before
    # an id that does not exist is still a 404
    status, answer = await call(gw, method, f"/v1/relay/events/424242{suffix}", AUTH)
    refused(status, answer, 404, "id", "no relay event")

    # the owner acts on its own event, the admin key on any
    expected = {"": "dead", "/retry": "pending", "/drop": "dropped"}[suffix]
    for event_id, headers in (
        (w.app_event, AUTH),
        (w.other_event, ADMIN_AUTH),
        (w.mo_event, ADMIN_AUTH),
    ):
        status, answer = await call(gw, method, f"/v1/relay/events/{event_id}{suffix}", headers)
        assert status == 200, answer
        validate("RelayEvent", answer)
        assert answer["id"] == event_id and answer["status"] == expected


# --------------------------------------------------------------------------- retry-dead


async def test_retry_dead_by_a_sending_key_requeues_its_own_only(gw: Gateway) -> None:
    w = await world(gw)
    status, answer = await call(gw, "POST", "/v1/relay/retry-dead", AUTH)
    assert status == 200 and answer == {"requeued": 1}
    validate("Requeued", answer)
    assert await statuses(gw, w) == [RelayStatus.PENDING, RelayStatus.DEAD, RelayStatus.DEAD]
    status, answer = await call(gw, "POST", "/v1/relay/retry-dead", ADMIN_AUTH)
    assert status == 200 and answer == {"requeued": 2}
    assert await statuses(gw, w) == [RelayStatus.PENDING] * 3


# --------------------------------------------------------------------------- suppressions


async def test_the_suppression_list_is_for_admin_keys(gw: Gateway) -> None:
    await world(gw)
    for headers in (AUTH, OTHER_AUTH):
        status, answer = await call(gw, "GET", "/v1/suppressions", headers)
        refused(status, answer, 403, None, "only an admin key")
        assert "+12015550001" not in str(answer)
    # refused before the parameters are looked at
    status, answer = await call(gw, "GET", "/v1/suppressions", AUTH, params={"limit": "0"})
    assert status == 403
    status, answer = await call(gw, "GET", "/v1/suppressions", ADMIN_AUTH)
    assert status == 200
    validate("SuppressionList", answer)
    assert [s["address"] for s in answer["suppressions"]] == ["+12015550001"]


# --------------------------------------------------------------------------- messages, replies


async def test_a_message_of_another_key_does_not_exist_for_it(gw: Gateway) -> None:
    w = await world(gw)
    for headers in (OTHER_AUTH, ADMIN_AUTH):
        status, answer = await call(gw, "GET", f"/v1/messages/{w.app_message}", headers)
        refused(status, answer, 404, "id", "no such message")
    status, answer = await call(gw, "GET", "/v1/messages/no-such-id", AUTH)
    refused(status, answer, 404, "id", "no such message")
    status, answer = await call(gw, "GET", f"/v1/messages/{w.app_message}", AUTH)
    assert status == 200 and answer["id"] == w.app_message


async def test_any_key_may_reply_to_an_mo_whose_id_it_was_given(gw: Gateway) -> None:
    event = {"type": "mo", "link": "main", "from": "+12015550002", "to": ["12345"], "text": "hi"}
    stored = await gw.store.store_mo(
        NewMo(
            link="main",
            transaction_id="tx-reply",
            mm7_message_id="MID-R",
            fields=event,
            relay=MoRelay(hook="app", route="r", media="url", event=event),
        )
    )
    for headers in (AUTH, OTHER_AUTH):
        status, answer = await gw.post({"reply_to": stored.mo_id, "text": "thanks"}, headers)
        assert status == 202, answer
        status, view = await call(gw, "GET", f"/v1/messages/{answer['id']}", headers)
        assert status == 200 and view["recipients"][0]["address"] == "+12015550002"


# --------------------------------------------------------------------------- configuration


CONFIG_KEYS = """
[links.main]
url = "http://127.0.0.1:9/mm7"
default = true
[inbound]
listen = "127.0.0.1:0"
[inbound.peers.main]
allow = ["127.0.0.1/32"]
[api]
listen = "127.0.0.1:0"
[[api.keys]]
name = "k"
key = "a-key-long-enough-0123"
{extra}
[store]
path = "{db}"
"""


@pytest.mark.parametrize(
    ("extra", "admin"),
    [
        ("", False),
        ('role = "sending"', False),
        ('role = "admin"', True),
        ("admin = true", True),
        ("admin = false", False),
        ('role = "admin"\nadmin = true', True),
    ],
)
def test_a_key_is_a_sending_key_unless_configured_admin(
    tmp_path: Path, extra: str, admin: bool
) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG_KEYS.format(extra=extra, db=(tmp_path / "db").as_posix()))
    [key] = load_config(path, env={}).api.keys
    assert key.admin is admin and key.role == ("admin" if admin else "sending")


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        ('role = "root"', "api.keys.k.role: expected one of sending, admin"),
        ('admin = "yes"', "api.keys.k.admin: expected true or false"),
        ('role = "sending"\nadmin = true', "api.keys.k.admin: contradicts role"),
    ],
)
def test_a_bad_role_is_refused_by_name(tmp_path: Path, extra: str, where: str) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG_KEYS.format(extra=extra, db=(tmp_path / "db").as_posix()))
    with pytest.raises(ConfigError, match=where):
        load_config(path, env={})


# --------------------------------------------------------------------------- idempotency keys


def rows(gw: Gateway) -> tuple[int, int, int]:
    with sqlite3.connect(gw.db) as conn:
        return (
            conn.execute("SELECT count(*) FROM messages").fetchone()[0],
            conn.execute("SELECT count(*) FROM recipients").fetchone()[0],
            conn.execute("SELECT count(*) FROM media").fetchone()[0],
        )


PNG = base64.b64encode(png_bytes()).decode("ascii")
OTHER_PNG = base64.b64encode(png_bytes(3, 2)).decode("ascii")
BODY: dict[str, Any] = {
    "to": "+1 201 555 0100",
    "text": "hello",
    "subject": "s",
    "expiry": "P1D",
    "media": [{"content_base64": PNG, "content_type": "image/png"}],
    "idempotency_key": "order-17",
}


async def test_a_reused_key_with_another_request_is_422_and_writes_nothing(gw: Gateway) -> None:
    status, first = await gw.post(BODY)
    assert status == 202, first
    before = rows(gw)
    for change in (
        {"text": "hello!"},
        {"to": "+12015550101"},
        {"subject": None},
        {"expiry": "P2D"},
        {"media": [{"content_base64": OTHER_PNG, "content_type": "image/png"}]},
        {"callback_url": "https://app.example/cb"},
    ):
        status, answer = await gw.post({**BODY, **change})
        refused(status, answer, 422, "idempotency_key", first["id"])
        assert rows(gw) == before
    # the key in the header, and a form, are the same key
    headers = {**AUTH, "Idempotency-Key": "order-17"}
    body = {k: v for k, v in BODY.items() if k != "idempotency_key"}
    status, answer = await gw.post({**body, "text": "other"}, headers)
    refused(status, answer, 422, "idempotency_key", "different request")
    form = FormData({"to": "+12015550100", "text": "by form", "idempotency_key": "order-17"})
    response = await gw.client.post("/v1/messages", data=form, headers=AUTH)
    assert response.status == 422
    assert (await response.json())["error"]["field"] == "idempotency_key"
    assert rows(gw) == before
    # the same key of another API key is another key
    status, answer = await gw.post({**BODY, "text": "theirs"}, OTHER_AUTH)
    assert status == 202, answer


async def test_an_identical_retry_is_200_with_the_first_id(gw: Gateway) -> None:
    status, first = await gw.post(BODY)
    assert status == 202, first
    before = rows(gw)
    # the same parsed request: key order, "to" as an array, number punctuation, the key as a
    # header do not count
    reordered = dict(reversed(list(BODY.items())))
    headers = {**AUTH, "Idempotency-Key": "order-17"}
    without_key = {k: v for k, v in BODY.items() if k != "idempotency_key"}
    for body, sent_with in (
        (BODY, AUTH),
        (reordered, AUTH),
        ({**BODY, "to": ["+12015550100"]}, AUTH),
        (without_key, headers),
    ):
        status, answer = await gw.post(body, sent_with)
        assert status == 200, answer
        validate("Accepted", answer)
        assert answer == {"id": first["id"], "status": "duplicate"}
    assert rows(gw) == before


async def test_the_store_refuses_a_conflicting_repeat_inside_its_transaction(
    gw: Gateway,
) -> None:
    """Two requests with one key racing past the API's early check: the commit decides."""
    message = NewMessage(
        link="main", fields={"api_key": "app"}, idempotency_key="app:k", request_digest="a" * 64
    )
    first = await gw.store.enqueue_message(message, ["+12015550100"])
    assert first.created
    before = rows(gw)
    again = await gw.store.enqueue_message(message, ["+12015550100"])
    assert (again.message_id, again.created) == (first.message_id, False)
    other = NewMessage(
        link="main", fields={"api_key": "app"}, idempotency_key="app:k", request_digest="b" * 64
    )
    with pytest.raises(IdempotencyConflictError) as caught:
        await gw.store.enqueue_message(other, ["+12015550199"])
    assert caught.value.message_id == first.message_id
    assert rows(gw) == before
    # a row without a digest (written before digests were kept) is not compared
    legacy = NewMessage(link="main", fields={"api_key": "app"}, idempotency_key="app:old")
    old = await gw.store.enqueue_message(legacy, ["+12015550100"])
    repeat = await gw.store.enqueue_message(
        NewMessage(link="main", fields={}, idempotency_key="app:old", request_digest="c" * 64),
        ["+12015550100"],
    )
    assert (repeat.message_id, repeat.created) == (old.message_id, False)
