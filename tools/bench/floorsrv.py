"""The floor of the design: a process doing only the protocol's own work per message, through
the same libraries as mm7 (aiohttp, lxml through ``mm7.core``'s codec, orjson, pybase64).

    PYTHONPATH=tools python -m bench.floorsrv mt SIM_URL   # a VASP gateway: API + inbound
    PYTHONPATH=tools python -m bench.floorsrv mo HOOK_URL  # MO ingest + relay to a hook
    PYTHONPATH=tools python -m bench.floorsrv mmsc         # an MMSC answering SubmitReqs

Each prints ``floor server on http://127.0.0.1:PORT`` and serves until signalled. What each does
per message is what no VASP gateway (or MMSC) can skip, and nothing else: no store, no
durability, no field checks, no recipient numbering, no presentation (SMIL), no logs, no
metrics, no retries. So its CPU per message is a floor for ``mt``, ``mo`` and ``sim`` as the
design stands (three HTTP exchanges and two SOAP documents per MT, ...), measured, not guessed
(tools/bench/floor.py compares).

``mt``: ``POST /v1/messages`` (the bench's JSON: ``to``, ``text``, one base64 image) is parsed,
its image decoded, a SubmitReq with the image and text encoded, the request answered 202 with an
id, then the SubmitReq POSTed to the MMSC (one keep-alive session) and its SubmitRsp decoded;
``POST /mm7`` takes the MMSC's DeliveryReportReq: decoded, answered DeliveryReportRsp.
``mo``: ``POST /mm7`` takes a DeliverReq: decoded, answered DeliverRsp 1000, then a small JSON
event (sender, recipients, subject, text of the text part, one URL per other part) signed with
HMAC-SHA256 and POSTed to the hook. ``mmsc``: ``POST /mm7`` decodes a SubmitReq and answers a
SubmitRsp with a fresh MessageID. ``GET /count``: {"submitted", "reports", "mo", "relayed"}.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import os
import sys
from typing import Any

from aiohttp import ClientSession, TCPConnector, web

from bench.proc import serve_until_signalled

SECRET = b"bench-floor-secret-0123456789"


def _answer(message: Any) -> web.Response:
    from mm7.core.codec import encode

    wire = encode(message)
    return web.Response(body=wire.body, headers={"Content-Type": wire.content_type})


def build(mode: str, peer: str | None) -> web.Application:
    """The floor application of ``mode`` (``peer``: the MMSC's URL for mt, the hook's for mo)."""
    import orjson
    import pybase64

    from mm7.core.codec import decode
    from mm7.core.mime import make_multipart, make_part
    from mm7.core.model import (
        Address,
        DeliverReq,
        DeliverRsp,
        DeliveryReportReq,
        DeliveryReportRsp,
        Recipients,
        SubmitReq,
        SubmitRsp,
    )

    counts: collections.Counter[str] = collections.Counter()
    tasks: set[asyncio.Task[None]] = set()
    session_key = web.AppKey("session", ClientSession)
    app = web.Application(client_max_size=64 * 1024 * 1024)

    async def session_ctx(app: web.Application) -> Any:
        app[session_key] = ClientSession(connector=TCPConnector(limit=64))
        yield
        await app[session_key].close()

    app.cleanup_ctx.append(session_ctx)

    async def submit(app: web.Application, req: SubmitReq) -> None:
        from mm7.core.codec import encode

        wire = encode(req)
        headers = {"Content-Type": wire.content_type, "SOAPAction": '""'}
        async with app[session_key].post(str(peer), data=wire.body, headers=headers) as rsp:
            body = await rsp.read()
            got = decode(body, rsp.headers.get("Content-Type")).message
        if isinstance(got, SubmitRsp) and got.status.code == 1000:
            counts["submitted"] += 1

    def spawn(coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def api(request: web.Request) -> web.Response:
        data = orjson.loads(await request.read())
        parts = [
            make_part(
                pybase64.b64decode(m["content_base64"], validate=True),
                m["content_type"],
                content_id=f"m{i}",
            )
            for i, m in enumerate(data.get("media", ()))
        ]
        parts.append(make_part(data["text"].encode(), "text/plain; charset=utf-8", content_id="t"))
        message_id = os.urandom(8).hex()
        req = SubmitReq(
            transaction_id=message_id,
            vasp_id="vasp",
            vas_id="vas",
            sender_address=Address.guess("12345"),
            recipients=Recipients(to=(Address(data["to"]),)),
            delivery_report=bool(data.get("delivery_report")),
            content=make_multipart(parts),
        )
        spawn(submit(request.app, req))
        return web.Response(
            status=202, body=orjson.dumps({"id": message_id}), content_type="application/json"
        )

    async def relay(app: web.Application, event: dict[str, Any]) -> None:
        body = orjson.dumps(event)
        signature = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-Signature": signature}
        async with app[session_key].post(str(peer), data=body, headers=headers) as rsp:
            await rsp.read()
            if rsp.status == 200:
                counts["relayed"] += 1

    async def inbound(request: web.Request) -> web.Response:
        body = await request.read()
        got = decode(body, request.headers.get("Content-Type")).message
        tid = got.transaction_id
        if isinstance(got, DeliveryReportReq):
            counts["reports"] += 1
            return _answer(DeliveryReportRsp(transaction_id=tid))
        if isinstance(got, SubmitReq):
            counts["submitted"] += 1
            return _answer(SubmitRsp(transaction_id=tid, message_id=os.urandom(10).hex()))
        if isinstance(got, DeliverReq):
            counts["mo"] += 1
            event_id = os.urandom(8).hex()
            text = None
            urls = []
            content = got.content
            for i, part in enumerate(content.children if content is not None else ()):
                if part.content_type.mime_type == "text/plain" and text is None:
                    text = part.body.decode("utf-8", "replace")
                else:
                    urls.append(f"http://127.0.0.1/media/{event_id}/{i}")
            event = {
                "id": event_id,
                "type": "mo",
                "from": got.sender.value if got.sender else None,
                "to": [a.value for a in got.recipients.to] if got.recipients else [],
                "subject": got.subject,
                "text": text,
                "media": urls,
            }
            spawn(relay(request.app, event))
            return _answer(DeliverRsp(transaction_id=tid))
        raise web.HTTPBadRequest(text=f"floor server: no {got.OPERATION}")

    async def count(request: web.Request) -> web.Response:
        return web.json_response(dict(counts))

    if mode == "mt":
        app.router.add_post("/v1/messages", api)
    app.router.add_post("/mm7", inbound)
    app.router.add_get("/count", count)
    return app


def main() -> int:
    mode = sys.argv[1]
    if mode not in ("mt", "mo", "mmsc") or (mode != "mmsc") != (len(sys.argv) == 3):
        return f"usage: {sys.argv[0]} mt SIM_URL | mo HOOK_URL | mmsc"  # type: ignore[return-value]
    serve_until_signalled(
        build(mode, sys.argv[2] if mode != "mmsc" else None),
        "floor server on http://127.0.0.1:{port}",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
