"""The sending API (mm7.service.api.app) against a real SQLite store and real loopback servers.

Every refusal is checked to change nothing in the store: the rows of ``messages`` and ``media``
are counted in the database file before and after, and the store's write counter must not move.
Response bodies are validated against the schemas of mm7/service/api/openapi.json (jsonschema).
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aiohttp import FormData, web
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from mm7.service.api.app import create_api_app
from mm7.service.api.media_fetch import MediaFetcher, address_refusal
from mm7.service.errors import FetchError
from mm7.service.store.sqlite.store import SqliteStore
from tests.helpers.api import (
    AUTH,
    KEY,
    OPENAPI,
    OTHER_KEY,
    Gateway,
    GatewayFactory,
    make_config,
    validate,
)


def png(width: int = 32, height: int = 24, color: str = "red") -> bytes:
    """A small real PNG made here (no fixture files)."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


def noisy_png(side: int) -> bytes:
    """A PNG that compresses badly (for the size limits)."""
    image = Image.effect_noise((side, side), 100).convert("RGB")
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[GatewayFactory]:
    opened: list[tuple[TestClient[Any, Any], SqliteStore]] = []

    async def make(allow_private: bool = False) -> Gateway:
        config = make_config(tmp_path, allow_private=allow_private)
        store = await SqliteStore.open(config.store.path)
        client = TestClient(TestServer(create_api_app(config, store), host="127.0.0.1", port=0))
        await client.start_server()
        opened.append((client, store))
        return Gateway(client, store, config.store.path)

    yield make
    for client, store in opened:
        await client.close()
        await store.close()


@pytest.fixture
async def media_server() -> AsyncIterator[str]:
    """A loopback web server with media to fetch; yields its base URL."""
    image = png(40, 30, "blue")
    big = noisy_png(200)
    assert len(big) > 60000

    async def photo(request: web.Request) -> web.Response:
        return web.Response(body=image, content_type="image/png")

    async def big_known(request: web.Request) -> web.Response:
        return web.Response(body=big, content_type="image/png")

    async def big_chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        response.content_type = "image/png"
        await response.prepare(request)
        for start in range(0, len(big), 8192):
            await response.write(big[start : start + 8192])
        await response.write_eof()
        return response

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/photo.png")

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html><body>Not found</body></html>", content_type="text/html")

    async def missing(request: web.Request) -> web.Response:
        raise web.HTTPNotFound()

    app = web.Application()
    app.router.add_get("/photo.png", photo)
    app.router.add_get("/big.png", big_known)
    app.router.add_get("/chunked.png", big_chunked)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/missing.png", missing)
    app.router.add_get("/page.png", page)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}"
    await server.close()


# --------------------------------------------------------------------------- the happy path


async def test_json_message_is_committed_with_fields_and_parts(gateway: GatewayFactory) -> None:
    gw = await gateway()
    image = png()
    status, answer = await gw.post(
        {
            "to": ["+49 151 1234-5678", "alice@example.com"],
            "from": "12345",
            "subject": "Hello",
            "text": "Grüße",
            "media": [
                {"content_base64": b64(image), "content_type": "image/png", "filename": "a b.png"}
            ],
            "priority": "high",
            "delivery_report": True,
            "expiry": "P1D",
            "service_code": "SC1",
            "linked_id": "L-1",
            "callback_url": "https://app.example/status",
        }
    )
    assert status == 202, answer
    validate("Accepted", answer)
    record = await gw.store.get_message(answer["id"])
    assert record is not None
    assert record.link == "main"
    assert [r.address for r in record.recipients] == ["+4915112345678", "alice@example.com"]
    assert record.callback_url == "https://app.example/status"
    assert record.expires_at is not None
    fields = dict(record.fields)
    assert fields["v"] == 1 and fields["source"] == "api" and fields["api_key"] == "app"
    assert fields["priority"] == "High" and fields["delivery_report"] is True
    assert fields["read_reply"] is None and fields["expiry"] == "P1D"
    assert fields["from"] == "12345" and fields["text"] == "Grüße"
    # the text follows the image, so both share the one slide
    assert [p.content_type for p in record.parts] == ["image/png", "text/plain; charset=utf-8"]
    assert record.parts[0].content_location == "a_b.png"
    assert record.parts[1].content_location == "text.txt"
    slides = fields["presentation"]["slides"]
    assert slides == [
        {
            "duration_ms": 5000,
            "visual": record.parts[0].content_id,
            "text": record.parts[1].content_id,
            "audio": None,
            "refs": [],
        }
    ]
    assert fields["presentation"]["smil"] is None
    blob = await gw.store.get_media(record.parts[0].sha256)
    assert blob is not None and blob.data == image

    response = await gw.client.get(f"/v1/messages/{answer['id']}", headers=AUTH)
    assert response.status == 200
    view = await response.json()
    validate("Message", view)
    assert view["status"] == "queued"
    assert [r["status"] for r in view["recipients"]] == ["queued", "queued"]
    assert view["events"][0]["kind"] == "queued"


