"""The simulator's messages page (/ui/messages) in a real headless browser (Debian's
chromium): a message submitted with an image and a text shows both on its slide, and the browser
really loads and paints the image (under the page's Content-Security-Policy). Skips, saying
why, without a chromium binary; ``.ci/run`` installs it."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import lxml.html
import pytest
from PIL import Image

from mm7.content.builder import build_presentation, to_part
from mm7.content.parts import make_items
from mm7.core.model import Address, Recipients, SubmitReq
from mm7.simulator.app import SimulatorConfig, create_simulator_app
from mm7.transport.client import MM7Client
from mm7.transport.link import LinkConfig

Server = Callable[..., Awaitable[Any]]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: a colour no page chrome uses, so finding it in the screenshot means the image was painted
COLOUR = (20, 180, 60)
TEXT = "Greetings from the handset <b>not bold</b> & more"


def browser() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    looked = ", ".join(BROWSERS)
    pytest.skip(f"no chromium binary on PATH (looked for {looked}); .ci/run installs it")


def elements(node: lxml.html.HtmlElement, path: str) -> list[lxml.html.HtmlElement]:
    found = node.xpath(path)
    assert isinstance(found, list)
    return [e for e in found if isinstance(e, lxml.html.HtmlElement)]


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (160, 120), COLOUR).save(out, "JPEG", quality=95)
    return out.getvalue()


async def run_browser(binary: str, profile: Path, *args: str) -> bytes:
    """Run headless chromium with the given action; its stdout (the DOM for --dump-dom)."""
    proc = await asyncio.create_subprocess_exec(
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HOME": str(profile)},
    )
    try:
        # a guard against a hung browser, not a timing assertion
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out


async def test_ui_page_shows_the_image_and_the_text_in_a_browser(
    aiohttp_server: Server, tmp_path: Path
) -> None:
    binary = browser()
    image = jpeg()
    server = await aiohttp_server(create_simulator_app(SimulatorConfig()))
    content = to_part(build_presentation(make_items([image, TEXT])))
    submit = SubmitReq(
        vasp_id="vasp",
        vas_id="vas",
        sender_address=Address.guess("12345"),
        recipients=Recipients(to=(Address("+15551230001"),)),
        subject="a photo",
        content=content,
    )
    url = str(server.make_url("/mm7"))
    async with MM7Client(LinkConfig(name="sim", url=url)) as client:
        assert (await client.submit(submit)).status.code == 1000

    page = str(server.make_url("/ui/messages"))
    dom = await run_browser(binary, tmp_path / "profile", "--dump-dom", page)
    root = lxml.html.fromstring(dom)
    (slide,) = elements(root, '//div[@class="slide"][@data-slide="1"]')
    (img,) = elements(slide, ".//img")
    (text,) = elements(slide, './/div[@class="text"]')
    assert text.text_content() == TEXT  # shown as text, not markup
    assert not elements(slide, ".//b")
    src = img.get("src")
    assert src is not None and src.startswith("/control/messages/")
    async with aiohttp.ClientSession() as session, session.get(server.make_url(src)) as r:
        assert r.status == 200 and r.content_type == "image/jpeg"
        assert await r.read() == image

    # the browser painted it: the image's colour is in the screenshot
    shot = tmp_path / "ui.png"
    await run_browser(
        binary,
        tmp_path / "profile",
        f"--screenshot={shot}",
        "--window-size=800,900",
        page,
    )
    with Image.open(shot) as screenshot:
        raw = screenshot.convert("RGB").tobytes()
    pixels = zip(raw[0::3], raw[1::3], raw[2::3], strict=True)
    painted = sum(
        1 for p in pixels if all(abs(a - b) <= 16 for a, b in zip(p, COLOUR, strict=True))
    )
    assert painted >= 160 * 120 // 2, f"only {painted} pixels of the image's colour on screen"
