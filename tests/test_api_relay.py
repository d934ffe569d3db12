"""The relay side of the sending API (mm7.service.api.relay_ops) on a real server and SQLite store.

The relay operations are called with the admin key (what a sending key may do is in
tests/test_api_roles.py). Dead letters are made the way the gateway makes them: an MO stored
with its relay event (``store_mo``), leased by a "worker" (``lease_relay``) and given up on
(``relay_outcome(..., "dead")``). Opt-outs come from an MO carrying STOP. Every answer is
validated against the schemas of mm7/service/api/openapi.json; every refusal is checked to
write nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer

from mm7.service.api.app import create_api_app
from mm7.service.mt.submit_build import read_fields
from mm7.service.store.outbox import MoRelay, OptOut, RelayStatus
from mm7.service.store.records import NewMo
from mm7.service.store.sqlite.store import SqliteStore
from tests.helpers.api import ADMIN_AUTH, AUTH, KEY, Gateway, make_config, validate

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


_mo_counter = 0


async def store_mo(
    gw: Gateway,
    *,
    sender: str = "+12015550001",
    to: str = "12345",
    text: str = "hello",
    link: str = "main",
    hook: str = "app",
    mm7_message_id: str | None = None,
    transaction_id: str | None = None,
    opt_out: OptOut | None = None,
) -> str:
    """An MO as the inbound endpoint stores it, with its relay event; its id."""
    global _mo_counter
    _mo_counter += 1
    event = {
        "type": "mo",
        "link": link,
        "from": sender,
        "to": [to],
        "text": text,
        "opt_out": opt_out.action if opt_out is not None else None,
    }
    result = await gw.store.store_mo(
        NewMo(
            link=link,
            transaction_id=transaction_id or f"tx-{_mo_counter}",
            mm7_message_id=mm7_message_id,
            fields=event,
            relay=MoRelay(hook=hook, route="r", media="url", event=event),
            opt_out=opt_out,
        )
    )
    return result.mo_id


async def event_of(gw: Gateway, mo_id: str) -> int:
    records = await gw.store.relay_events(limit=1000)
    return next(r.id for r in records if r.source_id == mo_id)


async def make_dead(gw: Gateway, mo_id: str, http_status: int = 503) -> int:
    """Lease the MO's event like the worker and give up on it: a dead letter."""
    items = await gw.store.lease_relay("test-worker", 100, LEASE)
    item = next(i for i in items if i.source_id == mo_id)
    for other in items:
        if other is not item:
            assert await gw.store.release_relay(other)
    assert await gw.store.relay_outcome(
        item, "dead", http_status=http_status, error=f"HTTP {http_status} from the hook"
    )
    return item.id


async def leasable(gw: Gateway) -> set[int]:
    """Ids a relay worker would lease now (released again right away)."""
    items = await gw.store.lease_relay("probe", 1000, LEASE)
    for item in items:
        await gw.store.release_relay(item)
    return {i.id for i in items}


async def call(
    gw: Gateway, method: str, path: str, headers: dict[str, str] | None = None, **kw: Any
) -> tuple[int, Any]:
    response = await gw.client.request(
        method, path, headers=ADMIN_AUTH if headers is None else headers, **kw
    )
    return response.status, await response.json()


def count_messages(gw: Gateway) -> int:
    with sqlite3.connect(gw.db) as conn:
        return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])


# --------------------------------------------------------------------------- auth

RELAY_CALLS = [
    ("GET", "/v1/relay/events"),
    ("GET", "/v1/relay/events/1"),
    ("POST", "/v1/relay/events/1/retry"),
    ("POST", "/v1/relay/events/1/drop"),
    ("POST", "/v1/relay/retry-dead"),
    ("GET", "/v1/relay/counts"),
    ("GET", "/v1/suppressions"),
]


async def test_every_relay_endpoint_needs_a_key(gw: Gateway) -> None:
    mo = await store_mo(gw)
    event_id = await make_dead(gw, mo)
    assert event_id == 1
    for method, path in RELAY_CALLS:
        for headers in ({}, {"Authorization": "Bearer wrong-key"}, {"Authorization": KEY}):
            response = await gw.client.request(method, path, headers=headers)
            assert response.status == 401, (method, path, headers)
            assert response.headers["WWW-Authenticate"] == "Bearer"
            validate("Error", await response.json())
    # nothing was retried or dropped by the refused calls
    record = await gw.store.get_relay_event(event_id)
    assert record is not None and record.status is RelayStatus.DEAD
    # an admin key may use them all (a sending key's limits: test_api_roles)
    status, _ = await call(gw, "GET", "/v1/relay/counts")
    assert status == 200


