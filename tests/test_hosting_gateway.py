"""Hosted media end to end: a real Gateway (SQLite, loopback listeners) and the bundled simulator
as the MMSC. A message whose photo cannot fit a tiny ``too_big = "link"`` profile reaches the
handset as a text with the link to its hosted page; the link opens the page and the original
photo, safely; a tampered or expired link is refused; retention takes the page away. With
``too_big = "refuse"`` (the default) such a message still fails. And the configuration: every
[hosting] key, and a "link" profile without hosting refused at start."""

from __future__ import annotations

import base64
import io
import random
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog.testing
from aiohttp import web
from PIL import Image

from mm7.content.builder import from_part
from mm7.service.config.loader import load_config
from mm7.service.errors import ConfigError
from mm7.service.runtime import Gateway
from mm7.simulator.app import SIMULATOR
from tests.helpers.api import validate
from tests.helpers.runtime import AUTH, bound_socket, start_simulator, wait_for, write_config
from tests.test_simulator_ui import browser, run_browser

#: a content limit no photo fits (its smallest rendition of noise is ~2 KB), while the text and
#: a link do (~0.9 KB)
TINY = 'max_message_bytes = 1200\ntoo_big = "{too_big}"\n'
#: recipients of the "strict" link, whose tiny profile refuses instead
STRICT = """
[links.strict]
url = "http://127.0.0.1:9/mm7"
profile = "tiny-refuse"
prefixes = ["+1203"]
"""
#: the page's background (its style block), which the browser test looks for
PAGE_BACKGROUND = (244, 244, 244)


def noise_jpeg(seed: int = 7) -> bytes:
    """A JPEG of random pixels (400x300): no rendition of it is small."""
    rng = random.Random(seed)
    image = Image.frombytes("RGB", (400, 300), rng.randbytes(400 * 300 * 3))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


PHOTO = noise_jpeg()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def configure(tmp_path: Path, mmsc_port: int, hosting: str) -> Path:
    """The runtime's test config with the tiny profiles, link "main" on the "link" one."""
    profiles = tmp_path / "profiles"
    profiles.mkdir(exist_ok=True)
    (profiles / "tiny-link.toml").write_text(TINY.format(too_big="link"))
    (profiles / "tiny-refuse.toml").write_text(TINY.format(too_big="refuse"))
    path = write_config(tmp_path, mmsc_port, extra=STRICT + hosting)
    text = path.read_text().replace("[links.main]\n", '[links.main]\nprofile = "tiny-link"\n', 1)
    path.write_text(text)
    return path


@dataclass
class Running:
    gateway: Gateway
    sim: web.Application
    http: aiohttp.ClientSession

    @property
    def api(self) -> str:
        assert self.gateway.api_url is not None
        return self.gateway.api_url

    async def post(self, body: dict[str, Any]) -> str:
        async with self.http.post(f"{self.api}/v1/messages", json=body, headers=AUTH) as rsp:
            assert rsp.status == 202, await rsp.text()
            return str((await rsp.json())["id"])

    async def view(self, message_id: str) -> dict[str, Any]:
        async with self.http.get(f"{self.api}/v1/messages/{message_id}", headers=AUTH) as rsp:
            body: dict[str, Any] = await rsp.json()
        validate("Message", body)
        return body

    async def final(self, message_id: str) -> dict[str, Any]:
        async def done() -> dict[str, Any] | None:
            view = await self.view(message_id)
            return view if view["status"] in ("delivered", "failed") else None

        result: dict[str, Any] = await wait_for(done)
        return result

    async def get(self, url: str) -> tuple[int, bytes, aiohttp.ClientResponse]:
        async with self.http.get(url) as response:
            return response.status, await response.read(), response


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    with bound_socket() as mmsc:
        path = configure(tmp_path, mmsc.getsockname()[1], "\n[hosting]\nenabled = true\n")
        gateway = Gateway(load_config(path, env={}), configure_logs=False, announce=lambda _: None)
        await gateway.start()
        sim_app, sim_runner = await start_simulator(mmsc, gateway.inbound_url)
        try:
            async with aiohttp.ClientSession() as http:
                yield Running(gateway, sim_app, http)
            await sim_app[SIMULATOR].dlr.idle()
        finally:
            await gateway.stop()
            await sim_runner.cleanup()


