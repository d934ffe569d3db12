"""Media a link's content profile can never carry is refused at intake, before anything is
written (issue 13): a PDF, random bytes, audio of a type the profile refuses with no ffmpeg to
transcode it. A part only too big is not refused (the dispatcher shrinks it). The media are
made here: a real PDF header, seeded random bytes, a WAV written by the stdlib ``wave``
module, Pillow images; real API apps, a real loopback media server, real ffmpeg stand-ins
(executable scripts) for the transcoding path."""

from __future__ import annotations

import asyncio
import base64
import io
import random
import sqlite3
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import FormData, web
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from mm7.cli.main import main
from mm7.content.carriable import never_carried
from mm7.content.fit import FFMPEG, transcode_targets
from mm7.content.parts import Source, make_item, text_source
from mm7.content.profile import load_profile
from mm7.service.api.app import create_api_app
from mm7.service.config.loader import load_config
from mm7.service.runtime import Gateway as Runtime
from mm7.service.store.sqlite.store import SqliteStore
from tests.helpers.api import AUTH, KEY, Gateway, validate
from tests.helpers.media import ftyp
from tests.helpers.runtime import KEY as RUNTIME_KEY
from tests.helpers.runtime import bound_socket, write_config

CONFIG = """
[links.small]
url = "http://127.0.0.1:9/mm7"
default = true
profile = "mms-300k"
[links.roomy]
url = "http://127.0.0.1:9/mm7"
profile = "mms-3500k"
[links.open]
url = "http://127.0.0.1:9/mm7"

[inbound]
listen = "127.0.0.1:0"
[inbound.peers.small]
allow = ["127.0.0.1/32"]

[api]
listen = "127.0.0.1:0"
max_request_bytes = "8 MB"
[[api.keys]]
name = "app"
key = "{key}"
allow_private = true

[store]
path = "{db}"
"""


def pdf() -> bytes:
    """A small real PDF: header, one empty page, cross-reference table and trailer."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % n + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(objects) + 1))
    out.write(b"startxref\n%d\n%%%%EOF\n" % xref)
    return out.getvalue()


def noise(size: int = 4096) -> bytes:
    """Random bytes (seeded): no format at all."""
    return random.Random(13).randbytes(size)


def wav() -> bytes:
    """A real WAV (PCM, 8 kHz, mono, a quarter of a second), written by the ``wave`` module."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x10" * 2000)
    return out.getvalue()


def image(kind: str, side: int = 40, *, noisy: bool = False) -> bytes:
    picture = (
        Image.effect_noise((side, side), 90).convert("RGB")
        if noisy
        else Image.new("RGB", (side, side), (10, 120, 200))
    )
    out = io.BytesIO()
    picture.save(out, kind)
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def inline(data: bytes, content_type: str) -> dict[str, str]:
    return {"content_base64": b64(data), "content_type": content_type}


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG.format(key=KEY, db=(tmp_path / "mm7.sqlite").as_posix()))
    config = load_config(path, env={})
    store = await SqliteStore.open(config.store.path)
    client = TestClient(TestServer(create_api_app(config, store), host="127.0.0.1", port=0))
    await client.start_server()
    yield Gateway(client, store, config.store.path)
    await client.close()
    await store.close()


# --------------------------------------------------------------------------- the decision


@pytest.mark.parametrize(
    ("data", "declared", "detected"),
    [
        (pdf(), "application/pdf", "the bytes are application/pdf"),
        (pdf(), None, "the bytes are application/pdf"),
        (noise(), "application/octet-stream", "the bytes are application/octet-stream (of no"),
        (noise(), "audio/x-ms-wma", "audio/x-ms-wma (as declared: the bytes are of no format"),
        (ftyp(b"heic") + noise(256), None, "the bytes are image/heic"),
    ],
)
def test_what_no_conversion_reaches_is_never_carried(
    data: bytes, declared: str | None, detected: str
) -> None:
    item = make_item(Source(data, media_type=declared), 1)
    why = never_carried(item, load_profile("mms-300k"), ffmpeg=None)
    assert why is not None and why.startswith(detected), why
    assert "'mms-300k' does not take" in why and "image/jpeg" in why