# --------------------------------------------------------------------------- listing


async def test_list_filters_pages_and_shows_the_event(gw: Gateway) -> None:
    dead_app = await make_dead(gw, await store_mo(gw, hook="app", text="one"))
    dead_other = await make_dead(gw, await store_mo(gw, hook="other", text="two"), 500)
    pending_mo = await store_mo(gw, hook="app", text="three")
    pending = await event_of(gw, pending_mo)

    status, answer = await call(gw, "GET", "/v1/relay/events")
    assert status == 200
    validate("RelayEventList", answer)
    assert [e["id"] for e in answer["events"]] == [dead_app, dead_other, pending]
    assert answer["next_after"] is None

    status, answer = await call(gw, "GET", "/v1/relay/events", params={"status": "dead"})
    assert [e["id"] for e in answer["events"]] == [dead_app, dead_other]
    first = answer["events"][0]
    assert first["status"] == "dead" and first["kind"] == "mo" and first["hook"] == "app"
    assert first["attempts"] == 1 and first["last_http_status"] == 503
    assert first["last_error"] == "HTTP 503 from the hook"
    assert first["event"]["text"] == "one" and first["event"]["id"] == first["source_id"]
    assert first["idempotency_key"] == f"mo:{first['source_id']}"
    assert first["first_attempt_at"] is not None and first["created_at"] is not None

    status, answer = await call(
        gw, "GET", "/v1/relay/events", params={"status": "dead", "hook": "other"}
    )
    assert [e["id"] for e in answer["events"]] == [dead_other]
    status, answer = await call(gw, "GET", "/v1/relay/events", params={"kind": "status"})
    assert answer["events"] == []
    status, answer = await call(
        gw, "GET", "/v1/relay/events", params={"status": "pending", "kind": "mo"}
    )
    assert [e["id"] for e in answer["events"]] == [pending]

    # paging: a full page says where to go on
    status, page = await call(gw, "GET", "/v1/relay/events", params={"limit": "2"})
    assert [e["id"] for e in page["events"]] == [dead_app, dead_other]
    assert page["next_after"] == dead_other
    status, page = await call(
        gw, "GET", "/v1/relay/events", params={"limit": "2", "after": str(page["next_after"])}
    )
    assert [e["id"] for e in page["events"]] == [pending] and page["next_after"] is None

    status, one = await call(gw, "GET", f"/v1/relay/events/{pending}")
    assert status == 200
    validate("RelayEvent", one)
    assert one["status"] == "pending" and one["attempts"] == 0 and one["source_id"] == pending_mo


async def test_status_events_show_the_callback_without_its_secrets(gw: Gateway) -> None:
    status, answer = await gw.post(
        {
            "to": "+12015550100",
            "text": "hi",
            "callback_url": "https://user:pw@app.example:8443/cb/status?token=s3cret#x",
        }
    )
    assert status == 202, answer
    [item] = await gw.store.lease("main", "dispatcher", 10, LEASE)
    assert await gw.store.complete(item, "MMSC-1", 1000, "Success")
    status, listed = await call(gw, "GET", "/v1/relay/events", params={"kind": "status"})
    assert status == 200
    validate("RelayEventList", listed)
    [event] = listed["events"]
    assert event["callback_url"] == "https://app.example:8443/cb/status"
    assert event["hook"] is None and event["source_id"] == answer["id"]
    assert event["event"]["status"] == "submitted"
    assert "s3cret" not in str(event) and "pw" not in event["callback_url"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"status": "deadd"}, "status"),
        ({"status": ""}, "status"),
        ({"kind": "sms"}, "kind"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"after": "-1"}, "after"),
        ({"after": str(2**64)}, "after"),
        ({"staus": "dead"}, "staus"),
        ({"hook": "h" * 256}, "hook"),
    ],
)
async def test_bad_list_parameters_are_named(
    gw: Gateway, query: dict[str, str], field: str
) -> None:
    status, answer = await call(gw, "GET", "/v1/relay/events", params=query)
    assert status == 400, answer
    validate("Error", answer)
    assert answer["error"]["field"] == field