async def test_a_message_too_big_for_the_profile_goes_as_text_with_its_hosted_link(
    running: Running,
) -> None:
    message_id = await running.post(
        {
            "to": "+12025550001",
            "subject": "Trip",
            "text": "Holiday photos",
            "media": [{"content_base64": b64(PHOTO), "content_type": "image/jpeg"}],
            "delivery_report": True,
        }
    )
    view = await running.final(message_id)
    assert view["status"] == "delivered", view
    url = view["hosted_url"]
    assert url.startswith(f"{running.api}/m/")

    # what the handset got: one text, the message's own and the link, and no photo
    mm7_id = view["recipients"][0]["mm7_message_id"]
    submitted = running.sim[SIMULATOR].submitted[mm7_id]
    assert submitted.subject == "Trip" and submitted.content is not None
    presentation = from_part(submitted.content)
    assert [item.media_type for item in presentation.items] == ["text/plain"]
    text = presentation.items[0].data.decode("utf-8")
    assert text == f"Holiday photos\n\n{url}"

    # the message's history says so, as the API shows it
    (event,) = [e for e in view["events"] if e["kind"] == "submitted"]
    assert event["details"]["link_fallback"] == url
    assert any("replaced by the link fallback" in line for line in event["details"]["fitted"])

    # the link from the text opens the page, and the page the original photo
    sent_url = re.search(r"https?://\S+", text)
    assert sent_url is not None
    status, page, response = await running.get(sent_url.group(0))
    assert status == 200 and response.content_type == "text/html"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert b"<h1>Trip</h1>" in page and b"Holiday photos" in page
    src = re.search(rb'<img src="([^"]+)"', page)
    assert src is not None
    status, body, response = await running.get(f"{url.rsplit('/', 1)[0]}/{src.group(1).decode()}")
    assert status == 200 and body == PHOTO
    assert response.content_type == "image/jpeg"
    assert response.headers["Content-Security-Policy"] == "sandbox; default-src 'none'"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Disposition"].startswith("inline")

    # tampered, or signed but expired: refused
    token = url.rsplit("/", 1)[1]
    tampered = url[: -len(token)] + token[:10] + ("x" if token[10] != "x" else "y") + token[11:]
    assert (await running.get(tampered))[0] == 403
    hosting = running.gateway.hosting
    store = running.gateway.store
    assert hosting is not None and store is not None
    content = await store.message_content(message_id)
    assert content is not None
    assert await hosting.url_for(store, message_id) == url
    assert await hosting.url_for(store, "0" * 28) is None
    expired = hosting.page_url(message_id, content.created_at - timedelta(days=31))
    status, body, _ = await running.get(expired)
    assert status == 410 and PHOTO not in body

    # retention removes the page with the message
    stats = await store.purge(datetime.now(UTC) + timedelta(days=1))
    assert stats.messages >= 1
    for target in (url, f"{url}/0"):
        status, body, _ = await running.get(target)
        assert status == 410 and PHOTO not in body and b"Holiday" not in body


async def test_a_message_that_fits_goes_as_mms_and_still_has_its_page(running: Running) -> None:
    message_id = await running.post({"to": "+12025550002", "text": "Short and sweet"})
    view = await running.final(message_id)
    assert view["status"] == "delivered"
    (event,) = [e for e in view["events"] if e["kind"] == "submitted"]
    assert "link_fallback" not in event["details"]
    mm7_id = view["recipients"][0]["mm7_message_id"]
    content = running.sim[SIMULATOR].submitted[mm7_id].content
    assert content is not None
    assert view["hosted_url"].encode() not in content.children[1].body
    status, page, _ = await running.get(view["hosted_url"])
    assert status == 200 and b"Short and sweet" in page


async def test_the_default_profile_rule_still_fails_the_recipient(running: Running) -> None:
    # link "strict": its tiny profile says too_big = "refuse"
    message_id = await running.post(
        {
            "to": "+12035550003",
            "text": "too big",
            "media": [{"content_base64": b64(PHOTO), "content_type": "image/jpeg"}],
        }
    )
    view = await running.final(message_id)
    assert view["status"] == "failed"
    recipient = view["recipients"][0]
    assert recipient["status"] == "failed" and recipient["mm7_message_id"] is None
    assert "does not fit profile 'tiny-refuse'" in recipient["last_status_text"]
    assert all("link_fallback" not in e["details"] for e in view["events"])