async def test_idempotency_key_returns_the_original_and_creates_nothing(
    gateway: GatewayFactory,
) -> None:
    gw = await gateway()
    body = {"to": "+12015550100", "text": "once", "idempotency_key": "order-7"}
    status, first = await gw.post(body)
    assert status == 202
    before = gw.counts()
    status, again = await gw.post(body)
    assert status == 200
    validate("Accepted", again)
    assert again == {"id": first["id"], "status": "duplicate"}
    assert gw.counts()[:2] == before[:2]
    # the same key with another request is refused (tests/test_api_roles.py has the details)
    status, refused = await gw.post({**body, "text": "different content, same key"})
    assert status == 422 and refused["error"]["field"] == "idempotency_key"
    assert gw.counts()[:2] == before[:2]
    # the header works too, and keys are per API key: another application gets its own message
    headers = {"Authorization": f"Bearer {OTHER_KEY}", "Idempotency-Key": "order-7"}
    status, other = await gw.post({"to": "+12015550100", "text": "x"}, headers)
    assert status == 202 and other["id"] != first["id"]
    status, other_again = await gw.post({"to": "+12015550100", "text": "x"}, headers)
    assert status == 200 and other_again["id"] == other["id"]


async def test_a_medium_hashed_once_at_intake_keys_the_digest_and_the_store(
    gateway: GatewayFactory,
) -> None:
    # the one SHA-256 taken when the base64 is decoded names the stored part and counts in the
    # request's digest: the same bytes again are a duplicate, other bytes under the key are not
    gw = await gateway()
    image = png(10, 10, "green")

    def body(data: bytes) -> dict[str, Any]:
        media = [{"content_base64": b64(data), "content_type": "image/png"}]
        return {"to": "+12015550100", "media": media, "idempotency_key": "pic-1"}

    status, first = await gw.post(body(image))
    assert status == 202
    record = await gw.store.get_message(first["id"])
    assert record is not None
    assert record.parts[0].sha256 == hashlib.sha256(image).hexdigest()
    assert record.parts[0].content_id.endswith(hashlib.sha256(image).hexdigest()[:8])
    status, again = await gw.post(body(image))
    assert (status, again["id"]) == (200, first["id"])
    status, refused = await gw.post(body(png(10, 10, "red")))
    assert status == 422 and refused["error"]["field"] == "idempotency_key"


async def test_same_media_is_stored_once(gateway: GatewayFactory) -> None:
    gw = await gateway()
    image = png(10, 10, "green")
    for n in range(3):
        status, _ = await gw.post(
            {
                "to": f"+1201555{100 + n:04d}",
                "media": [{"content_base64": b64(image), "content_type": "image/png"}],
            }
        )
        assert status == 202
    messages, media, _ = gw.counts()
    assert (messages, media) == (3, 1)


async def test_routing_by_prefix_and_explicit_link(gateway: GatewayFactory) -> None:
    gw = await gateway()
    status, answer = await gw.post({"to": "+447400123456", "text": "uk"})
    assert status == 202
    record = await gw.store.get_message(answer["id"])
    assert record is not None and record.link == "uk"
    status, answer = await gw.post({"to": "+447400123456", "text": "forced", "link": "main"})
    record = await gw.store.get_message(answer["id"])
    assert record is not None and record.link == "main"
    message = await gw.refused({"to": ["+447400123456", "+12015550100"], "text": "x"}, 422, "to")
    assert "to[0] -> uk" in message and "to[1] -> main" in message


