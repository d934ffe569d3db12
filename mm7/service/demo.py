"""`mm7 demo`: the whole MT path, and an MO relayed to an application, in one command.

In one process, on loopback ports the system picks and a temporary SQLite store:

1. the MMSC simulator (strict 3GPP persona: every request is schema-validated; delivery reports
   always, after a short delay);
2. the gateway (``mm7.service.runtime.Gateway``) with a link to that simulator and the
   simulator's reports routed to its inbound endpoint;
3. one MMS (a small JPEG made with Pillow, and a text) POSTed to ``/v1/messages``;
4. the SubmitRsp (the recipient ``submitted`` with its MM7 MessageID), then the final delivery
   report correlated to it (``delivered``), both read back through ``GET /v1/messages/{id}``;
5. the status events of that message POSTed to its ``callback_url`` (a small application on
   another loopback port) by the relay, signed with the API key's secret and verified there;
6. the handset answering: the simulator originates a DeliverReq (text and a photo), the gateway
   stores it before DeliverRsp 1000 and relays it to the application's hook
   (``[relay.hooks.demo-app]``), which verifies the signature and fetches the photo through its
   signed media URL;
7. the SMS fallback (``mm7.service.fallback``): a second MMS, to a handset that cannot take MMS
   (the simulator's ``no_mms``: its delivery report is Rejected), reaches it as one SMS with the
   text and the link to the message's hosted page, through an HTTP SMS link to a small
   sendsms gateway inside the demo (a Kannel stand-in: no extra install), whose delivery
   receipt comes back on the gateway's dlr-url; the demo opens the link from the SMS (200, the
   page) and reads ``recipients[0].fallback_sms`` (delivered) and the ``fallback_sms`` events.

Each step is printed as it happens. Exit 0 only when the whole path worked, 1 with the reason
otherwise (bounded by ``timeout`` seconds). With ``json_output`` the last stdout line is one JSON
object: ``ok``, ``message_id``, ``mm7_message_id``, ``submit_status``, ``delivery_report_status``,
``recipient``, ``recipient_status``, ``status_events``, ``mo_id``, ``mo_text``, ``mo_media_bytes``,
``sms_fallback`` (``recipient``, ``text``, ``status``, ``page_status``, ``events``),
``elapsed_seconds`` and, on failure, ``error``.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import secrets
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mm7.core.errors import MM7Error
from mm7.service.errors import ServiceError

__all__ = ["DEMO_CONFIG", "run_demo"]

RECIPIENT = "+12025550001"
#: the handset that cannot take MMS (the simulator reports Rejected): it gets the SMS
NO_MMS = "+12025550002"
#: recipient states after which no delivery report changes anything
_FINAL = ("delivered", "undelivered", "indeterminate", "failed", "expired")

#: the embedded gateway configuration (the simulator's port and the store path filled in)
DEMO_CONFIG = """\
[links.simulator]
url = "http://127.0.0.1:{mmsc_port}/mm7"
dialect = "3gpp"
profile = "mms-600k"
tps = 20
burst = 5
default = true
fallback = "sms"
fallback_sms_link = "demo-sms"
vasp_id = "mm7-demo"
vas_id = "gateway"
sender_address = "12345"
request_timeout = "10s"
connect_timeout = "5s"

[inbound]
listen = "127.0.0.1:0"
path = "/mm7"

[inbound.peers.simulator]
link = "simulator"
allow = ["127.0.0.1/32", "::1/128"]

[api]
listen = "127.0.0.1:{api_port}"

[[api.keys]]
name = "demo"
key = "{key}"
allow_private = true    # its callback_url is the demo application on 127.0.0.1

[relay]
initial_backoff = "0.2s"
max_backoff = "1s"

[relay.hooks.demo-app]
url = "http://127.0.0.1:{hook_port}/hook"
secret = "{hook_secret}"

[relay.default_route]
hook = "demo-app"

[hosting]
enabled = true
url_base = "http://127.0.0.1:{api_port}"   # the API's port, held: nothing to guess

[sms_links.demo-sms]
type = "http"
url = "http://127.0.0.1:{sms_port}/cgi-bin/sendsms?to={{to}}&from={{from}}&text={{text}}&dlr-url={{dlr_url}}"
source_addr = "MM7DEMO"
dlr_url_base = "http://127.0.0.1:{api_port}"

[store]
backend = "sqlite"
path = "{db}"

