"""Signed, expiring media URLs of MOs (mm7.service.relay.media_urls), served by a real aiohttp
app over a real SQLite store holding an MO with images made by Pillow."""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp import web
from PIL import Image

from mm7.service.relay.media_urls import MediaUrls, add_media_route
from mm7.service.store import MediaPart, NewMo, SqliteStore

Server = Callable[..., Awaitable[Any]]
KEY = b"media-url-key"


def image(fmt: str, color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 20), color).save(buffer, fmt)
    return buffer.getvalue()


JPEG = image("JPEG", (10, 200, 10))
PNG = image("PNG", (200, 10, 200))
TEXT = "grüße".encode()


@dataclass
class Rig:
    urls: MediaUrls
    mo_id: str
    session: aiohttp.ClientSession

    async def get(self, url: str) -> tuple[int, bytes, aiohttp.ClientResponse]:
        async with self.session.get(url) as response:
            return response.status, await response.read(), response


@pytest.fixture
async def rig(aiohttp_server: Server, tmp_path: Path) -> AsyncIterator[Rig]:
    store = await SqliteStore.open(tmp_path / "gw.db")
    result = await store.store_mo(
        NewMo(
            link="carrier",
            transaction_id="t1",
            mm7_message_id=None,
            fields={},
            parts=(
                MediaPart("image/jpeg", data=JPEG, content_location="photo.jpg"),
                MediaPart("text/plain; charset=utf-8", data=TEXT, content_location="t.txt"),
                MediaPart("image/png", data=PNG),
            ),
        )
    )
    urls = MediaUrls(KEY, "http://placeholder/", 60)
    app = web.Application()
    add_media_route(app, urls, store)
    server = await aiohttp_server(app)
    urls.base = str(server.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as session:
        yield Rig(urls, result.mo_id, session)
    await store.close()


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return parts._replace(query="&".join(f"{k}={v}" for k, v in query.items())).geturl()


async def test_a_valid_url_serves_the_bytes_with_their_type(rig: Rig) -> None:
    status, body, response = await rig.get(rig.urls.url(rig.mo_id, 0))
    assert status == 200 and body == JPEG
    assert response.content_type == "image/jpeg"
    assert response.headers["Content-Disposition"] == 'inline; filename="photo.jpg"'
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"].startswith("sandbox")
    status, body, response = await rig.get(rig.urls.url(rig.mo_id, 1))
    assert status == 200 and body == TEXT
    assert response.content_type == "text/plain" and response.charset == "utf-8"
    # anything but image, audio and video is a download, never a page of the gateway's origin
    assert response.headers["Content-Disposition"].startswith("attachment")
    status, body, response = await rig.get(rig.urls.url(rig.mo_id, 2))
    assert status == 200 and body == PNG and response.content_type == "image/png"
    assert "Content-Disposition" not in response.headers


async def test_the_url_names_the_part_and_expires_after_the_ttl(rig: Rig) -> None:
    now = 1_800_000_000
    url = rig.urls.url(rig.mo_id, 2, now=now)
    parts = urlsplit(url)
    assert parts.path == f"/media/{rig.mo_id}/2"
    assert parse_qs(parts.query)["expires"] == [str(now + 60)]


async def test_a_tampered_signature_is_refused(rig: Rig) -> None:
    url = rig.urls.url(rig.mo_id, 0)
    sig = parse_qs(urlsplit(url).query)["sig"][0]
    flipped = ("0" if sig[0] != "0" else "1") + sig[1:]
    status, body, _ = await rig.get(with_query(url, sig=flipped))
    assert status == 403 and JPEG not in body
    assert (await rig.get(with_query(url, sig="")))[0] == 403
    other = MediaUrls(b"another key", rig.urls.base, 60)
    assert (await rig.get(other.url(rig.mo_id, 0)))[0] == 403


async def test_a_tampered_index_or_expiry_is_refused(rig: Rig) -> None:
    url = rig.urls.url(rig.mo_id, 0)
    assert (await rig.get(url.replace(f"/{rig.mo_id}/0?", f"/{rig.mo_id}/1?")))[0] == 403
    expires = int(parse_qs(urlsplit(url).query)["expires"][0])
    assert (await rig.get(with_query(url, expires=str(expires + 3600))))[0] == 403
    assert (await rig.get(with_query(url, expires="soon")))[0] == 403


async def test_an_expired_url_is_refused(rig: Rig) -> None:
    url = rig.urls.url(rig.mo_id, 0, now=time.time() - 61)
    status, body, _ = await rig.get(url)
    assert status == 403 and JPEG not in body


async def test_unknown_mo_or_part_with_a_valid_signature_is_404(rig: Rig) -> None:
    assert (await rig.get(rig.urls.url("0" * 28, 0)))[0] == 404
    assert (await rig.get(rig.urls.url(rig.mo_id, 3)))[0] == 404
    base = rig.urls.url(rig.mo_id, 0)
    assert (await rig.get(base.replace(f"/{rig.mo_id}/0?", f"/{rig.mo_id}/x?")))[0] == 404


def test_check() -> None:
    urls = MediaUrls(KEY, "http://gw", 60)
    url = urls.url("mo1", 4, now=1000)
    query = parse_qs(urlsplit(url).query)
    sig = query["sig"][0]
    assert query["expires"] == ["1060"]
    assert urls.check("mo1", 4, "1060", sig, now=1000)
    assert urls.check("mo1", 4, "1060", sig, now=1060)
    assert not urls.check("mo1", 4, "1060", sig, now=1061)
    assert not urls.check("mo1", 5, "1060", sig, now=1000)
    assert not urls.check("mo2", 4, "1060", sig, now=1000)
    assert not urls.check("mo1", 4, "1061", sig, now=1000)
    assert not urls.check("mo1", 4, "soon", sig, now=1000)
    assert not urls.check("mo1", 4, "", sig, now=1000)
    assert not urls.check("mo1", 4, "1060", sig.upper(), now=1000)
    with pytest.raises(ValueError, match="must not be empty"):
        MediaUrls(b"", "http://gw", 60)


async def test_a_signature_that_is_not_ascii_is_refused_not_a_crash(rig: Rig) -> None:
    status, _, _ = await rig.get(with_query(rig.urls.url(rig.mo_id, 0), sig="%C3%A9"))
    assert status == 403
