"""What the relay really POSTs matches the ``webhooks`` of the OpenAPI document.

The real gateway (``Gateway`` from a TOML file: inbound endpoint, SQLite store, relay worker)
relays to an application's hook on loopback, which keeps every request's headers and raw body.
MOs arrive as MMSCs sent them (fixtures: with media by URL and inline, without a Sender, with
missing elements), status events come from the store's dispatch outcomes, delivery reports and
read replies through the inbound endpoint (one report matching no message). Each body must
validate against its webhook's request schema, each documented header must be there and match
its schema, and the signature must verify with the hook's secret.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from mm7.core.capture import read_capture
from mm7.core.codec import encode
from mm7.core.model import Address, AddressKind, DeliveryReportReq, ReadReplyReq
from mm7.core.status import MMStatus, ReadStatus
from mm7.core.versions import NAMESPACE_BASE
from mm7.service.api.app import OPENAPI_PATH
from mm7.service.config.loader import load_config
from mm7.service.relay.signing import verify
from mm7.service.runtime import Gateway
from mm7.service.store.outbox import RelayKind
from mm7.service.store.records import NewMessage

FIXTURES = Path(__file__).parent / "fixtures" / "soap"
SECRET = "hook-secret-0123456789"
DOCUMENT = json.loads(OPENAPI_PATH.read_text())

CONFIG = """
[links.a]
url = "http://127.0.0.1:9/mm7/a"
default = true
sender_address = "12345"
[links.b]
url = "http://127.0.0.1:9/mm7/b"
prefixes = ["+44"]
sender_address = "12345"

[inbound]
listen = "127.0.0.1:0"
[inbound.peers.mmsc]
link = "a"
basic = {{ username = "mmsc", password = "mmsc-pw" }}
[inbound.peers.other]
link = "b"
basic = {{ username = "other", password = "other-pw" }}

[api]
listen = "127.0.0.1:0"
[[api.keys]]
name = "app"
key = "webhook-api-key-0123456789"

[store]
path = "{db}"

[relay]
initial_backoff = "0.05s"
max_backoff = "0.1s"
[relay.hooks.app]
url = "{hook}"
secret = "{secret}"
[[relay.routes]]
name = "inline"
links = ["b"]
hook = "app"
media = "inline"
[relay.default_route]
hook = "app"
status_hook = "app"

[logging]
level = "warning"
"""


@dataclass
class Hook:
    """The application: keeps every request's headers and raw body."""

    seen: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    async def wait(self, n: int) -> None:
        for _ in range(1000):
            if len(self.seen) >= n:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{n} events expected, got {len(self.seen)}")


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[tuple[Gateway, Hook]]:
    hook = Hook()
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    path = tmp_path / "gateway.toml"
    db = (tmp_path / "mm7.sqlite").as_posix()
    path.write_text(CONFIG.format(db=db, hook=server.make_url("/hook"), secret=SECRET))
    gateway = Gateway(
        load_config(path, env={}), configure_logs=False, poll_interval=3600, announce=lambda x: None
    )
    await gateway.start()
    try:
        yield gateway, hook
    finally:
        await gateway.stop()
        await server.close()


async def post(gateway: Gateway, body: bytes, content_type: str, peer: str = "mmsc") -> None:
    credentials = base64.b64encode(f"{peer}:{peer}-pw".encode()).decode()
    headers = {"Content-Type": content_type, "Authorization": f"Basic {credentials}"}
    assert gateway.inbound_url is not None
    async with (
        aiohttp.ClientSession() as session,
        session.post(gateway.inbound_url, data=body, headers=headers) as answer,
    ):
        assert answer.status == 200, await answer.text()


async def post_fixture(gateway: Gateway, name: str, peer: str = "mmsc") -> None:
    capture = read_capture((FIXTURES / name).read_bytes())
    await post(gateway, capture.body, capture.content_type or "text/xml", peer)


def report(message_id: str, handset: str, status: MMStatus) -> tuple[bytes, str]:
    encoded = encode(
        DeliveryReportReq(
            transaction_id=f"dlr-{message_id}-{status.value}",
            namespace=NAMESPACE_BASE + "REL-6-MM7-1-4",
            mm7_version="6.8.0",
            message_id=message_id,
            recipient=Address(handset),
            sender=Address("12345", AddressKind.SHORT_CODE),
            date=datetime(2026, 11, 30, 10, 20, tzinfo=UTC),
            mm_status=status,
        )
    )
    return encoded.body, encoded.content_type