async def test_unknown_and_malformed_ids(gw: Gateway) -> None:
    for method, suffix in (("GET", ""), ("POST", "/retry"), ("POST", "/drop")):
        status, answer = await call(gw, method, f"/v1/relay/events/424242{suffix}")
        assert status == 404 and answer["error"]["field"] == "id", answer
        for bad in ("abc", "0", "-3", str(2**63), "1.5"):
            status, answer = await call(gw, method, f"/v1/relay/events/{bad}{suffix}")
            assert status == 400 and answer["error"]["field"] == "id", (bad, answer)
            validate("Error", answer)


# --------------------------------------------------------------------------- retry, drop


async def test_retry_requeues_a_dead_letter_that_is_then_leased_again(gw: Gateway) -> None:
    mo = await store_mo(gw)
    dead = await make_dead(gw, mo)
    assert dead not in await leasable(gw)

    status, answer = await call(gw, "POST", f"/v1/relay/events/{dead}/retry")
    assert status == 200, answer
    validate("RelayEvent", answer)
    assert answer["status"] == "pending" and answer["attempts"] == 0
    assert answer["last_error"] is None and answer["first_attempt_at"] is None
    assert dead in await leasable(gw)

    # pending now: not retryable again
    status, answer = await call(gw, "POST", f"/v1/relay/events/{dead}/retry")
    assert status == 409 and "pending" in answer["error"]["message"]
    validate("Error", answer)

    # delivered: neither retried nor dropped
    [item] = await gw.store.lease_relay("w", 10, LEASE)
    assert await gw.store.relay_outcome(item, "delivered", http_status=200)
    for action in ("retry", "drop"):
        status, answer = await call(gw, "POST", f"/v1/relay/events/{dead}/{action}")
        assert status == 409 and "delivered" in answer["error"]["message"], answer
    record = await gw.store.get_relay_event(dead)
    assert record is not None and record.status is RelayStatus.DELIVERED


async def test_drop_stops_leasing_and_a_dropped_event_can_be_retried(gw: Gateway) -> None:
    pending = await event_of(gw, await store_mo(gw))
    dead = await make_dead(gw, await store_mo(gw))
    assert pending in await leasable(gw)

    status, answer = await call(gw, "POST", f"/v1/relay/events/{pending}/drop")
    assert status == 200, answer
    validate("RelayEvent", answer)
    assert answer["status"] == "dropped"
    assert pending not in await leasable(gw)
    status, answer = await call(gw, "POST", f"/v1/relay/events/{dead}/drop")
    assert status == 200 and answer["status"] == "dropped"

    status, answer = await call(gw, "POST", f"/v1/relay/events/{pending}/drop")
    assert status == 409 and "dropped" in answer["error"]["message"]

    status, answer = await call(gw, "POST", f"/v1/relay/events/{pending}/retry")
    assert status == 200 and answer["status"] == "pending"
    assert pending in await leasable(gw)


async def test_drop_cancels_the_lease_of_an_event_in_flight(gw: Gateway) -> None:
    event_id = await event_of(gw, await store_mo(gw))
    [item] = await gw.store.lease_relay("w", 10, LEASE)
    status, answer = await call(gw, "POST", f"/v1/relay/events/{event_id}/drop")
    assert status == 200 and answer["status"] == "dropped"
    # the worker's outcome no longer counts: the event stays dropped
    assert not await gw.store.relay_outcome(item, "delivered", http_status=200)
    record = await gw.store.get_relay_event(event_id)
    assert record is not None and record.status is RelayStatus.DROPPED


async def test_retry_dead_and_counts(gw: Gateway) -> None:
    status, counts = await call(gw, "GET", "/v1/relay/counts")
    assert status == 200
    validate("RelayCounts", counts)
    assert counts == {"pending": 0, "delivered": 0, "dead": 0, "dropped": 0, "skipped": 0}

    dead = [await make_dead(gw, await store_mo(gw)) for _ in range(3)]
    pending = await event_of(gw, await store_mo(gw))
    status, _ = await call(gw, "POST", f"/v1/relay/events/{dead[2]}/drop")
    assert status == 200
    status, counts = await call(gw, "GET", "/v1/relay/counts")
    assert counts == {"pending": 1, "delivered": 0, "dead": 2, "dropped": 1, "skipped": 0}

    status, answer = await call(gw, "POST", "/v1/relay/retry-dead")
    assert status == 200 and answer == {"requeued": 2}
    validate("Requeued", answer)
    assert await leasable(gw) == {dead[0], dead[1], pending}
    status, counts = await call(gw, "GET", "/v1/relay/counts")
    assert counts == {"pending": 3, "delivered": 0, "dead": 0, "dropped": 1, "skipped": 0}
    status, answer = await call(gw, "POST", "/v1/relay/retry-dead")
    assert answer == {"requeued": 0}

    status, answer = await call(gw, "POST", "/v1/relay/retry-dead", params={"all": "1"})
    assert status == 400 and answer["error"]["field"] == "all"