[logging]
level = "warning"
json = false

[metrics]
enabled = true
"""


class DemoFailed(ServiceError):
    """A step of the demo did not happen: the reason."""


def _jpeg() -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (160, 120), (30, 90, 160))
    draw = ImageDraw.Draw(image)
    draw.rectangle((20, 20, 140, 100), outline=(250, 250, 250), width=3)
    draw.text((45, 52), "mm7 demo", fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return out.getvalue()


def run_demo(*, json_output: bool = False, timeout: float = 30.0) -> int:
    """Run the demo; the exit status (0: the whole path worked)."""
    summary: dict[str, Any] = {"ok": False}
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="mm7-demo-") as folder:
            asyncio.run(_demo(Path(folder), summary, timeout))
    except (DemoFailed, OSError, MM7Error) as exc:
        summary["error"] = str(exc) or type(exc).__name__
    summary["elapsed_seconds"] = round(time.monotonic() - started, 3)
    if summary.get("error"):
        print(f"mm7 demo: FAILED: {summary['error']}", file=sys.stderr, flush=True)
    else:
        summary["ok"] = True
        _step(
            "done: the MMS went API -> store -> dispatcher -> MMSC -> handset -> report -> "
            "application, the handset's MMS went MMSC -> gateway -> store -> application, and "
            "the MMS a handset could not take went as an SMS with a working link"
        )
    if json_output:
        print(json.dumps(summary), flush=True)
    return 0 if summary["ok"] else 1


def _step(text: str) -> None:
    print(text, flush=True)


async def _demo(folder: Path, summary: dict[str, Any], timeout: float) -> None:
    try:
        async with asyncio.timeout(timeout):
            await _path(folder, summary)
    except TimeoutError:
        raise DemoFailed(
            f"not done within {timeout:g} s (stopped while waiting for: "
            f"{summary.get('waiting_for', 'the start')})"
        ) from None


async def _path(folder: Path, summary: dict[str, Any]) -> None:
    import aiohttp
    from aiohttp import web

    from mm7.service.config.loader import load_config
    from mm7.service.ops.logs import configure_logging
    from mm7.service.runtime import Gateway
    from mm7.simulator.app import SIMULATOR, SimulatorConfig, create_simulator_app
    from mm7.simulator.dlr import DlrPlan, RetryPolicy
    from mm7.simulator.personas import load_persona

    # the simulator's socket first: the gateway's link needs its port, the simulator needs
    # the gateway's inbound URL -- holding the socket open means no other program takes it
    mmsc_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    mmsc_sock.bind(("127.0.0.1", 0))
    mmsc_port = mmsc_sock.getsockname()[1]
    hook_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    hook_sock.bind(("127.0.0.1", 0))
    hook_port = hook_sock.getsockname()[1]
    sms_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sms_sock.bind(("127.0.0.1", 0))
    sms_port = sms_sock.getsockname()[1]
    # the API's port is in the SMS link's dlr-url base and in hosting's url_base (so no
    # warning says it was guessed), so it is chosen now and held (the gateway binds it too,
    # with SO_REUSEPORT) until the gateway listens on it
    api_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    api_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    api_sock.bind(("127.0.0.1", 0))
    api_port = api_sock.getsockname()[1]
    key = secrets.token_urlsafe(24)
    hook_secret = secrets.token_urlsafe(24)
    config_path = folder / "gateway.toml"
    config_path.write_text(
        DEMO_CONFIG.format(
            mmsc_port=mmsc_port,
            key=key,
            hook_port=hook_port,
            hook_secret=hook_secret,
            sms_port=sms_port,
            api_port=api_port,
            db=(folder / "mm7.sqlite").as_posix(),
        ),
        encoding="utf-8",
    )
    application = _Application({"/hook": hook_secret.encode(), "/status": key.encode()})
    config = load_config(config_path, env={})
    configure_logging(config.logging.level, config.logging.json)

    _step("1. starting the gateway (temporary SQLite store, ports picked by the system)")
    gateway = Gateway(
        config,
        configure_logs=False,
        poll_interval=0.2,
        grace=2.0,
        announce=lambda line: _step("   " + line),
        reuse_port=True,
    )
    sms_gateway = _SendSms()
    sim_runner: web.AppRunner | None = None
    app_runner: web.AppRunner | None = None
    sms_runner: web.AppRunner | None = None
    try:
        app_runner = web.AppRunner(application.app(), handle_signals=False, access_log=None)
        await app_runner.setup()
        await web.SockSite(app_runner, hook_sock).start()
        sms_runner = web.AppRunner(sms_gateway.app(), handle_signals=False, access_log=None)
        await sms_runner.setup()
        await web.SockSite(sms_runner, sms_sock).start()
        summary["waiting_for"] = "the gateway to start"
        await gateway.start()
        api_sock.close()
        assert gateway.inbound_url is not None and gateway.api_url is not None
        summary["waiting_for"] = "the simulator to start"
        sim_app = create_simulator_app(
            SimulatorConfig(
                persona=load_persona("strict-3gpp"),
                strict=True,
                vasp_url=gateway.inbound_url,
                dlr=DlrPlan(when="always", delay=0.3, final_delay=0.3, no_mms=NO_MMS),
                retry=RetryPolicy(max_attempts=3, backoff=0.5, timeout=5.0),
                ui_path=None,
            )
        )
        sim_runner = web.AppRunner(sim_app, handle_signals=False, access_log=None)
        await sim_runner.setup()
        await web.SockSite(sim_runner, mmsc_sock).start()
        _step(
            f"2. MMSC simulator (strict 3GPP, schema-validating) on "
            f"http://127.0.0.1:{mmsc_port}/mm7; its delivery reports go to {gateway.inbound_url}"
        )

        image = _jpeg()
        body = {
            "to": RECIPIENT,
            "subject": "Hello from mm7",
            "text": "This MMS went through the mm7 gateway.",
            "media": [
                {
                    "content_base64": base64.b64encode(image).decode("ascii"),
                    "content_type": "image/jpeg",
                    "filename": "demo.jpg",
                }
            ],
            "delivery_report": True,
            "callback_url": f"http://127.0.0.1:{hook_port}/status",
        }
        headers = {"Authorization": f"Bearer {key}"}
        api = gateway.api_url
        async with aiohttp.ClientSession(headers=headers) as http:
            summary["waiting_for"] = "the API to accept the message"
            async with http.post(f"{api}/v1/messages", json=body) as rsp:
                answer = await rsp.text()
                if rsp.status != 202:
                    raise DemoFailed(f"the API answered {rsp.status}: {answer}")
                message_id = json.loads(answer)["id"]
            summary["message_id"] = message_id
            _step(
                f"3. POST {api}/v1/messages (a {len(image)}-byte JPEG and a text to "
                f"{RECIPIENT}) -> 202, message id {message_id} (committed to the store)"
            )

            summary["waiting_for"] = "the SubmitRsp"
            view = await _wait(
                http,
                f"{api}/v1/messages/{message_id}",
                lambda r: r["recipients"][0]["status"] != "queued",
            )
            recipient = view["recipients"][0]
            if recipient["status"] in ("failed", "expired") or not recipient["mm7_message_id"]:
                raise DemoFailed(
                    f"the MMSC did not accept the message: {recipient['status']} "
                    f"{recipient['last_status_code']} {recipient['last_status_text']}"
                )
            mm7_id = recipient["mm7_message_id"]
            summary["mm7_message_id"] = mm7_id
            summary["submit_status"] = {
                "code": recipient["last_status_code"],
                "text": recipient["last_status_text"],
            }
            submitted = sim_app[SIMULATOR].submitted.get(mm7_id)
            parts = []
            if submitted is not None and submitted.content is not None:
                children = submitted.content.children or [submitted.content]
                parts = [c.content_type.mime_type for c in children]
            _step(
                f"4. the dispatcher sent a SubmitReq (TransactionID {recipient['transaction_id']})"
                f"; SubmitRsp {recipient['last_status_code']} {recipient['last_status_text']}, "
                f"MM7 MessageID {mm7_id}; the MMSC received: {', '.join(parts) or '?'}"
            )

            summary["waiting_for"] = "the final delivery report"
            view = await _wait(
                http,
                f"{api}/v1/messages/{message_id}",
                lambda r: r["recipients"][0]["status"] in _FINAL,
            )
            recipient = view["recipients"][0]
            reports = [e for e in view["events"] if e["kind"] == "delivery_report"]
            summary["recipient"] = recipient["address"]
            summary["recipient_status"] = recipient["status"]
            summary["delivery_report_status"] = reports[-1]["status"] if reports else None
            _step(
                f"5. DeliveryReportReq from the MMSC for {mm7_id}: MMStatus "
                f"{summary['delivery_report_status']}, correlated to {message_id} -> recipient "
                f"{recipient['status']}"
            )
            if recipient["status"] != "delivered":
                raise DemoFailed(f"the final report says {recipient['status']}, not delivered")

            summary["waiting_for"] = "the status events at the callback_url"
            await application.wait(lambda: len(application.events("/status")) >= 2)
            kinds = [f"{e['type']}:{e['status']}" for e in application.events("/status")]
            summary["status_events"] = kinds
            _step(
                f"6. the relay POSTed the message's status events to its callback_url "
                f"(signature checked with the API key): {', '.join(kinds)}"
            )

            summary["waiting_for"] = "the MO to reach the application"
            control = f"http://127.0.0.1:{mmsc_port}/control/mo"
            mo_body = {
                "to": "12345",
                "from": RECIPIENT,
                "text": "Thanks! Here is mine.",
                "media": [{"data": base64.b64encode(image).decode("ascii"), "filename": "me.jpg"}],
            }
            async with http.post(control, json=mo_body) as rsp:
                delivery = await rsp.json()
            if delivery.get("status_code") != 1000:
                raise DemoFailed(f"the gateway answered the DeliverReq with {delivery}")
            _step(
                f"7. the handset {RECIPIENT} sent an MMS to 12345: the simulator's DeliverReq "
                f"was stored, then answered DeliverRsp {delivery['status_code']}"
            )
            await application.wait(lambda: bool(application.events("/hook")))
            mo = application.events("/hook")[0]
            (photo,) = [m for m in mo["media"] if m["content_type"].startswith("image/")]
            async with http.get(photo["url"]) as rsp:
                fetched = await rsp.read()
            if rsp.status != 200 or fetched != image:
                raise DemoFailed(f"the MO's media URL answered {rsp.status}")
            summary.update(mo_id=mo["id"], mo_text=mo["text"], mo_media_bytes=len(fetched))
            _step(
                f"8. the relay POSTed it to the application's hook (signature verified): "
                f"MO {mo['id']} from {mo['from']}: {mo['text']!r}, {len(mo['slides'])} slide(s); "
                f"the photo ({len(fetched)} bytes) fetched through its signed URL"
            )
            await _fallback(http, api, body, hook_port, application, sms_gateway, summary)
        summary.pop("waiting_for", None)
        await sim_app[SIMULATOR].dlr.idle()
    finally:
        await gateway.stop()
        for runner in (sim_runner, app_runner, sms_runner):
            if runner is not None:
                await runner.cleanup()
        for sock in (mmsc_sock, hook_sock, sms_sock, api_sock):
            sock.close()


async def _fallback(
    http: Any,
    api: str,
    body: dict[str, Any],
    hook_port: int,
    application: _Application,
    sms_gateway: _SendSms,
    summary: dict[str, Any],
) -> None:
    """Steps 9-10: the MMS to a handset that cannot take it comes as an SMS with a working
    link (module docstring, 7)."""
    summary["waiting_for"] = "the MMS to the handset that cannot take MMS"
    fallback_body = {**body, "to": NO_MMS, "text": "Your photo from the mm7 demo is here."}
    async with http.post(f"{api}/v1/messages", json=fallback_body) as rsp:
        answer = await rsp.text()
        if rsp.status != 202:
            raise DemoFailed(f"the API answered {rsp.status}: {answer}")
        message_id = json.loads(answer)["id"]
    url = f"{api}/v1/messages/{message_id}"
    view = await _wait(http, url, lambda r: r["recipients"][0]["status"] in _FINAL)
    recipient = view["recipients"][0]
    reports = [e["status"] for e in view["events"] if e["kind"] == "delivery_report"]
    _step(
        f"9. a second MMS, to {NO_MMS}, whose handset cannot take MMS: DeliveryReportReq "
        f"MMStatus {reports[-1] if reports else '?'} -> recipient {recipient['status']}; the "
        "gateway queued its SMS fallback in the same commit"
    )
    summary["waiting_for"] = "the fallback SMS"
    sms = await sms_gateway.next()
    text = sms.get("text", "")
    link = text.rsplit(" ", 1)[-1]
    if sms.get("to") != NO_MMS or not link.startswith("http"):
        raise DemoFailed(f"the SMS is not the fallback expected: {sms}")
    async with http.get(link) as rsp:
        page = await rsp.text()
        page_status = rsp.status
    if page_status != 200 or "Your photo from the mm7 demo" not in page:
        raise DemoFailed(f"the SMS's link answered {page_status}")
    summary["waiting_for"] = "the fallback SMS's receipt"
    view = await _wait(
        http, url, lambda r: (r["recipients"][0]["fallback_sms"] or {}).get("status")
        in ("delivered", "failed", "expired"),
    )  # fmt: skip
    fallback = view["recipients"][0]["fallback_sms"]
    if fallback["status"] != "delivered":
        raise DemoFailed(f"the fallback SMS {fallback['status']}: {fallback['error']}")
    await application.wait(
        lambda: sum(e["type"] == "fallback_sms" for e in application.events("/status")) >= 3
    )
    kinds = [e["status"] for e in application.events("/status") if e["type"] == "fallback_sms"]
    summary["sms_fallback"] = {
        "recipient": NO_MMS, "text": text, "status": fallback["status"],
        "page_status": page_status, "events": kinds,
    }  # fmt: skip
    _step(
        f"10. {NO_MMS} got one SMS from {sms.get('from')}: {text!r}; its link opened the "
        f"message's page (HTTP {page_status}); the SMS's receipt came back on the dlr-url "
        f"(fallback_sms {fallback['status']}, sms_id {fallback['sms_id']}); the callback_url "
        f"got fallback_sms: {', '.join(kinds)}"
    )


class _SendSms:
    """The demo's SMS gateway, a Kannel sendsms stand-in: takes each SMS (202), then calls its
    dlr-url with Kannel's type 1 (delivered to the handset)."""

    def __init__(self) -> None:
        self._sent: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()

    def app(self) -> Any:
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/cgi-bin/sendsms", self._sendsms)
        return app

    async def _sendsms(self, request: Any) -> Any:
        from aiohttp import web

        sms = dict(request.query)
        self._sent.put_nowait(sms)
        if sms.get("dlr-url"):
            task = asyncio.create_task(self._receipt(sms["dlr-url"]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return web.Response(status=202, text="0: Accepted for delivery")

    async def _receipt(self, dlr_url: str) -> None:
        import aiohttp

        await asyncio.sleep(0.2)  # the handset answers a moment later
        async with aiohttp.ClientSession() as http, http.get(dlr_url.replace("%d", "1")) as rsp:
            await rsp.read()

    async def next(self) -> dict[str, str]:
        return await self._sent.get()


class _Application:
    """The demo's application: verifies each POST's signature with the secret of its path."""

    def __init__(self, secrets_by_path: dict[str, bytes]) -> None:
        self._secrets = secrets_by_path
        self._events: dict[str, list[dict[str, Any]]] = {p: [] for p in secrets_by_path}
        self._keys: set[str] = set()
        self._arrived = asyncio.Event()

    def app(self) -> Any:
        from aiohttp import web

        app = web.Application()
        for path in self._secrets:
            app.router.add_post(path, self._handle)
        return app

    async def _handle(self, request: Any) -> Any:
        from aiohttp import web

        from mm7.service.relay.signing import SIGNATURE_HEADER, verify

        body = await request.read()
        secret = self._secrets[request.path]
        if not verify(secret, request.headers.get(SIGNATURE_HEADER, ""), body, now=time.time()):
            return web.Response(status=401, text="bad signature")
        key = request.headers.get("Idempotency-Key", "")
        if key not in self._keys:  # at least once: a repeat is acknowledged, not counted
            self._keys.add(key)
            self._events[request.path].append(json.loads(body))
            self._arrived.set()
        return web.Response(status=204)

    def events(self, path: str) -> list[dict[str, Any]]:
        return self._events[path]

    async def wait(self, done: Any) -> None:
        while not done():
            self._arrived.clear()
            await self._arrived.wait()


async def _wait(http: Any, url: str, done: Any) -> dict[str, Any]:
    """GET ``url`` until ``done(view)`` (the caller's timeout bounds it)."""
    while True:
        async with http.get(url) as rsp:
            if rsp.status != 200:
                raise DemoFailed(f"GET {url} answered {rsp.status}: {await rsp.text()}")
            view: dict[str, Any] = await rsp.json()
        if done(view):
            return view
        await asyncio.sleep(0.05)