async def test_explicit_slides_and_smil(gateway: GatewayFactory) -> None:
    gw = await gateway()
    one, two = png(8, 8, "red"), png(9, 9, "blue")
    media = [
        {"content_base64": b64(one), "content_type": "image/png", "filename": "one.png"},
        {"content_base64": b64(two), "content_type": "image/png", "filename": "two.png"},
    ]
    status, answer = await gw.post(
        {
            "to": "+12015550100",
            "text": "caption",
            "media": media,
            "slides": [{"visual": 1, "duration_ms": 3000}, {"visual": 0, "text": "text"}],
        }
    )
    assert status == 202, answer
    record = await gw.store.get_message(answer["id"])
    assert record is not None
    cids = {p.content_location: p.content_id for p in record.parts}
    slides = record.fields["presentation"]["slides"]
    assert [s["visual"] for s in slides] == [cids["two.png"], cids["one.png"]]
    assert slides[1]["text"] == cids["text.txt"] and slides[0]["duration_ms"] == 3000

    smil = (
        '<smil><head><layout><root-layout width="160" height="160"/>'
        '<region id="Image" top="0" left="0" width="160" height="120"/>'
        '<region id="Text" top="120" left="0" width="160" height="40"/></layout></head>'
        '<body><par dur="5000ms"><img src="one.png" region="Image"/>'
        '<text src="text.txt" region="Text"/></par>'
        '<par dur="5000ms"><img src="two.png" region="Image"/></par></body></smil>'
    )
    status, answer = await gw.post(
        {"to": "+12015550100", "text": "caption", "media": media, "smil": smil}
    )
    assert status == 202, answer
    record = await gw.store.get_message(answer["id"])
    assert record is not None
    assert record.fields["presentation"]["smil"] == smil
    assert record.fields["presentation"]["slides"] is None  # the SMIL carries them