# --------------------------------------------------------------------------- opt-outs


async def stop(gw: Gateway, address: str) -> str:
    return await store_mo(gw, sender=address, text="STOP", opt_out=OptOut("stop", address, "STOP"))


async def test_suppression_list(gw: Gateway) -> None:
    status, answer = await call(gw, "GET", "/v1/suppressions")
    assert status == 200 and answer == {"suppressions": []}
    mo = await stop(gw, "+12015550007")
    status, answer = await call(gw, "GET", "/v1/suppressions")
    validate("SuppressionList", answer)
    [entry] = answer["suppressions"]
    assert entry["address"] == "+12015550007" and entry["word"] == "STOP"
    assert entry["mo_id"] == mo and entry["link"] == "main"
    status, answer = await call(gw, "GET", "/v1/suppressions", params={"limit": "0"})
    assert status == 400 and answer["error"]["field"] == "limit"


@pytest.mark.parametrize(
    ("to", "field"),
    [
        ("+1 201 555 0007", "to"),
        (["+12015550007"], "to[0]"),
        (["+12015550007", "+1 201 555 0008"], "to"),
    ],
)
async def test_every_recipient_opted_out_is_a_422_writing_nothing(
    gw: Gateway, to: Any, field: str
) -> None:
    await stop(gw, "+12015550007")
    await stop(gw, "+12015550008")
    before = count_messages(gw)
    message = await gw.refused({"to": to, "text": "promo"}, 422, field)
    assert "opted out" in message and "START" in message, message
    assert count_messages(gw) == before == 0


async def test_some_recipients_opted_out_are_named_and_kept_suppressed(gw: Gateway) -> None:
    await stop(gw, "+12015550007")
    status, answer = await gw.post({"to": ["+12015550006", "+1-201-555-0007"], "text": "news"})
    assert status == 202, answer
    validate("Accepted", answer)
    assert answer["suppressed"] == ["+12015550007"]
    response = await gw.client.get(f"/v1/messages/{answer['id']}", headers=AUTH)
    view = await response.json()
    validate("Message", view)
    assert {r["address"]: r["status"] for r in view["recipients"]} == {
        "+12015550006": "queued",
        "+12015550007": "suppressed",
    }
    # only the recipient who did not opt out is ever leased
    items = await gw.store.lease("main", "dispatcher", 10, LEASE)
    assert [i.address for i in items] == ["+12015550006"]
    # without opted-out recipients the answer is as it always was
    status, answer = await gw.post({"to": "+12015550006", "text": "more"})
    assert status == 202 and set(answer) == {"id", "status"}


async def test_start_lifts_the_opt_out(gw: Gateway) -> None:
    await stop(gw, "+12015550007")
    await gw.refused({"to": "+12015550007", "text": "x"}, 422, "to")
    await store_mo(
        gw, sender="+12015550007", text="START", opt_out=OptOut("start", "+12015550007", "START")
    )
    status, answer = await gw.post({"to": "+12015550007", "text": "welcome back"})
    assert status == 202 and "suppressed" not in answer


async def test_sendmms_to_an_opted_out_recipient(gw: Gateway) -> None:
    await stop(gw, "+12015550007")
    params = {"username": "app", "password": KEY, "to": "+12015550007", "text": "hi"}
    response = await gw.client.get("/cgi-bin/sendmms", params=params)
    text = await response.text()
    assert response.status == 422, text
    # sendmms names recipients as parse_request does for a list (to[0], as for a bad address)
    assert text.startswith("Error: to[0]: +12015550007 opted out") and "START" in text
    assert count_messages(gw) == 0


# --------------------------------------------------------------------------- reply_to