def test_what_the_fitter_converts_or_the_profile_takes_is_carried() -> None:
    profile = load_profile("mms-300k")
    for data in (image("PNG"), image("BMP"), image("WEBP"), image("JPEG", 3000, noisy=True)):
        item = make_item(Source(data), 1)
        assert never_carried(item, profile, ffmpeg=None) is None, item.media_type
    # audio a profile takes goes as it is; a profile taking audio/* takes WAV
    amr = make_item(Source(b"#!AMR\n" + bytes(64)), 1)
    assert never_carried(amr, profile, ffmpeg=None) is None
    assert (
        never_carried(make_item(Source(wav()), 1), load_profile("mms-3500k"), ffmpeg=None) is None
    )
    # text and the vCard the profile lists
    assert never_carried(make_item(text_source("hello"), 1), profile, ffmpeg=None) is None


def fake_ffmpeg(tmp_path: Path, encoders: list[str]) -> str:
    """An executable answering ``-encoders`` as an ffmpeg built with ``encoders`` would."""
    lines = "".join(f" A..... {name:<20} {name}\\n" for name in encoders)
    path = tmp_path / f"ffmpeg-{'-'.join(encoders) or 'none'}"
    path.write_text(f"#!/bin/sh\nprintf ' ------\\n{lines}'\n")
    path.chmod(0o755)
    return str(path)


def test_audio_is_carried_when_this_machines_ffmpeg_can_make_a_type_the_profile_takes(
    tmp_path: Path,
) -> None:
    item = make_item(Source(wav()), 1)
    profile = load_profile("mms-300k")  # AMR, not AAC or MP3
    without = never_carried(item, profile, ffmpeg=None)
    assert without is not None and "no ffmpeg on this machine to transcode the audio" in without
    assert never_carried(item, profile, ffmpeg=fake_ffmpeg(tmp_path, ["libopencore_amrnb"])) is None
    aac_only = fake_ffmpeg(tmp_path, ["aac"])
    why = never_carried(item, profile, ffmpeg=aac_only)
    assert why is not None
    assert f"ffmpeg at {aac_only} has no encoder for an audio type the profile takes" in why, why
    # a profile taking AAC in M4A: that ffmpeg is enough
    assert never_carried(item, load_profile("mms-600k"), ffmpeg=aac_only) is None


# --------------------------------------------------------------------------- the sending API


async def test_a_pdf_random_bytes_and_a_wav_are_422_naming_the_part_and_the_profile(
    gw: Gateway,
) -> None:
    photo = inline(image("JPEG"), "image/jpeg")
    message = await gw.refused(
        {"to": "+12015550100", "media": [photo, inline(pdf(), "application/pdf")]}, 422, "media[1]"
    )
    assert "application/pdf" in message and "'mms-300k'" in message and "'small'" in message
    message = await gw.refused(
        {"to": "+12015550100", "text": "x", "media": [inline(noise(), "application/octet-stream")]},
        422,
        "media[0]",
    )
    assert "application/octet-stream" in message and "'mms-300k'" in message
    body = {"to": "+12015550100", "media": [photo, photo, inline(wav(), "audio/wav")]}
    if FFMPEG is None:
        message = await gw.refused(body, 422, "media[2]")
        assert "audio/wav" in message and "no ffmpeg" in message
    elif not transcode_targets("audio", load_profile("mms-300k"), FFMPEG):
        # an ffmpeg without an encoder for AMR/MP3/AAC (Debian's has no AMR-NB encoder)
        message = await gw.refused(body, 422, "media[2]")
        assert "audio/wav" in message and "has no encoder" in message
    else:  # this machine can transcode it: accepted, the dispatcher will
        status, answer = await gw.post(body)
        assert status == 202, answer