async def test_multipart_upload(gateway: GatewayFactory) -> None:
    gw = await gateway()
    image = png(12, 12, "yellow")
    form = FormData()
    form.add_field("to", "+12015550100, +12015550101")
    form.add_field("text", "from a form")
    form.add_field("delivery_report", "true")
    form.add_field("media", image, filename="photo.jpg", content_type="image/jpeg")
    response = await gw.client.post("/v1/messages", data=form, headers=AUTH)
    answer = await response.json()
    assert response.status == 202, answer
    record = await gw.store.get_message(answer["id"])
    assert record is not None
    assert [r.address for r in record.recipients] == ["+12015550100", "+12015550101"]
    assert record.fields["delivery_report"] is True
    # the label said JPEG, the bytes are PNG: the bytes win, the file name follows
    assert record.parts[0].content_type == "image/png"
    assert record.parts[0].content_location == "photo.png"

    before = gw.counts()
    form = FormData()
    form.add_field("to", "+12015550100")
    form.add_field("colour", "red")
    response = await gw.client.post("/v1/messages", data=form, headers=AUTH)
    assert response.status == 400
    assert (await response.json())["error"]["field"] == "colour"
    assert gw.counts() == before

    # a slides field nested past the JSON parser's depth is bad JSON (400), not a crash
    form = FormData()
    form.add_field("to", "+12015550100")
    form.add_field("slides", "[" * 5000 + "]" * 5000)
    response = await gw.client.post("/v1/messages", data=form, headers=AUTH)
    error = (await response.json())["error"]
    assert response.status == 400
    assert (error["field"], error["message"]) == ("slides", "expected a JSON array")
    assert gw.counts() == before


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ([], 400, None),
        ({"text": "no recipient"}, 400, "to"),
        ({"to": 12015550100, "text": "x"}, 400, "to"),
        ({"to": ["+12015550100", "not a number"], "text": "x"}, 422, "to[1]"),
        ({"to": ["+12015550100", "+1 201 555 0100"], "text": "x"}, 422, "to[1]"),
        ({"to": [], "text": "x"}, 422, "to"),
        ({"to": "+12015550100"}, 422, "text"),
        ({"to": "+12015550100", "text": 5}, 400, "text"),
        ({"to": "+12015550100", "text": "x", "delivery_report": "yes"}, 400, "delivery_report"),
        ({"to": "+12015550100", "text": "x", "priority": "urgent"}, 422, "priority"),
        ({"to": "+12015550100", "text": "x", "expiry": "tomorrow"}, 422, "expiry"),
        ({"to": "+12015550100", "text": "x", "expiry": "2001-01-01T00:00:00Z"}, 422, "expiry"),
        (
            {"to": "+12015550100", "text": "x", "earliest_delivery": "-P1D"},
            422,
            "earliest_delivery",
        ),
        (
            {"to": "+12015550100", "text": "x", "expiry": "PT1H", "earliest_delivery": "P1D"},
            422,
            "earliest_delivery",
        ),
        ({"to": "+12015550100", "text": "x", "callback_url": "ftp://x"}, 422, "callback_url"),
        ({"to": "+12015550100", "text": "x", "delivery_reprot": True}, 400, "delivery_reprot"),
        ({"to": "+12015550100", "text": "x", "link": "nowhere"}, 422, "link"),
        ({"to": "+12015550100", "media": [{}]}, 400, "media[0]"),
        ({"to": "+12015550100", "media": [{"content_base64": "!!"}]}, 400, "media[0].content_type"),
        (
            {
                "to": "+12015550100",
                "media": [{"content_base64": "!!", "content_type": "image/png"}],
            },
            422,
            "media[0].content_base64",
        ),
        (
            {
                "to": "+12015550100",
                "media": [{"content_base64": b64(b"just text"), "content_type": "image/png"}],
            },
            422,
            "media[0]",
        ),
        ({"to": "+12015550100", "text": "x", "slides": [{"visual": 0}]}, 422, "slides[0].visual"),
        ({"to": "+12015550100", "text": "x", "slides": [{"visual": "text"}]}, 422, "slides"),
        ({"to": "+12015550100", "text": "x", "smil": "<smil/>"}, 422, "smil"),
        (
            {"to": "+12015550100", "text": "x", "slides": [{"text": "text"}], "smil": "<smil/>"},
            422,
            "smil",
        ),
    ],
)
async def test_bad_input_is_refused_naming_the_field(
    gateway: GatewayFactory, body: Any, status: int, field: str | None
) -> None:
    gw = await gateway()
    message = await gw.refused(body, status, field)
    assert message
    if field == "link":
        assert "nowhere" in message and "main" in message


async def test_not_json_and_wrong_content_type(gateway: GatewayFactory) -> None:
    gw = await gateway()
    before = gw.counts()
    response = await gw.client.post(
        "/v1/messages", data=b"{not json", headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status == 400
    validate("Error", await response.json())
    response = await gw.client.post(
        "/v1/messages", data=b"to=1", headers={**AUTH, "Content-Type": "text/plain"}
    )
    assert response.status == 415
    assert gw.counts() == before


async def test_oversized_bodies_are_refused(gateway: GatewayFactory) -> None:
    gw = await gateway()
    before = gw.counts()
    huge = {"to": "+12015550100", "text": "x" * 10_000_000}
    status, answer = await gw.post(huge)
    assert status == 413
    validate("Error", answer)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: refused while reading
        yield b'{"to": "+12015550100", "text": "'
        for _ in range(50):
            yield b"y" * 10_000
        yield b'"}'

    response = await gw.client.post(
        "/v1/messages", data=chunks(), headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status == 413
    validate("Error", await response.json())
    assert gw.counts() == before


async def test_authentication(gateway: GatewayFactory) -> None:
    gw = await gateway()
    before = gw.counts()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}):
        response = await gw.client.post(
            "/v1/messages", json={"to": "+12015550100", "text": "x"}, headers=headers
        )
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        validate("Error", await response.json())
    assert gw.counts() == before
    status, answer = await gw.post({"to": "+12015550100", "text": "mine"})
    assert status == 202
    other = {"Authorization": f"Bearer {OTHER_KEY}"}
    response = await gw.client.get(f"/v1/messages/{answer['id']}", headers=other)
    assert response.status == 404
    response = await gw.client.get("/v1/messages/nope", headers=AUTH)
    assert response.status == 404
    validate("Error", await response.json())


