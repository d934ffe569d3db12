"""The simulator's traffic record and its control API: every exchange in both directions,
refused ones first-class (version, status and text, recipients, fault, problems); filters;
the detail view (SOAP pretty, media listed with links, slides); the ring and the whole-body
budget; the live stream (server-sent events) with replay, reset and slow subscribers dropped;
the persona switched at run time; faults aimed at one operation; the leniencies each exchange
needed, both ways. Real simulator, real VASP, real client, all on loopback."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from mm7.core.codec import decode, encode
from mm7.core.dialect import STRICT_3GPP
from mm7.core.model import RESPONSE_FOR, CancelReq, Request, Status, reply_to
from mm7.core.versions import get_version
from mm7.simulator.feed import Dropped, TrafficFeed
from mm7.transport.errors import MM7ClientError
from mm7.transport.link import BasicAuth, Secret
from tests.helpers.simulator import Hit, Make, Rig, Vasp, png, submit


async def get(r: Rig, path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(r.base + path) as rsp:
        body = await rsp.read()
        if rsp.content_type == "application/json":
            return rsp.status, json.loads(body)
        return rsp.status, body


async def traffic(r: Rig, query: str = "") -> list[dict[str, Any]]:
    status, data = await get(r, "/control/traffic" + query)
    assert status == 200, data
    exchanges: list[dict[str, Any]] = data["exchanges"]
    return exchanges


async def mixed_traffic(r: Rig) -> None:
    """A 4006 refusal, a bare HTTP 503, an unreadable body, an accepted submit and its report."""
    await r.control(
        "POST",
        "/faults",
        {
            "once": [
                {"kind": "status", "code": 4006, "details": "throttled", "operation": "SubmitReq"},
                {"kind": "http", "http_status": 503},
            ]
        },
    )
    async with r.client() as client:
        with pytest.raises(MM7ClientError):
            await client.submit(submit("+15551230001", report=False, tid="tx-refused"))
        with pytest.raises(MM7ClientError):
            await client.submit(submit("+15551230002", report=False, tid="tx-503"))
    status, _, _ = await r.post(b"<not really soap", "text/xml")
    assert status == 500
    async with r.client() as client:
        await client.submit(submit("+15551230003", "+15551230004", tid="tx-ok"))
    await r.vasp.wait(2)
    await r.sim.dlr.idle()


async def test_every_exchange_is_recorded_with_refusals_first_class(sim_rig: Make) -> None:
    r = await sim_rig()
    await mixed_traffic(r)
    listed = await traffic(r)
    by_tid = {e["transaction_id"]: e for e in listed if e["direction"] == "in"}
    refused = by_tid["tx-refused"]
    assert refused["operation"] == "SubmitReq" and refused["status_code"] == 4006
    assert refused["status_text"] == "Service unavailable" and refused["fault"] == "status"
    assert refused["version"] == "REL-6-MM7-1-4" and refused["mm7_version"] == "6.8.0"
    assert refused["recipients"] == ["+15551230001"] and refused["subject"] == "hi"
    assert refused["problems"] == ["throttled"]
    bare = by_tid["tx-503"]
    assert bare["http_status"] == 503 and bare["status_code"] is None and bare["fault"] == "http"
    assert bare["operation"] == "SubmitReq"  # read for the record though never answered as MM7
    assert bare["recipients"] == ["+15551230002"]
    broken = next(e for e in listed if e["operation"] == "?")
    assert broken["status_code"] == 2007 and broken["http_status"] == 500
    assert broken["problems"] and broken["version"] is None
    ok = by_tid["tx-ok"]
    assert ok["status_code"] == 1000 and ok["status_text"] == "Success"
    assert ok["recipients"] == ["+15551230003", "+15551230004"] and ok["message_id"]
    out = [e for e in listed if e["direction"] == "out"]
    assert len(out) == 2
    assert {e["recipient"] for e in out} == {"+15551230003", "+15551230004"}
    assert all(e["operation"] == "DeliveryReportReq" and e["status_code"] == 1000 for e in out)
    assert all(e["version"] == "REL-6-MM7-1-4" and e["mm_status"] == "Retrieved" for e in out)
    assert [e["id"] for e in listed] == sorted(e["id"] for e in listed)  # oldest first


async def test_filters_by_direction_operation_status_recipient(sim_rig: Make) -> None:
    r = await sim_rig()
    await mixed_traffic(r)

    async def tids(query: str) -> list[str]:
        return [e["transaction_id"] or e["operation"] for e in await traffic(r, query)]

    assert len(await tids("?direction=out")) == 2
    assert len(await tids("?direction=in")) == 4
    assert await tids("?operation=SubmitReq&direction=in") == ["tx-refused", "tx-503", "tx-ok"]
    assert await tids("?status=4006") == ["tx-refused"]
    assert await tids("?status=503") == ["tx-503"]
    assert len(await tids("?status=ok")) == 3  # the accepted submit and two reports
    assert await tids("?status=error&direction=in") == ["tx-refused", "tx-503", "?"]
    assert await tids("?recipient=1230004&direction=in") == ["tx-ok"]
    assert len(await tids("?recipient=1230004")) == 2  # the submit and its report
    assert len(await tids("?limit=2")) == 2
    before = await traffic(r)
    for query, named in (
        ("?direction=sideways", "direction"),
        ("?status=abc", "status"),
        ("?status=12", "status"),
        ("?limit=0", "limit"),
        ("?limit=x", "limit"),
    ):
        status, data = await get(r, "/control/traffic" + query)
        assert status == 400 and data["error"].startswith(named), (query, data)
    assert await traffic(r) == before


async def test_detail_shows_soap_headers_parts_and_slides(sim_rig: Make) -> None:
    r = await sim_rig(faults={"basic_auth": {"user": "vasp", "password": "pw-secret-7"}})
    async with r.client(auth=BasicAuth("vasp", Secret("pw-secret-7"))) as client:
        await client.submit(submit(report=False, smil=True, text="Hi <you>", tid="tx-d"))
    (entry,) = [e for e in await traffic(r) if e["transaction_id"] == "tx-d"]
    status, detail = await get(r, f"/control/traffic/{entry['id']}")
    assert status == 200
    assert "pw-secret-7" not in json.dumps(detail)
    headers = dict(detail["request_headers"])
    assert headers["Authorization"] != "" and "Content-Type" in headers
    assert detail["request_content_type"].startswith("multipart/related")
    soap = detail["request_soap"]
    assert (
        "SubmitReq" in soap and "tx-d" in soap and "\n  " in soap and "Hi &lt;you&gt;" not in soap
    )
    assert detail["request_problem"] is None and detail["bodies_truncated"] is False
    kinds = [p["content_type"] for p in detail["parts"]]
    assert "application/smil" in kinds and "image/png" in kinds and "text/plain" in kinds
    text_part = next(p for p in detail["parts"] if p["content_type"] == "text/plain")
    assert text_part["text"] == "Hi <you>"
    image = next(p for p in detail["parts"] if p["content_type"] == "image/png")
    async with aiohttp.ClientSession() as session, session.get(r.base + image["url"]) as rsp:
        assert await rsp.read() == png() and rsp.content_type == "image/png"
        assert "sandbox" in rsp.headers["Content-Security-Policy"]
    (slide,) = detail["slides"]
    assert slide["image"]["part"] == image["index"] and slide["text"]["text"] == "Hi <you>"
    assert "SubmitRsp" in detail["response_soap"]
    assert dict(detail["response_headers"])["Content-Type"].startswith("text/xml")
    status, _ = await get(r, f"/control/traffic/{entry['id']}/parts/99")
    assert status == 404
    status, _ = await get(r, "/control/traffic/999999")
    assert status == 404


async def test_outbound_mo_detail_lists_the_image_it_sent(sim_rig: Make) -> None:
    r = await sim_rig()
    answer = await r.control(
        "POST",
        "/mo",
        {
            "to": "12345",
            "from": "+12025550009",
            "text": "photo",
            "subject": "<b>bold?</b>",
            "media": [{"data": base64.b64encode(png()).decode(), "filename": "a.png"}],
        },
    )
    assert answer["ok"]
    (mo,) = [e for e in await traffic(r) if e["operation"] == "DeliverReq"]
    assert mo["direction"] == "out" and mo["recipients"] == ["12345"]
    assert mo["subject"] == "<b>bold?</b>"
    _, detail = await get(r, f"/control/traffic/{mo['id']}")
    image = next(p for p in detail["parts"] if p["content_type"] == "image/png")
    assert image["size"] == len(png()) and image["content_location"] == "a.png"
    assert "DeliverRsp" in detail["response_soap"]
    async with aiohttp.ClientSession() as session, session.get(r.base + image["url"]) as rsp:
        assert await rsp.read() == png()


async def test_ring_and_whole_body_budget(sim_rig: Make) -> None:
    r = await sim_rig(max_exchanges=3, max_body_bytes=60_000)
    big = "x" * 20_000
    async with r.client() as client:
        for n in range(4):
            await client.submit(submit(report=False, smil=True, text=big, tid=f"tx-{n}"))
    listed = await traffic(r)
    assert [e["transaction_id"] for e in listed] == ["tx-1", "tx-2", "tx-3"]
    status, _ = await get(r, f"/control/traffic/{listed[0]['id'] - 1}")
    assert status == 404  # out of the ring
    details = [(await get(r, f"/control/traffic/{e['id']}"))[1] for e in listed]
    # about 21 KB of request and 0.5 KB of answer each: the newest two stay whole
    assert [d["bodies_truncated"] for d in details] == [True, False, False]
    oldest = details[0]
    assert "16384" in oldest["request_problem"] and "SubmitReq" in oldest["request_soap"]
    assert details[2]["request_problem"] is None
    assert any(p["content_type"] == "image/png" for p in details[2]["parts"])


async def read_event(response: aiohttp.ClientResponse) -> dict[str, str]:
    """The next server-sent event (comments and the retry line skipped)."""
    event: dict[str, str] = {}
    async with asyncio.timeout(10):  # a guard against a hang, not a timing check
        while True:
            line = (await response.content.readline()).decode()
            if line in ("\n", ""):
                if "event" in event or line == "":
                    return event
                continue
            if line.startswith(":") or line.startswith("retry:"):
                continue
            key, _, value = line.rstrip("\n").partition(": ")
            event[key] = value


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def test_stream_sends_new_exchanges_filtered_replays_and_resets(
    sim_rig: Make, session: aiohttp.ClientSession
) -> None:
    r = await sim_rig()
    url = r.base + "/control/traffic/stream?direction=in"
    async with session.get(url) as stream:
        assert stream.content_type == "text/event-stream"
        async with r.client() as client:
            await client.submit(submit("+15551230001", tid="tx-s1"))
        first = await read_event(stream)
        assert first["event"] == "exchange"
        data = json.loads(first["data"])
        assert data["transaction_id"] == "tx-s1" and data["direction"] == "in"
        assert first["id"] == str(data["id"])
        await r.vasp.wait(1)
        await r.sim.dlr.idle()  # the report (out) is filtered away
        async with r.client() as client:
            await client.submit(submit(report=False, tid="tx-s2"))
        second = json.loads((await read_event(stream))["data"])
        assert second["transaction_id"] == "tx-s2"
        await r.control("POST", "/reset")
        assert (await read_event(stream))["event"] == "reset"
        async with r.client() as client:
            await client.submit(submit(report=False, tid="tx-s3"))
        third = json.loads((await read_event(stream))["data"])
        assert third["transaction_id"] == "tx-s3" and third["id"] > second["id"]
    # a browser reconnecting with Last-Event-ID gets what it missed, from the ring
    async with r.client() as client:
        await client.submit(submit(report=False, tid="tx-s4"))
    headers = {"Last-Event-ID": str(third["id"])}
    async with session.get(url, headers=headers) as again:
        missed = json.loads((await read_event(again))["data"])
        assert missed["transaction_id"] == "tx-s4"
    async with session.get(r.base + "/control/traffic/stream?after=x") as bad:
        assert bad.status == 400 and "after" in (await bad.json())["error"]
    async with session.get(r.base + "/control/traffic/stream?status=zzz") as bad:
        assert bad.status == 400 and "status" in (await bad.json())["error"]


async def test_a_slow_subscriber_is_dropped_not_the_simulator(
    sim_rig: Make, session: aiohttp.ClientSession
) -> None:
    r = await sim_rig(feed_queue=2)
    feed = r.sim.store.feed
    async with session.get(r.base + "/control/traffic/stream") as stream:
        for _ in range(500):  # until the handler has subscribed (bounded)
            if feed.subscribers:
                break
            await asyncio.sleep(0.01)
        assert feed.subscribers == 1
        # three exchanges before the stream's handler can run: its queue of 2 overflows
        for n in range(3):
            r.sim.store.add_exchange(
                direction="in", operation="SubmitReq", transaction_id=f"t{n}",
                http_status=200, status_code=1000, duration_ms=0.1,
            )  # fmt: skip
        dropped = await read_event(stream)
        assert dropped["event"] == "dropped" and "2" in json.loads(dropped["data"])["reason"]
        assert feed.dropped == 1 and feed.subscribers == 0
    async with r.client() as client:  # the simulator goes on
        assert (await client.submit(submit(report=False))).status.code == 1000


async def test_feed_queues_are_bounded_and_closing_ends_waits() -> None:
    feed = TrafficFeed()
    fast, slow = feed.subscribe(limit=2), feed.subscribe(limit=2)
    feed.publish("a")
    assert await fast.next(1.0) == ["a"]
    feed.publish("b")
    feed.publish("c")
    assert await fast.next(1.0) == ["b", "c"]
    with pytest.raises(Dropped):
        await slow.next(1.0)
    assert feed.subscribers == 1 and feed.dropped == 1
    assert await fast.next(0.01) == []
    waiting = asyncio.create_task(fast.next(60.0))
    await asyncio.sleep(0)
    feed.close()
    assert await waiting == [] and fast.closed


async def put_persona(r: Rig, body: dict[str, Any]) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as s,
        s.put(r.base + "/control/persona", json=body) as rsp,
    ):
        return rsp.status, await rsp.json()


async def test_persona_switched_at_run_time(sim_rig: Make) -> None:
    r = await sim_rig()
    listed = await r.control("GET", "/personas")
    assert listed["current"] == "strict-3gpp"
    assert {"aggregator", "mbuni-digest"} <= {p["name"] for p in listed["personas"]}
    status, data = await put_persona(r, {"name": "no-such"})
    assert status == 400 and data["error"].startswith("name:") and "aggregator" in data["error"]
    status, data = await put_persona(r, {"name": "../scenarios/slow-answers"})
    assert status == 400 and "unknown persona" in data["error"]
    status, data = await put_persona(r, {})
    assert status == 400 and data["error"].startswith("name:")
    assert (await r.control("GET", "/persona"))["name"] == "strict-3gpp"  # nothing changed
    status, data = await put_persona(r, {"name": "aggregator"})
    assert status == 200 and data["require_smil"] is True
    two = submit("+15551230001", "+15551230002", smil=True, report=False)
    async with r.client() as client:
        with pytest.raises(MM7ClientError) as info:
            await client.submit(two)
    assert info.value.code == 3003
    # mbuni-digest asks for Digest authentication: a request without it gets 401 + 4001
    assert (await put_persona(r, {"name": "mbuni-digest"}))[0] == 200
    async with r.client() as client:
        with pytest.raises(MM7ClientError) as info:
            await client.submit(submit(report=False))
    assert info.value.http_status == 401
    assert (await put_persona(r, {"name": "strict-3gpp"}))[0] == 200
    async with r.client() as client:
        assert (await client.submit(submit(report=False))).status.code == 1000


async def test_a_fault_aimed_at_one_operation_lets_others_pass(sim_rig: Make) -> None:
    r = await sim_rig()
    await r.control(
        "POST", "/faults", {"once": [{"kind": "status", "code": 4006, "operation": "SubmitReq"}]}
    )
    async with r.client() as client:
        with pytest.raises(MM7ClientError) as info:
            await client.send(CancelReq(vasp_id="vasp", message_id="sim-unknown"))
        assert info.value.code == 2005  # the cancel passed the fault by
        with pytest.raises(MM7ClientError) as info:
            await client.submit(submit(report=False))
        assert info.value.code == 4006
        assert (await client.submit(submit(report=False))).status.code == 1000
    faults = await r.control("GET", "/faults")
    assert faults["once"] == []


async def test_console_page_and_assets_are_served_with_a_strict_policy(sim_rig: Make) -> None:
    r = await sim_rig()
    status, _ = await get(r, "/ui")
    async with aiohttp.ClientSession() as s, s.get(r.base + "/ui") as page:
        html = await page.text()
        policy = page.headers["Content-Security-Policy"]
    assert status == 200 and "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert '<script src="/ui/console.js" defer></script>' in html
    assert html.count("<script") == 1 and 'data-control="/control"' in html
    async with aiohttp.ClientSession() as s:
        async with s.get(r.base + "/ui/console.js") as js:
            assert js.status == 200 and js.content_type == "text/javascript"
            assert "innerHTML" not in await js.text()
        async with s.get(r.base + "/ui/console.css") as css:
            assert css.status == 200 and css.content_type == "text/css"
        async with s.get(r.base + "/ui/other.js") as missing:
            assert missing.status == 404
        async with s.get(r.base + "/ui/messages") as messages:
            assert messages.status == 200 and "No messages yet" in await messages.text()


class OtherVersionVasp(Vasp):
    """Answers every request properly but in another schema version (REL-6-MM7-1-0)."""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        message = decode(body, request.headers.get("Content-Type")).message
        self.hits.append(Hit(dict(request.headers), body, message))
        self.changed.set()
        assert isinstance(message, Request)
        other = get_version("REL-6-MM7-1-0")
        rsp = reply_to(message, RESPONSE_FOR[type(message)](status=Status.of(1000)))
        rsp = dataclasses.replace(
            rsp, namespace=other.namespace, mm7_version=other.default_mm7_version
        )
        encoded = encode(rsp, STRICT_3GPP)
        return web.Response(body=encoded.body, headers={"Content-Type": encoded.content_type})


async def test_leniencies_are_shown_both_ways(sim_rig: Make) -> None:
    """What the simulator had to forgive is on the row and in the detail: an unknown element in
    a SubmitReq it took (in), a VASP's answer in another schema version (out)."""
    r = await sim_rig(strict=False, vasp=OtherVersionVasp())
    encoded = encode(submit("+15551230001", tid="tx-lenient"))
    bogus = encoded.body.replace(
        b"<mm7:Recipients>", b"<mm7:Bogus>x</mm7:Bogus><mm7:Recipients>", 1
    )
    status, _, _ = await r.post(bogus, encoded.content_type)
    assert status == 200
    await r.vasp.wait(1)
    await r.sim.dlr.idle()
    listed = await traffic(r)
    [taken] = [e for e in listed if e["transaction_id"] == "tx-lenient"]
    assert taken["status_code"] == 1000 and taken["leniencies"] == ["unknown-element"]
    status, detail = await get(r, f"/control/traffic/{taken['id']}")
    assert status == 200 and detail["leniencies"] == ["unknown-element"]
    [out] = [e for e in listed if e["direction"] == "out"]
    assert out["status_code"] == 1000 and out["version"] == "REL-6-MM7-1-4"
    assert out["leniencies"] == ["response-version-mismatch"], out
    strict = await sim_rig()  # a proper request needs none: the key is left out
    async with strict.client() as client:
        await client.submit(submit("+15551230001", report=False, tid="tx-strict"))
    [clean] = await traffic(strict)
    assert "leniencies" not in clean