async def test_the_page_renders_in_a_browser_under_its_policy(
    running: Running, tmp_path: Path
) -> None:
    binary = browser()
    colour = (20, 180, 60)
    out = io.BytesIO()
    Image.new("RGB", (160, 120), colour).save(out, "JPEG", quality=95)
    message_id = await running.post(
        {
            "to": "+12025550004",
            "text": "In <b>colour</b>",
            "media": [{"content_base64": b64(out.getvalue()), "content_type": "image/jpeg"}],
        }
    )
    url = (await running.view(message_id))["hosted_url"]
    dom = await run_browser(binary, tmp_path / "profile", "--dump-dom", url)
    assert b"In &lt;b&gt;colour&lt;/b&gt;" in dom and b"<b>" not in dom
    shot = tmp_path / "page.png"
    await run_browser(
        binary, tmp_path / "profile", f"--screenshot={shot}", "--window-size=600,800", url
    )
    with Image.open(shot) as screenshot:
        raw = screenshot.convert("RGB").tobytes()
    pixels = list(zip(raw[0::3], raw[1::3], raw[2::3], strict=True))

    def near(pixel: tuple[int, int, int], target: tuple[int, int, int]) -> bool:
        return all(abs(a - b) <= 16 for a, b in zip(pixel, target, strict=True))

    # the policy let the image load (img-src 'self') and the style block apply (by its hash)
    assert sum(near(p, colour) for p in pixels) >= 160 * 120 // 2
    assert sum(p == PAGE_BACKGROUND for p in pixels) >= len(pixels) // 4


# --------------------------------------------------------------------------- configuration


def test_hosting_keys_are_read(tmp_path: Path) -> None:
    path = configure(
        tmp_path,
        9,
        '\n[hosting]\nenabled = true\nurl_base = "https://mms.example.com/"\nttl = "7d"\n'
        'secret_env = "HOSTING_KEY"\n',
    )
    hosting = load_config(path, env={"HOSTING_KEY": "s3cret"}).hosting
    assert hosting.enabled and hosting.url_base == "https://mms.example.com"
    assert hosting.ttl == 7 * 86400 and hosting.secret is not None
    assert hosting.secret.reveal() == "s3cret" and "s3cret" not in repr(hosting)


@pytest.mark.parametrize(
    ("table", "where", "why"),
    [
        (
            "",
            "links.main.profile",
            '[hosting] is not enabled: set [hosting] enabled = true, or too_big = "refuse"',
        ),
        ("enabled = false\n", "links.main.profile", "tiny-link"),
        ('enabled = true\nurl_base = "ftp://x"\n', "hosting.url_base", "http:// or https://"),
        ('enabled = true\nurl_base = "https://u:p@x"\n', "hosting.url_base", "credentials"),
        ('enabled = true\nttl = "soon"\n', "hosting.ttl", ""),
        ('enabled = true\nttl = "0s"\n', "hosting.ttl", ""),
        ('enabled = true\nttl = "4000d"\n', "hosting.ttl", "at most 3650d"),
        ('enabled = "yes"\n', "hosting.enabled", ""),
        ('enabled = true\nsecret_env = "NOT_SET_ANYWHERE"\n', "hosting.secret_env", "not set"),
        ('enabled = true\nurl = "https://x"\n', "hosting", "url"),
    ],
)
def test_bad_hosting_settings_are_refused_naming_the_key(
    tmp_path: Path, table: str, where: str, why: str
) -> None:
    path = configure(tmp_path, 9, f"\n[hosting]\n{table}")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    message = str(err.value)
    assert where in message and why in message, message


@pytest.mark.parametrize(
    ("url_base", "warned"), [("", True), ('url_base = "https://mms.example.com"\n', False)]
)
async def test_a_guessed_url_base_is_warned_about_a_set_one_is_not(
    tmp_path: Path, url_base: str, warned: bool
) -> None:
    """A deployment without ``[hosting] url_base`` is told its pages' links use the API's
    address (``mm7 demo`` sets it: tests/test_demo.py checks its output has no warning)."""
    path = write_config(tmp_path, 9, extra=f"\n[hosting]\nenabled = true\n{url_base}")
    gateway = Gateway(load_config(path, env={}), configure_logs=False, announce=lambda _: None)
    with structlog.testing.capture_logs() as captured:
        await gateway.start()
        await gateway.stop()
    guessed = [e for e in captured if e["event"] == "mm7.gateway.hosting_url_base_guessed"]
    assert bool(guessed) is warned