async def test_what_another_link_carries_and_what_only_needs_shrinking_is_accepted(
    gw: Gateway,
) -> None:
    # a profile taking audio/*: the WAV goes; a link without a profile checks nothing
    for link, part in (("roomy", inline(wav(), "audio/wav")), ("open", inline(pdf(), "x/y"))):
        status, answer = await gw.post({"to": "+12015550100", "link": link, "media": [part]})
        assert status == 202, answer
    # a noisy PNG of most of a megabyte: over the 300 KB profile, but the fitter can convert
    # and shrink it
    big = image("PNG", 600, noisy=True)
    assert len(big) > 2 * 300_000
    status, answer = await gw.post({"to": "+12015550100", "media": [inline(big, "image/png")]})
    assert status == 202, answer


async def test_a_form_upload_is_checked_as_json_is(gw: Gateway) -> None:
    before = gw.counts()
    form = FormData()
    form.add_field("to", "+12015550100")
    form.add_field("text", "minutes")
    form.add_field("media", pdf(), filename="minutes.pdf", content_type="application/pdf")
    response = await gw.client.post("/v1/messages", data=form, headers=AUTH)
    answer = await response.json()
    assert response.status == 422 and answer["error"]["field"] == "media[0]", answer
    validate("Error", answer)
    assert gw.counts() == before


async def test_a_url_medium_is_checked_once_fetched_and_nothing_is_written(gw: Gateway) -> None:
    fetched: list[str] = []

    async def serve(request: web.Request) -> web.Response:
        fetched.append(request.path)
        return web.Response(body=pdf(), content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/doc", serve)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        url = f"http://127.0.0.1:{server.port}/doc"
        message = await gw.refused(
            {"to": "+12015550100", "text": "x", "media": [{"url": url}]}, 422, "media[0]"
        )
        assert fetched == ["/doc"] and "application/pdf" in message
        # sendmms: Mbuni's parameters, its error form
        before = gw.counts()
        params = {"username": "app", "password": KEY, "to": "+12015550100", "content-url": url}
        response = await gw.client.get("/cgi-bin/sendmms", params=params)
        text = await response.text()
        assert response.status == 422, text
        assert text.startswith("Error: content-url: link 'small' cannot carry this: the bytes")
        assert gw.counts() == before
        form = FormData()
        for name, value in (("username", "app"), ("password", KEY), ("to", "+12015550100")):
            form.add_field(name, value)
        form.add_field("content", noise(), filename="blob.bin", content_type="application/x-blob")
        response = await gw.client.post("/cgi-bin/sendmms", data=form)
        text = await response.text()
        assert response.status == 422 and text.startswith("Error: content: "), text
        assert gw.counts() == before
    finally:
        await server.close()


async def test_mm7_send_exits_non_zero_naming_the_part(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with bound_socket() as mmsc:
        path = write_config(tmp_path, mmsc.getsockname()[1])
        text = path.read_text().replace(
            "default = true\n", 'default = true\nprofile = "mms-300k"\n'
        )
        path.write_text(text)
        config = load_config(path, env={})
        gateway = Runtime(config, configure_logs=False, poll_interval=3600, announce=lambda x: None)
        await gateway.start()
        try:
            document = tmp_path / "minutes.pdf"
            document.write_bytes(pdf())
            argv = ["send", "--api-url", str(gateway.api_url), "--api-key", RUNTIME_KEY,
                    "--to", "+12015550100", "--media", str(document)]  # fmt: skip
            status = await asyncio.to_thread(main, argv)
            _, err = capsys.readouterr()
            assert status != 0
            assert "HTTP 422" in err and "media[0]:" in err and "application/pdf" in err, err
            assert "'mms-300k'" in err
            with sqlite3.connect(config.store.path) as conn:
                assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 0
        finally:
            await gateway.stop()