# --------------------------------------------------------------------------- media from URLs


async def test_media_url_fetched_when_private_allowed(
    gateway: GatewayFactory, media_server: str
) -> None:
    gw = await gateway(allow_private=True)
    status, answer = await gw.post(
        {"to": "+12015550100", "media": [{"url": f"{media_server}/redirect"}], "text": "hi"}
    )
    assert status == 202, answer
    record = await gw.store.get_message(answer["id"])
    assert record is not None
    assert record.parts[0].content_type == "image/png"
    assert record.parts[0].content_location == "photo.png"
    blob = await gw.store.get_media(record.parts[0].sha256)
    assert blob is not None and blob.data == png(40, 30, "blue")

    for path, needle in (
        ("/big.png", "too large"),
        ("/chunked.png", "too large"),
        ("/missing.png", "HTTP 404"),
        ("/page.png", "web page"),
    ):
        message = await gw.refused(
            {"to": "+12015550100", "media": [{"url": media_server + path}]}, 422, "media[0].url"
        )
        assert needle in message
    message = await gw.refused(
        {"to": "+12015550100", "media": [{"url": "ftp://example.com/a.png"}]}, 422, "media[0].url"
    )
    assert "scheme" in message


async def test_media_url_to_loopback_refused_by_default(
    gateway: GatewayFactory, media_server: str
) -> None:
    gw = await gateway()
    message = await gw.refused(
        {"to": "+12015550100", "media": [{"url": f"{media_server}/photo.png"}]}, 422, "media[0].url"
    )
    assert "loopback" in message
    port = media_server.rsplit(":", 1)[1]
    for host in ("localhost", "[::1]", "127.1.2.3"):
        await gw.refused(
            {"to": "+12015550100", "media": [{"url": f"http://{host}:{port}/photo.png"}]},
            422,
            "media[0].url",
        )


async def test_resolver_refuses_names_of_private_addresses(media_server: str) -> None:
    """A name (not an IP literal) that resolves to loopback goes through the guarded resolver."""
    from mm7.service.config.settings import FetchSettings

    fetcher = MediaFetcher(FetchSettings())
    port = media_server.rsplit(":", 1)[1]
    try:
        with pytest.raises(FetchError, match="loopback"):
            await fetcher.fetch(f"http://localhost.:{port}/photo.png")
    finally:
        await fetcher.close()


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("172.16.0.1", True),
        ("192.168.1.1", True),
        ("169.254.169.254", True),
        ("100.64.0.1", True),
        ("224.0.0.1", True),
        ("0.0.0.0", True),
        ("::1", True),
        ("fe80::1", True),
        ("fd00::1", True),
        ("::ffff:127.0.0.1", True),
        ("8.8.8.8", False),
        ("2606:4700:4700::1111", False),
    ],
)
def test_address_refusal(address: str, refused: bool) -> None:
    assert (address_refusal(address) is not None) is refused


# --------------------------------------------------------------------------- the document


async def test_openapi_served_and_matches_the_repo(gateway: GatewayFactory) -> None:
    gw = await gateway()
    response = await gw.client.get("/openapi.json")
    assert response.status == 200
    assert await response.json() == OPENAPI
    jsonschema.Draft202012Validator.check_schema(OPENAPI["components"]["schemas"]["SendRequest"])
    assert OPENAPI["openapi"].startswith("3.")
    # every route of the app is documented, with the same methods
    routes: set[tuple[str, str]] = set()
    server = gw.client.server
    assert isinstance(server, TestServer)
    for route in server.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = str(info.get("path") or info.get("formatter"))
        if route.method != "HEAD":
            routes.add((path, route.method.lower()))
    documented = {(p, m) for p, ops in OPENAPI["paths"].items() for m in ops}
    # served beside the API by the runtime (mounted so in test_api_schema, which checks them)
    operations = {
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/media/{mo_id}/{index}", "get"),
        ("/m/{token}", "get"),
        ("/m/{token}/{position}", "get"),
    }
    assert operations <= documented
    assert documented - operations <= routes
    assert routes - documented == {("/sendmms", "get"), ("/sendmms", "post")}
