"""Hosted pages (mm7.service.hosting.routes) served by the real API app on a loopback port over a
real SQLite store: messages posted through POST /v1/messages, their page and parts fetched as a
phone's browser would, and every refusal (a tampered, expired or removed link)."""

from __future__ import annotations

import base64
import html.parser
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from mm7.service.api.app import create_api_app
from mm7.service.hosting import HostedLinks, add_hosting_routes
from mm7.service.hosting.page import PAGE_CSP
from mm7.service.mt.submit_build import stored_presentation
from mm7.service.store import MediaPart, NewMessage, SqliteStore
from tests.helpers.api import AUTH, make_config, validate
from tests.helpers.media import VCARD, amr, iso_media

Server = Callable[..., Awaitable[Any]]
KEY = b"hosting-key"


def image(color: tuple[int, int, int], fmt: str = "JPEG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(out, fmt)
    return out.getvalue()


RED = image((220, 20, 20))
BLUE = image((20, 20, 220), "PNG")
VOICE = amr(20)
CLIP = iso_media(b"3gp4", (b"vide", b"soun"))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class Rig:
    store: SqliteStore
    links: HostedLinks
    http: aiohttp.ClientSession
    base: str

    async def post(self, body: dict[str, Any]) -> str:
        async with self.http.post(f"{self.base}/v1/messages", json=body, headers=AUTH) as rsp:
            assert rsp.status == 202, await rsp.text()
            return str((await rsp.json())["id"])

    async def view(self, message_id: str) -> dict[str, Any]:
        async with self.http.get(f"{self.base}/v1/messages/{message_id}", headers=AUTH) as rsp:
            assert rsp.status == 200
            body: dict[str, Any] = await rsp.json()
        validate("Message", body)
        return body

    async def get(
        self, url: str, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes, aiohttp.ClientResponse]:
        async with self.http.get(url, headers=headers) as response:
            return response.status, await response.read(), response


@pytest.fixture
async def rig(aiohttp_server: Server, tmp_path: Path) -> AsyncIterator[Rig]:
    config = make_config(tmp_path, allow_private=False)
    store = await SqliteStore.open(config.store.path)
    links = HostedLinks(KEY, "", 3600.0)
    app = create_api_app(config, store, hosting=links)
    add_hosting_routes(app, links, store, stored_presentation)
    server = await aiohttp_server(app)
    links.base = str(server.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as http:
        yield Rig(store, links, http, links.base)
    await store.close()


class Tags(html.parser.HTMLParser):
    """Start tags in document order, with their attributes, and the text of the page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: bytes) -> Tags:
    tags = Tags()
    tags.feed(page.decode("utf-8"))
    return tags


async def test_the_page_shows_the_slides_in_order_and_links_the_original_parts(rig: Rig) -> None:
    message_id = await rig.post(
        {
            "to": "+12025550001",
            "subject": "<b>Tea & cake</b>",
            "text": "See you at 5\n<script>alert(1)</script>",
            "media": [
                {"content_base64": b64(RED), "content_type": "image/jpeg", "filename": "red.jpg"},
                {"content_base64": b64(VOICE), "content_type": "audio/amr"},
                {"content_base64": b64(CLIP), "content_type": "video/3gpp"},
                {"content_base64": b64(VCARD), "content_type": "text/x-vcard"},
            ],
        }
    )
    view = await rig.view(message_id)
    url = view["hosted_url"]
    assert url.startswith(f"{rig.base}/m/")
    status, page, response = await rig.get(url)
    assert status == 200, page
    assert response.content_type == "text/html" and response.charset == "utf-8"
    assert response.headers["Content-Security-Policy"] == PAGE_CSP
    assert "default-src 'none'" in PAGE_CSP and "script-src" not in PAGE_CSP
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    # every text escaped: the subject and the text arrive as text, never as markup
    assert b"<script>" not in page and b"<b>" not in page
    tags = parse(page)
    text = "".join(tags.text)
    assert "<b>Tea & cake</b>" in text and "See you at 5\n<script>alert(1)</script>" in text
    assert [t for t, _ in tags.tags if t in ("script", "link", "iframe", "object")] == []
    # the default slide rule: the photo with the text and the voice, then the clip with the card
    shown = [
        (tag, attrs.get("id") or attrs.get("src") or attrs.get("href"))
        for tag, attrs in tags.tags
        if tag in ("section", "img", "audio", "video", "a")
    ]
    token = url.rsplit("/", 1)[1]
    positions = {p["content_type"].split(";")[0]: n for n, p in enumerate(view["parts"])}
    assert shown == [
        ("section", "slide-1"),
        ("img", f"{token}/{positions['image/jpeg']}"),
        ("audio", f"{token}/{positions['audio/amr']}"),
        ("section", "slide-2"),
        ("video", f"{token}/{positions['video/3gpp']}"),
        ("a", f"{token}/{positions['text/x-vcard']}"),
    ]
    # nothing from anywhere else: every reference is relative to the page
    for _, link in shown[1:]:
        assert link is not None and not link.startswith(("http", "/", "//"))
    expected = {
        "image/jpeg": (RED, "inline"),
        "audio/amr": (VOICE, "inline"),
        "video/3gpp": (CLIP, "inline"),
        "text/x-vcard": (VCARD, "attachment"),
    }
    for media_type, (data, shown_as) in expected.items():
        status, body, response = await rig.get(f"{url}/{positions[media_type]}")
        assert status == 200 and body == data, media_type
        assert response.content_type == media_type
        assert response.headers["Content-Disposition"].startswith(shown_as)
        assert response.headers["Content-Security-Policy"] == "sandbox; default-src 'none'"
        assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_explicit_slides_keep_their_order(rig: Rig) -> None:
    message_id = await rig.post(
        {
            "to": "+12025550001",
            "text": "second",
            "media": [
                {"content_base64": b64(RED), "content_type": "image/jpeg"},
                {"content_base64": b64(BLUE), "content_type": "image/png"},
            ],
            "slides": [{"visual": 1}, {"visual": 0, "text": "text"}],
        }
    )
    view = await rig.view(message_id)
    url = view["hosted_url"]
    token = url.rsplit("/", 1)[1]
    _, page, _ = await rig.get(url)
    at = {p["content_type"].split(";")[0]: n for n, p in enumerate(view["parts"])}
    order = [
        b'id="slide-1"',
        f'src="{token}/{at["image/png"]}"'.encode(),
        b'id="slide-2"',
        f'src="{token}/{at["image/jpeg"]}"'.encode(),
        b">second</p>",
    ]
    places = [page.index(marker) for marker in order]
    assert places == sorted(places)


async def test_an_active_part_is_a_sandboxed_download(rig: Rig) -> None:
    # another producer stored HTML: the page shows it as text, its URL never renders it
    evil = b"<html><script>document.cookie</script></html>"
    result = await rig.store.enqueue_message(
        NewMessage(link="main", fields={"api_key": "app", "subject": "x"}),
        ["+12025550001"],
        [MediaPart("text/html", data=evil, content_location="page.html\r\nX-Evil: 1")],
    )
    record = await rig.store.get_message(result.message_id)
    assert record is not None
    url = rig.links.page_url(record.id, record.created_at)
    status, page, _ = await rig.get(url)
    assert status == 200 and b"<script>" not in page and b"&lt;script&gt;" in page
    status, body, response = await rig.get(f"{url}/0")
    assert status == 200 and body == evil
    assert response.headers["Content-Disposition"] == 'attachment; filename="page.html__X-Evil__1"'
    assert response.headers["Content-Security-Policy"].startswith("sandbox")
    assert "X-Evil" not in response.headers


async def test_a_byte_range_is_answered_206(rig: Rig) -> None:
    message_id = await rig.post(
        {
            "to": "+12025550001",
            "media": [{"content_base64": b64(CLIP), "content_type": "video/3gpp"}],
        }
    )
    part = f"{(await rig.view(message_id))['hosted_url']}/0"
    status, body, response = await rig.get(part, {"Range": "bytes=0-9"})
    assert status == 206 and body == CLIP[:10]
    assert response.headers["Content-Range"] == f"bytes 0-9/{len(CLIP)}"
    status, body, _ = await rig.get(part, {"Range": "bytes=-5"})
    assert status == 206 and body == CLIP[-5:]
    status, body, _ = await rig.get(part, {"Range": f"bytes={len(CLIP) - 3}-"})
    assert status == 206 and body == CLIP[-3:]
    status, _, response = await rig.get(part, {"Range": f"bytes={len(CLIP)}-"})
    assert status == 416 and response.headers["Content-Range"] == f"bytes */{len(CLIP)}"
    status, body, _ = await rig.get(part, {"Range": "bytes=0-1,4-5"})  # several: the whole
    assert status == 200 and body == CLIP


async def test_tampered_expired_unknown_and_missing_are_refused(rig: Rig) -> None:
    message_id = await rig.post({"to": "+12025550001", "text": "hi", "media": [
        {"content_base64": b64(RED), "content_type": "image/jpeg"}]})  # fmt: skip
    url = (await rig.view(message_id))["hosted_url"]
    base, token = url.rsplit("/", 1)
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    for bad in (f"{base}/{flipped}", f"{base}/{flipped}/0", f"{base}/nonsense"):
        status, body, response = await rig.get(bad)
        assert status == 403 and RED not in body and b"not valid" in body
        assert response.content_type == "text/html"
        assert response.headers["Content-Security-Policy"] == PAGE_CSP
    other = HostedLinks(b"another key", rig.base, 3600)
    record = await rig.store.get_message(message_id)
    assert record is not None
    assert (await rig.get(other.page_url(message_id, record.created_at)))[0] == 403
    # signed by this gateway, but its time is up
    stale = rig.links.page_url(message_id, record.created_at - timedelta(hours=2))
    for target in (stale, f"{stale}/0"):
        status, body, _ = await rig.get(target)
        assert status == 410 and RED not in body and b"no longer available" in body
    # signed, for a message this store never had
    nowhere = rig.links.page_url("0" * 28, datetime.now(UTC))
    assert (await rig.get(nowhere))[0] == 410
    for part in ("9", "x", "00000009", "-1"):
        assert (await rig.get(f"{url}/{part}"))[0] == 404


async def test_retention_removes_the_page_with_its_message(rig: Rig) -> None:
    message_id = await rig.post({"to": "+12025550001", "text": "soon gone", "media": [
        {"content_base64": b64(RED), "content_type": "image/jpeg"}]})  # fmt: skip
    url = (await rig.view(message_id))["hosted_url"]
    assert (await rig.get(url))[0] == 200  # rendered, and kept in the page cache
    [item] = await rig.store.lease("main", "test", 1, timedelta(minutes=1))
    assert await rig.store.fail(item, 2000, "refused")  # final: retention may take it
    stats = await rig.store.purge(datetime.now(UTC) + timedelta(days=1))
    assert stats.messages == 1 and stats.media >= 1
    for target in (url, f"{url}/0"):
        status, body, _ = await rig.get(target)
        assert status == 410 and b"soon gone" not in body and RED not in body


async def test_without_hosting_there_is_no_hosted_url_and_no_route(
    aiohttp_server: Server, tmp_path: Path
) -> None:
    config = make_config(tmp_path, allow_private=False)
    store = await SqliteStore.open(config.store.path)
    try:
        server = await aiohttp_server(create_api_app(config, store))
        async with aiohttp.ClientSession(base_url=str(server.make_url(""))) as http:
            body = {"to": "+12025550001", "text": "plain"}
            async with http.post("/v1/messages", json=body, headers=AUTH) as rsp:
                message_id = (await rsp.json())["id"]
            async with http.get(f"/v1/messages/{message_id}", headers=AUTH) as rsp:
                view = await rsp.json()
            validate("Message", view)
            assert view["hosted_url"] is None
            token = HostedLinks(KEY, "http://x", 60).token(message_id, datetime.now(UTC))
            async with http.get(f"/m/{token}") as rsp:
                assert rsp.status == 404
    finally:
        await store.close()
