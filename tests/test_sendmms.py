"""Mbuni's sendmms through the real API app and SQLite store; report callbacks through the real
relay worker to a real aiohttp receiver on 127.0.0.1."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import FormData, web
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from mm7.core.model import MessageClass
from mm7.core.status import MMStatus
from mm7.service.api.app import create_api_app
from mm7.service.config.settings import RelaySettings
from mm7.service.mt.submit_build import BuiltContent, build_submit, read_fields
from mm7.service.relay.worker import RelayWorker
from mm7.service.store.sqlite.store import SqliteStore
from tests.helpers.api import KEY, Gateway, make_config

LEASE = timedelta(minutes=1)
BASE = {"username": "app", "password": KEY, "to": "+12015550100", "text": "hi"}


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    # the dlr-url / rr-url receivers listen on 127.0.0.1
    config = make_config(tmp_path, allow_private=True)
    store = await SqliteStore.open(config.store.path)
    client = TestClient(TestServer(create_api_app(config, store), host="127.0.0.1", port=0))
    await client.start_server()
    yield Gateway(client, store, config.store.path)
    await client.close()
    await store.close()


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 12), "blue").save(out, format="PNG")
    return out.getvalue()


async def accepted(response: Any) -> str:
    text = await response.text()
    assert response.status == 200, text
    assert text.startswith("Accepted: ") and "\n" not in text
    return text.removeprefix("Accepted: ")


async def test_every_parameter_reaches_the_stored_message(gw: Gateway) -> None:
    params = {
        **BASE,
        "to": "+12015550100, +12015550101",
        "from": "12345",
        "subject": "Hallo",
        "mmsc": "uk",
        "priority": "High",
        "servicecode": "SVC7",
        "validityperiod": "90",
        "mclass": "informational",
        "vasid": "news",
        "allow-adaptations": "0",
        "distribution": "true",
        "dlr-url": "http://127.0.0.1:1/dlr?id=%I&s=%d",
        "rr-url": "http://127.0.0.1:1/rr?id=%I",
        "base-url": "http://localhost",
    }
    before = datetime.now(UTC)
    message_id = await accepted(await gw.client.get("/cgi-bin/sendmms", params=params))
    record = await gw.store.get_message(message_id)
    assert record is not None
    assert record.link == "uk" and record.fields["source"] == "sendmms"
    assert [r.address for r in record.recipients] == ["+12015550100", "+12015550101"]
    f = record.fields
    assert (f["from"], f["subject"], f["text"]) == ("12345", "Hallo", "hi")
    assert (f["priority"], f["service_code"], f["expiry"]) == ("High", "SVC7", "PT90M")
    assert f["delivery_report"] is True and f["read_reply"] is True
    assert f["sendmms"] == {
        "dlr_url": "http://127.0.0.1:1/dlr?id=%I&s=%d",
        "rr_url": "http://127.0.0.1:1/rr?id=%I",
        "message_class": "Informational",
        "vas_id": "news",
        "allow_adaptations": False,
        "distribution": True,
    }
    assert record.callback_url == params["dlr-url"]
    assert record.expires_at is not None
    assert timedelta(minutes=89) < record.expires_at - before < timedelta(minutes=91)


async def test_post_form_with_a_content_file_and_a_latin1_text(gw: Gateway) -> None:
    form = FormData()
    for name in ("username", "password", "to"):
        form.add_field(name, BASE[name])
    form.add_field("content", png(), filename="pic.png", content_type="image/png")
    message_id = await accepted(await gw.client.post("/cgi-bin/sendmms", data=form))
    record = await gw.store.get_message(message_id)
    assert record is not None
    assert [p.content_type for p in record.parts] == ["image/png"]

    # text percent-encoded in ISO-8859-1, as Mbuni's charset parameter says
    query = f"username=app&password={KEY}&to=%2B12015550100&text=gr%FC%DFe&charset=iso-8859-1"
    message_id = await accepted(await gw.client.get(f"/sendmms?{query}"))
    record = await gw.store.get_message(message_id)
    assert record is not None and record.fields["text"] == "grüße"


@pytest.mark.parametrize(
    ("params", "status", "body"),
    [
        ({**BASE, "password": "wrong"}, 401, "Authentication failed"),
        ({**BASE, "username": "other"}, 401, "Authentication failed"),
        ({k: v for k, v in BASE.items() if k != "to"}, 400, "Missing recipient!"),
        ({**BASE, "to": " "}, 400, "Missing recipient!"),
        ({k: v for k, v in BASE.items() if k != "text"}, 400, "Missing content"),
        ({**BASE, "tx": "typo"}, 400, "Error: tx: unknown parameter"),
        ({**BASE, "mclass": "loud"}, 422, "Error: mclass: expected Personal"),
        ({**BASE, "priority": "urgent"}, 422, "Error: priority: expected Low"),
        ({**BASE, "validityperiod": "-5"}, 422, "Error: validityperiod: expected a whole"),
        ({**BASE, "allow-adaptations": "maybe"}, 422, "Error: allow-adaptations: expected 1"),
        ({**BASE, "mms-direction": "MO"}, 422, "Error: mms-direction: only MT"),
        ({**BASE, "charged-party": "Sender"}, 422, "Error: charged-party: not supported"),
        ({**BASE, "dlr-url": "ftp://x/y"}, 422, "Error: dlr-url: expected an http"),
        ({**BASE, "rr-url": "http://%p.example/"}, 422, "Error: rr-url: %-escapes"),
        ({**BASE, "charset": "klingon"}, 422, "Error: charset: unknown character set"),
        ({**BASE, "mmsc": "nowhere"}, 422, "Error: mmsc: unknown link 'nowhere'"),
        ({**BASE, "to": "not-a-number"}, 422, "Error: to[0]:"),
        ({**BASE, "servicecode": "x" * 300}, 422, "Error: servicecode: too long"),
        (
            {
                "username": "app",
                "password": KEY,
                "to": "+12015550100",
                "content-url": "http://127.0.0.1/a",
            },
            400,
            "failed to fetch content from url [http://127.0.0.1/a]!",
        ),
    ],
)
async def test_answers_and_nothing_written(
    gw: Gateway, params: dict[str, str], status: int, body: str
) -> None:
    before = gw.counts()
    response = await gw.client.get("/cgi-bin/sendmms", params=params)
    text = await response.text()
    assert response.status == status, text
    if body.startswith("Error:") or body.startswith("failed"):
        assert text.startswith(body), text
    else:
        assert text == body
    assert gw.counts() == before


class Receiver:
    """A dlr-url / rr-url endpoint on 127.0.0.1: records each GET (URL and headers)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str]]] = []

    async def handle(self, request: web.Request) -> web.Response:
        assert request.method == "GET"
        self.calls.append((str(request.rel_url), dict(request.headers)))
        return web.Response(text="ok")