async def test_reply_to_fills_link_linked_id_to_and_from(gw: Gateway) -> None:
    mo = await store_mo(
        gw, sender="+447400123456", to="12345", link="main", mm7_message_id="MMSC-MO-77",
        transaction_id="tx-mo-77",
    )  # fmt: skip
    # +44 routes to link "uk": the MO's link wins, and so does its MessageID
    status, answer = await gw.post({"reply_to": mo, "text": "thanks!"})
    assert status == 202, answer
    record = await gw.store.get_message(answer["id"])
    assert record is not None
    assert record.link == "main"
    assert [r.address for r in record.recipients] == ["+447400123456"]
    fields = dict(record.fields)
    assert fields["to"] == ["+447400123456"] and fields["from"] == "12345"
    assert fields["linked_id"] == "MMSC-MO-77" and fields["reply_to"] == mo
    # what the dispatcher reads into the SubmitReq: LinkedID and SenderAddress
    read = read_fields(record.fields)
    assert (read.linked_id, read.sender) == ("MMSC-MO-77", "12345")

    # without a MessageID from the MMSC, LinkedID is the MO's TransactionID
    mo2 = await store_mo(gw, sender="+12015550001", transaction_id="tx-only-5")
    status, answer = await gw.post(
        {"reply_to": mo2, "text": "hi", "to": ["+12015550002"], "from": "777", "link": "main"}
    )
    assert status == 202, answer
    record = await gw.store.get_message(answer["id"])
    assert record is not None
    fields = dict(record.fields)
    assert fields["linked_id"] == "tx-only-5"
    assert fields["to"] == ["+12015550002"] and fields["from"] == "777"

    # an ordinary message has no reply_to
    status, answer = await gw.post({"to": "+12015550002", "text": "plain"})
    record = await gw.store.get_message(answer["id"])
    assert record is not None and record.fields["reply_to"] is None


async def test_reply_to_as_a_form_field(gw: Gateway) -> None:
    mo = await store_mo(gw, sender="+12015550001", mm7_message_id="MID-F")
    form = FormData()
    form.add_field("reply_to", mo)
    form.add_field("text", "by form")
    response = await gw.client.post("/v1/messages", data=form, headers=AUTH)
    answer = await response.json()
    assert response.status == 202, answer
    record = await gw.store.get_message(answer["id"])
    assert record is not None
    assert record.fields["linked_id"] == "MID-F" and record.fields["to"] == ["+12015550001"]


async def test_reply_to_refusals_write_nothing(gw: Gateway) -> None:
    mo = await store_mo(gw, link="main", mm7_message_id="MID-1")
    message = await gw.refused({"reply_to": "no-such-mo", "text": "x"}, 422, "reply_to")
    assert "no-such-mo" in message
    message = await gw.refused({"reply_to": mo, "text": "x", "link": "uk"}, 422, "link")
    assert "main" in message
    await gw.refused({"reply_to": mo, "text": "x", "linked_id": "OTHER"}, 422, "linked_id")
    await gw.refused({"reply_to": "", "text": "x"}, 422, "reply_to")
    await gw.refused({"reply_to": 7, "text": "x"}, 400, "reply_to")
    # without reply_to, to is still required
    await gw.refused({"text": "x"}, 400, "to")
    # the same link and linked_id as the MO's are fine
    status, _ = await gw.post({"reply_to": mo, "text": "x", "link": "main", "linked_id": "MID-1"})
    assert status == 202


async def test_an_opted_out_sender_gets_one_confirmation_and_nothing_else(gw: Gateway) -> None:
    earlier = await store_mo(gw, sender="+12015550009", text="hello")
    mo = await stop(gw, "+12015550009")
    # a reply to any other MO of theirs is refused: they opted out
    message = await gw.refused({"reply_to": earlier, "text": "still there?"}, 422, "to")
    assert "opted out" in message
    # a reply to the STOP itself is the confirmation carriers expect: sent once
    status, first = await gw.post({"reply_to": mo, "text": "You are unsubscribed."})
    assert status == 202 and "suppressed" not in first
    record = await gw.store.get_message(first["id"])
    assert record is not None and [r.status.value for r in record.recipients] == ["queued"]
    status, again = await gw.post({"reply_to": mo, "text": "You are REALLY unsubscribed."})
    assert status == 200 and again == {"id": first["id"], "status": "duplicate"}
    # only a reply to the one who sent STOP alone is a confirmation: here they are skipped
    status, other = await gw.post(
        {
            "reply_to": mo,
            "to": ["+12015550009", "+12015550010"],
            "text": "x",
            "idempotency_key": "k2",
        }
    )
    assert status == 202 and other["suppressed"] == ["+12015550009"]
