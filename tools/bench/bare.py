"""The bare-aiohttp baseline of the multi-process benchmarks, and the payloads they share.

    PYTHONPATH=tools python -m bench.bare serve   # a bare aiohttp server, canned SubmitRsp

``baseline(...)``: a bare aiohttp server process (reads the whole body, answers the same canned
SubmitRsp bytes, no parsing) and a load-generator process (tools/bench/load.py ``post``) sending
the same SubmitReq bytes at concurrency 16 over loopback. Its requests/s is this machine's
transport limit for that body; the mt, mo and sim benchmarks divide by it (``vs_bare_aiohttp``).
"""

from __future__ import annotations

import io
import random
import sys
from functools import cache

from bench.proc import Procs, SettingsLike, serve_until_signalled

#: the SubmitReq of mt and sim: about 31 KB on the wire
SUBMIT_IMAGE_BYTES = 30_000
BARE_CONCURRENCY = 16


#: how many distinct numbers ``handset`` makes
HANDSETS = 8_000_000


def handset(index: int) -> str:
    """The ``index``-th of ``HANDSETS`` distinct numbers the gateway takes as recipients: +1 202
    NXX XXXX, valid for libphonenumber (the +1 555 ranges are not, and are refused at intake)."""
    if not 0 <= index < HANDSETS:
        raise ValueError(f"handset index {index} outside 0..{HANDSETS - 1}")
    return f"+1202{200 + index // 10_000:03d}{index % 10_000:04d}"


@cache
def photo(size: int, seed: int = 8) -> bytes:
    """A real (Pillow-made, decodable) JPEG of about ``size`` bytes: coarse noise, so it does
    not compress to nothing; deterministic. The side is searched until the size is within 3%."""
    from PIL import Image

    rnd = random.Random(seed)
    side = max(16, int((size / 1.2) ** 0.5))
    best = b""
    for _ in range(30):
        w, h = side * 4 // 3, side
        noise = Image.frombytes("RGB", (w // 2, h // 2), rnd.randbytes((w // 2) * (h // 2) * 3))
        buf = io.BytesIO()
        noise.resize((w, h), Image.Resampling.BILINEAR).save(buf, "JPEG", quality=85)
        best = buf.getvalue()
        if abs(len(best) - size) <= size * 0.03:
            break
        side = max(16, int(side * (size / len(best)) ** 0.5))
    return best


@cache
def submit_body(image_size: int = SUBMIT_IMAGE_BYTES) -> tuple[str, bytes]:
    """(Content-Type, body) of a strict-3GPP SubmitReq, one recipient, text + one JPEG."""
    from mm7.core.codec import encode
    from mm7.core.dialect import STRICT_3GPP
    from mm7.core.mime import make_multipart, make_part
    from mm7.core.model import Address, Recipients, SubmitReq

    content = make_multipart(
        [
            make_part(photo(image_size), "image/jpeg", content_id="img1"),
            make_part(b"Your order has shipped.", "text/plain; charset=utf-8", content_id="t1"),
        ]
    )
    req = SubmitReq(
        transaction_id="bench-1",
        vasp_id="vasp",
        vas_id="vas",
        sender_address=Address.guess("12345"),
        recipients=Recipients(to=(Address("+15551230001"),)),
        subject="Bench",
        content=content,
    )
    wire = encode(req, STRICT_3GPP)
    return wire.content_type, wire.body


@cache
def canned_submit_rsp() -> tuple[str, bytes]:
    from mm7.core.codec import encode
    from mm7.core.dialect import STRICT_3GPP
    from mm7.core.model import SubmitRsp

    wire = encode(SubmitRsp(transaction_id="bench-1", message_id="bare-1"), STRICT_3GPP)
    return wire.content_type, wire.body


def _serve() -> int:
    from aiohttp import web

    content_type, body = canned_submit_rsp()

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/mm7", handle)
    serve_until_signalled(app, "bare server on http://127.0.0.1:{port}/mm7")
    return 0


def post_load(
    procs: Procs,
    url: str,
    content_type: str,
    body: bytes,
    *,
    seconds: float,
    concurrency: int = BARE_CONCURRENCY,
    expect: str = "1000",
    name: str = "load",
) -> dict[str, float]:
    """Run a tools/bench/load.py ``post`` process against ``url``; its JSON result."""
    import json

    body_file = procs.workdir / f"{name}.body"
    body_file.write_bytes(body)
    spec = procs.workdir / f"{name}.json"
    spec.write_text(
        json.dumps(
            {
                "url": url,
                "body_file": str(body_file),
                "headers": {"Content-Type": content_type, "SOAPAction": '""'},
                "expect": expect,
                "seconds": seconds,
                "concurrency": concurrency,
            }
        )
    )
    load = procs.python(name, "-m", "bench.load", "post", str(spec))
    load.wait_for("load ready", 60)
    load.send("go")
    result = load.json_result(seconds + 120)
    if result["ok"] <= 0:
        raise RuntimeError(f"{name}: no request succeeded: {result}" + load.tail())
    return result


def baseline(
    settings: SettingsLike, procs: Procs, content_type: str, body: bytes, seconds: float
) -> dict[str, float]:
    """The bare server + load generator, both as processes; the load's result (rps ...)."""
    server = procs.python("bare-server", "-m", "bench.bare", "serve")
    url = server.wait_for(r"bare server on (\S+)", 30)[1]
    cpu0 = server.cpu_seconds()
    result = post_load(procs, url, content_type, body, seconds=seconds, name="bare-load")
    result["server_cpu_ms_per_req"] = (server.cpu_seconds() - cpu0) * 1000 / result["ok"]
    result["load_cpu_ms_per_req"] = result["cpu_s"] * 1000 / result["ok"]
    server.stop()
    settings.say(
        f"  bare aiohttp baseline: {result['rps']:,.0f} requests/s ({len(body):,} B MM7 request,"
        f" concurrency {BARE_CONCURRENCY}, {result['seconds']:.1f} s; p50"
        f" {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms; server CPU"
        f" {result['server_cpu_ms_per_req']:.3f} ms/request, load generator CPU"
        f" {result['load_cpu_ms_per_req']:.3f} ms/request)"
    )
    return result


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        sys.exit(_serve())
    sys.exit(f"usage: {sys.argv[0]} serve")