async def test_dlr_and_rr_urls_are_called_with_escapes_and_mbuni_headers(gw: Gateway) -> None:
    rx = Receiver()
    app = web.Application()
    app.router.add_get("/dlr", rx.handle)
    app.router.add_get("/rr", rx.handle)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    base = f"http://127.0.0.1:{server.port}"
    params = {
        **BASE,
        # stored as E.164: %p and %q agree; a sender with Mbuni's "00" shows %Q's "+"
        "to": "+12015550100",
        "from": "0012345",
        "dlr-url": f"{base}/dlr?id=%I&type=%d&st=%A&to=%p&q=%q&from=%P&fq=%Q&smsc=%i&mid=%F&u=%n"
        "&pct=%%",
        "rr-url": f"{base}/rr?id=%I&st=%A&type=%d&t=%T",
    }
    message_id = await accepted(await gw.client.get("/cgi-bin/sendmms", params=params))
    [item] = await gw.store.lease("main", "dispatcher", 10, LEASE)
    assert await gw.store.complete(item, "MMSC 1", 1000, "Success")
    await gw.store.record_delivery_report("main", "MMSC 1", "+12015550100", MMStatus.RETRIEVED)
    await gw.store.record_read_reply("main", "MMSC 1", "+12015550100", "Read")
    # the receiver is on 127.0.0.1: the key may reach it, as [api.fetch] allow_private says
    worker = RelayWorker(
        gw.store, RelaySettings(), poll_interval=0.05, allows_private=lambda name: True
    )
    try:
        for _ in range(3):
            await worker.run_once()
            await worker.idle()
    finally:
        await worker.stop()
        await server.close()
    urls = sorted(url for url, _ in rx.calls)
    common = f"id={message_id}&"
    assert urls == sorted(
        [
            f"/dlr?{common}type=8&st=Forwarded&to=%2B12015550100&q=%2B12015550100&from=0012345"
            "&fq=%2B12345"
            "&smsc=main&mid=MMSC%201&u=app&pct=%",
            f"/dlr?{common}type=1&st=Retrieved&to=%2B12015550100&q=%2B12015550100&from=0012345"
            "&fq=%2B12345"
            "&smsc=main&mid=MMSC%201&u=app&pct=%",
            *[u for u in urls if u.startswith(f"/rr?{common}st=Read&type=1&t=")],
        ]
    ), urls
    assert sum(u.startswith("/rr?") for u in urls) == 1
    headers = {h["X-Mbuni-MM-Status"]: h for _, h in rx.calls}
    assert headers["Retrieved"]["X-Mbuni-Report-Type"] == "delivery-report"
    assert headers["Read"]["X-Mbuni-Report-Type"] == "read-report"
    for h in headers.values():
        assert h["X-Mbuni-TransactionID"] == message_id
        assert h["X-Mbuni-Message-ID"] == "MMSC 1" and h["X-Mbuni-From"] == "+12015550100"
        assert h["X-Mbuni-MMSC-ID"] == "main"
        assert "X-MM7-Signature" not in h


async def test_mclass_vasid_adaptations_and_distribution_reach_the_submitreq(
    gw: Gateway, tmp_path: Path
) -> None:
    params = {**BASE, "mclass": "Advertisement", "vasid": "promo", "allow-adaptations": "1",
              "distribution": "false"}  # fmt: skip
    message_id = await accepted(await gw.client.get("/cgi-bin/sendmms", params=params))
    record = await gw.store.get_message(message_id)
    assert record is not None
    [item] = await gw.store.lease("main", "dispatcher", 10, LEASE)
    settings = make_config(tmp_path, allow_private=False).link("main")
    submit = build_submit(item, read_fields(record.fields), BuiltContent(None), settings)
    assert submit.message_class is MessageClass.ADVERTISEMENT and submit.vas_id == "promo"
    assert submit.allow_adaptations is True and submit.distribution_indicator is False
    # a plain message keeps the link's VASID and sends none of them
    plain = build_submit(item, read_fields({"v": 1}), BuiltContent(None), settings)
    assert plain.vas_id == settings.vas_id and plain.message_class is None
    assert plain.allow_adaptations is None and plain.distribution_indicator is None