def with_components(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "components": DOCUMENT["components"]}


def check(headers: dict[str, str], body: bytes) -> str:
    """``body`` and ``headers`` against the webhook of the body's type; the type."""
    event = json.loads(body)
    operation = DOCUMENT["webhooks"][event["type"]]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    jsonschema.validate(event, with_components(schema), cls=jsonschema.Draft202012Validator)
    for parameter in operation["parameters"]:
        assert parameter["in"] == "header"
        value = headers.get(parameter["name"])
        assert value is not None or not parameter["required"], parameter["name"]
        if value is not None:
            jsonschema.validate(value, parameter["schema"], cls=jsonschema.Draft202012Validator)
    assert headers["Content-Type"].startswith("application/json")
    assert verify(SECRET.encode(), headers["X-MM7-Signature"], body, now=time.time())
    return str(event["type"])


def test_every_relayed_kind_is_a_documented_webhook() -> None:
    assert set(DOCUMENT["webhooks"]) == {kind.value for kind in RelayKind}


async def test_what_the_relay_sends_matches_the_documented_webhooks(
    rig: tuple[Gateway, Hook],
) -> None:
    gateway, hook = rig
    store = gateway.store
    assert store is not None
    # MOs: media as URLs (link a) and inline (link b), missing elements, no Sender
    await post_fixture(gateway, "nokia-mc5-deliverreq.http")
    await post_fixture(gateway, "nokia-mc5-deliverreq.http", peer="other")
    await post_fixture(gateway, "mbuni-deliverreq-no-replychargingid-rel5-1-0.xml")
    await post_fixture(gateway, "deliverreq-version-and-content-only.http")
    # status events from the dispatch outcomes
    sent = await store.enqueue_message(
        NewMessage(
            link="a", fields={"subject": "hi"}, expires_at=datetime.now(UTC) + timedelta(hours=1)
        ),
        ["+15551230001", "+15551230002", "+15551230003"],
    )
    items = {i.address: i for i in await store.lease("a", "test", 10, timedelta(seconds=60))}
    assert await store.complete(items["+15551230001"], "MID-1", 1000, "Success")
    assert await store.fail(items["+15551230002"], 2001, "bad address")
    assert await store.expire(items["+15551230003"], 4006, "busy")
    # a delivery report of the message, one of no message, a read reply
    await post(gateway, *report("MID-1", "+15551230001", MMStatus.RETRIEVED))
    await post(gateway, *report("MID-unknown", "+15551239999", MMStatus.REJECTED))
    read = encode(
        ReadReplyReq(
            transaction_id="rr-1",
            namespace=NAMESPACE_BASE + "REL-6-MM7-1-4",
            mm7_version="6.8.0",
            message_id="MID-1",
            recipient=Address("12345", AddressKind.SHORT_CODE),
            sender=Address("+15551230001"),
            timestamp=datetime(2026, 11, 30, 10, 21, tzinfo=UTC),
            mm_status=ReadStatus.READ,
        )
    )
    await post(gateway, read.body, read.content_type)

    await hook.wait(4 + 3 + 2 + 1)
    kinds = [check(headers, body) for headers, body in hook.seen]
    assert sorted(kinds) == sorted(
        ["mo"] * 4 + ["status"] * 3 + ["delivery_report"] * 2 + ["read_reply"]
    )
    events = [json.loads(body) for _, body in hook.seen]
    media = [m for e in events if e["type"] == "mo" for m in e["media"]]
    assert any("url" in m for m in media) and any("data_base64" in m for m in media)
    assert {e["status"] for e in events if e["type"] == "status"} == {
        "submitted",
        "failed",
        "expired",
    }
    assert any(e.get("message_id") == sent.message_id for e in events)
    # the keys as the README's relay section spells them
    keys = {h["Idempotency-Key"] for h, _ in hook.seen}
    assert "rr:a:MID-1:15551230001:Read" in keys
    assert "dlr:a:MID-1:15551230001:Retrieved" in keys
    record = await store.get_message(sent.message_id)
    assert record is not None
    for recipient in record.recipients:
        status = recipient.status.value if recipient.status.value != "delivered" else "submitted"
        assert f"status:{sent.message_id}:{recipient.id}:{status}" in keys
