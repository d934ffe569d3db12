"""The SMS fallback end to end: a real Gateway (SQLite, loopback listeners), the bundled
simulator as the MMSC (one handset that cannot take MMS: its report is Rejected), a
Kannel-style sendsms gateway on loopback (tests/helpers/sendsms.py) and an application's
callback. The recipient gets one SMS with the text and a working link to the hosted page; the
dlr-url receipt lands, before or after a restart; the events reach the callback; GET shows it.
Content that cannot fit falls back too (the message asking for it); SMS refused for good and
SMS links down then back; an SMS whose receipt never comes ends expired after receipt_timeout
(0: never); the API's field and the configuration refusals."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from mm7.service.config.loader import load_config
from mm7.service.errors import ConfigError
from mm7.service.runtime import Gateway
from tests.helpers.api import validate
from tests.helpers.fallback import NO_MMS, start_simulator
from tests.helpers.runtime import AUTH, KEY, bound_socket, message, wait_for, write_config
from tests.helpers.sendsms import SendSms
from tests.helpers.stores import pg_database
from tests.test_hosting_gateway import PHOTO, TINY, b64

Server = Callable[..., Awaitable[Any]]

FALLBACK = """
[hosting]
enabled = true

[fallback]
initial_backoff = "0.05s"
max_backoff = "0.1s"
{fallback_extra}

[sms_links.sms1]
type = "http"
url = "{sms_url}"
source_addr = "MM7"
dlr_url_base = "http://127.0.0.1:{api_port}"

[links.tiny]
url = "http://127.0.0.1:{mmsc_port}/mm7"
profile = "tiny-refuse"
prefixes = ["+1203"]
fallback_sms_link = "sms1"

[links.plain]
url = "http://127.0.0.1:{mmsc_port}/mm7"
prefixes = ["+1204"]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def configure(
    tmp_path: Path, mmsc_port: int, sms_url: str, api_port: int, fallback_extra: str = ""
) -> Path:
    """The runtime's test config: link "main" falls back to SMS through "sms1"; link "tiny"
    (recipients +1203...) refuses every photo and falls back only when a message asks.
    ``fallback_extra``: more lines of ``[fallback]``."""
    profiles = tmp_path / "profiles"
    profiles.mkdir(exist_ok=True)
    (profiles / "tiny-refuse.toml").write_text(TINY.format(too_big="refuse"))
    extra = FALLBACK.format(
        sms_url=sms_url, api_port=api_port, mmsc_port=mmsc_port, fallback_extra=fallback_extra
    )
    path = write_config(
        tmp_path, mmsc_port, api_port=api_port,
        key_line=f'key = "{KEY}"\nallow_private = true', extra=extra,
    )  # fmt: skip
    text = path.read_text().replace(
        "[links.main]\n", '[links.main]\nfallback = "sms"\nfallback_sms_link = "sms1"\n', 1
    )
    path.write_text(text)
    return path


class Callback:
    """The application's callback_url: the events POSTed to it."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def app(self) -> web.Application:
        async def post(request: web.Request) -> web.Response:
            self.events.append(json.loads(await request.read()))
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/status", post)
        return app

    def fallback(self) -> list[tuple[str, str]]:
        return [(e["recipient"], e["status"]) for e in self.events if e["type"] == "fallback_sms"]


@dataclass
class Running:
    path: Path
    gateway: Gateway
    sms: SendSms
    callback: Callback
    callback_url: str
    http: aiohttp.ClientSession

    @property
    def api(self) -> str:
        assert self.gateway.api_url is not None
        return self.gateway.api_url

    async def post(self, body: dict[str, Any], status: int = 202) -> dict[str, Any]:
        async with self.http.post(f"{self.api}/v1/messages", json=body, headers=AUTH) as rsp:
            assert rsp.status == status, await rsp.text()
            answer: dict[str, Any] = await rsp.json()
        return answer

    async def view(self, message_id: str) -> dict[str, Any]:
        async with self.http.get(f"{self.api}/v1/messages/{message_id}", headers=AUTH) as rsp:
            body: dict[str, Any] = await rsp.json()
        validate("Message", body)
        return body

    async def fallback_of(self, message_id: str, status: str) -> dict[str, Any]:
        async def done() -> dict[str, Any] | None:
            view = await self.view(message_id)
            sms = view["recipients"][0]["fallback_sms"]
            return sms if sms is not None and sms["status"] == status else None

        result: dict[str, Any] = await wait_for(done)
        return result

    async def restart(self) -> None:
        await self.gateway.stop()
        self.gateway = Gateway(
            load_config(self.path, env={}), configure_logs=False, announce=lambda _: None,
            poll_interval=0.05,
        )  # fmt: skip
        await self.gateway.start()


@contextlib.asynccontextmanager
async def run_gateway(
    tmp_path: Path,
    aiohttp_server: Server,
    *,
    poll_interval: float = 0.05,
    dsn: str | None = None,
    fallback_extra: str = "",
) -> AsyncIterator[Running]:
    """The gateway of ``configure`` (on PostgreSQL at ``dsn`` when given; ``fallback_extra``:
    more lines of ``[fallback]``), the simulator as its MMSC, the sendsms gateway and the
    callback; every worker polls every ``poll_interval``."""
    sms = await SendSms().start(aiohttp_server)
    callback = Callback()
    hook = await aiohttp_server(callback.app())
    with bound_socket() as mmsc:
        path = configure(tmp_path, mmsc.getsockname()[1], sms.url, free_port(), fallback_extra)
        env = {}
        if dsn is not None:
            env["MM7_TEST_DSN"] = dsn
            path.write_text(path.read_text().replace(
                '[store]\npath = "', '[store]\nbackend = "postgresql"\ndsn_env = "MM7_TEST_DSN"\n#'
            ))  # fmt: skip
        gateway = Gateway(
            load_config(path, env=env), configure_logs=False, announce=lambda _: None,
            poll_interval=poll_interval,
        )  # fmt: skip
        await gateway.start()
        runner = await start_simulator(mmsc, gateway.inbound_url)
        try:
            async with aiohttp.ClientSession() as http:
                url = f"http://127.0.0.1:{hook.port}/status"
                made = Running(path, gateway, sms, callback, url, http)
                yield made
        finally:
            await made.gateway.stop()
            await runner.cleanup()


@pytest.fixture
async def running(tmp_path: Path, aiohttp_server: Server) -> AsyncIterator[Running]:
    async with run_gateway(tmp_path, aiohttp_server) as made:
        yield made


async def test_a_handset_that_refuses_mms_gets_one_sms_with_a_working_link(
    running: Running,
) -> None:
    body = message(NO_MMS, text="Your photos from the trip", callback_url=running.callback_url)
    message_id = (await running.post(body))["id"]
    (sms,) = await running.sms.wait(1)
    assert sms["to"] == NO_MMS and sms["from"] == "MM7"
    assert re.fullmatch(r"Your photos from the trip http://\S+/m/\S+", sms["text"]), sms
    submitted = await running.fallback_of(message_id, "submitted")
    assert submitted["trigger"] == "report:Rejected" and submitted["sms_link"] == "sms1"
    assert await running.sms.report(0, 1) == 200
    delivered = await running.fallback_of(message_id, "delivered")
    assert delivered["sms_id"] == submitted["sms_id"] and delivered["error"] is None
    # the link in the SMS opens the message's page
    url = sms["text"].rsplit(" ", 1)[1]
    async with running.http.get(url) as rsp:
        assert rsp.status == 200 and "text/html" in rsp.headers["Content-Type"]
        assert "Your photos from the trip" in await rsp.text()
    view = await running.view(message_id)
    assert view["recipients"][0]["status"] == "undelivered"
    await wait_for(lambda: _async(len(running.callback.fallback()) >= 3))
    assert sorted(running.callback.fallback()) == [
        (NO_MMS, "delivered"), (NO_MMS, "queued"), (NO_MMS, "submitted"),
    ]  # fmt: skip
    event = next(e for e in running.callback.events if e["type"] == "fallback_sms")
    validate("FallbackSmsEvent", event)
    assert len(running.sms.sent) == 1  # one SMS, whatever was repeated


async def _async(value: Any) -> Any:
    return value


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_the_commit_that_queues_the_sms_wakes_the_worker_without_a_callback_url(
    tmp_path: Path, aiohttp_server: Server, backend: str
) -> None:
    """Every worker polls once an hour here: the SMS go out only because the commits that
    queued them woke the fallback worker (a permanent failure at the dispatcher; a Rejected
    report, which may land before the submit's commit and be applied by it)."""
    async with contextlib.AsyncExitStack() as stack:
        dsn = await stack.enter_async_context(pg_database()) if backend == "postgresql" else None
        running = await stack.enter_async_context(
            run_gateway(tmp_path, aiohttp_server, poll_interval=3600, dsn=dsn)
        )
        photo = {"content_base64": b64(PHOTO), "content_type": "image/jpeg"}
        too_big = await running.post(
            {"to": "+12035550001", "text": "Big", "media": [photo], "fallback": "sms"}
        )
        (sms,) = await running.sms.wait(1)
        assert sms["to"] == "+12035550001"
        assert (await running.fallback_of(too_big["id"], "submitted"))["trigger"] == "failed"
        rejected = await running.post(message(NO_MMS))
        sent = await running.sms.wait(2)
        assert sent[1]["to"] == NO_MMS
        got = await running.fallback_of(rejected["id"], "submitted")
        assert got["trigger"] == "report:Rejected"
        assert running.callback.events == []


async def test_metrics_count_the_fallback_sms_by_outcome(running: Running) -> None:
    async def counts() -> dict[str, float]:
        async with running.http.get(f"{running.api}/metrics") as rsp:
            assert rsp.status == 200
            text = await rsp.text()
        found = re.findall(r'^mm7_fallback_sms_total\{outcome="(\w+)"\} (\S+)$', text, re.M)
        return {outcome: float(value) for outcome, value in found}

    zero = {"queued": 0.0, "submitted": 0.0, "delivered": 0.0, "failed": 0.0, "expired": 0.0}
    assert await counts() == zero  # every outcome, before any SMS
    first = (await running.post(message(NO_MMS)))["id"]
    await running.fallback_of(first, "submitted")
    assert await running.sms.report(0, 1) == 200
    await running.fallback_of(first, "delivered")
    running.sms.answers = [400]  # the second is refused for good
    second = (await running.post(message(NO_MMS)))["id"]
    await running.fallback_of(second, "failed")
    assert await counts() == {
        "queued": 2.0, "submitted": 1.0, "delivered": 1.0, "failed": 1.0, "expired": 0.0,
    }  # fmt: skip


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_an_sms_whose_link_never_sends_its_receipt_ends_expired(
    tmp_path: Path, aiohttp_server: Server, backend: str
) -> None:
    """The sendsms gateway takes the SMS and never calls its dlr-url: ``receipt_timeout``
    after its ``submitted`` commit the fallback is ``expired``, in the view, in the event to
    the callback_url and in the metrics."""
    async with contextlib.AsyncExitStack() as stack:
        dsn = await stack.enter_async_context(pg_database()) if backend == "postgresql" else None
        running = await stack.enter_async_context(
            run_gateway(
                tmp_path, aiohttp_server, dsn=dsn, fallback_extra='receipt_timeout = "0.3s"'
            )
        )
        body = message(NO_MMS, callback_url=running.callback_url)
        message_id = (await running.post(body))["id"]
        expired = await running.fallback_of(message_id, "expired")
        assert expired["error"] == "no delivery receipt within receipt_timeout (0.3s)"
        assert expired["sms_id"] and expired["trigger"] == "report:Rejected"
        await wait_for(lambda: _async(len(running.callback.fallback()) >= 3))
        assert sorted(running.callback.fallback()) == [
            (NO_MMS, "expired"), (NO_MMS, "queued"), (NO_MMS, "submitted"),
        ]  # fmt: skip
        event = next(
            e for e in running.callback.events
            if e["type"] == "fallback_sms" and e["status"] == "expired"
        )  # fmt: skip
        validate("FallbackSmsEvent", event)
        assert (event["status"], event["error"]) == ("expired", expired["error"])
        # a receipt after the end is recorded on its part; the row stays expired
        assert await running.sms.report(0, 1) == 200
        assert (await running.view(message_id))["recipients"][0]["fallback_sms"] == expired
        async with running.http.get(f"{running.api}/metrics") as rsp:
            text = await rsp.text()
        assert re.search(r'^mm7_fallback_sms_total\{outcome="expired"\} 1(\.0)?$', text, re.M)
        assert len(running.sms.sent) == 1


async def test_receipt_timeout_0_waits_for_the_receipt_as_long_as_it_takes(
    tmp_path: Path, aiohttp_server: Server
) -> None:
    async with run_gateway(
        tmp_path, aiohttp_server, fallback_extra="receipt_timeout = 0"
    ) as running:
        message_id = (await running.post(message(NO_MMS)))["id"]
        await running.fallback_of(message_id, "submitted")
        await asyncio.sleep(0.5)  # ten polls of the worker
        sms = (await running.view(message_id))["recipients"][0]["fallback_sms"]
        assert sms["status"] == "submitted"
        assert await running.sms.report(0, 1) == 200
        await running.fallback_of(message_id, "delivered")


async def test_a_delivered_mms_sends_no_sms(running: Running) -> None:
    message_id = (await running.post(message("+12025550001")))["id"]

    async def delivered() -> bool:
        return (await running.view(message_id))["status"] == "delivered"

    await wait_for(delivered)
    view = await running.view(message_id)
    assert view["recipients"][0]["fallback_sms"] is None
    assert running.sms.sent == []


async def test_the_receipt_lands_after_a_restart(running: Running) -> None:
    message_id = (await running.post(message(NO_MMS)))["id"]
    await running.sms.wait(1)
    await running.fallback_of(message_id, "submitted")
    await running.restart()
    assert await running.sms.report(0, 2) == 200  # failed on the handset side
    failed = await running.fallback_of(message_id, "failed")
    assert failed["error"] == "undeliverable"


async def test_content_that_cannot_fit_falls_back_when_the_message_asks(
    running: Running,
) -> None:
    photo = {"content_base64": b64(PHOTO), "content_type": "image/jpeg"}
    asked = await running.post({"to": "+12035550001", "text": "Big", "media": [photo],
                                "fallback": "sms"})  # fmt: skip
    not_asked = await running.post({"to": "+12035550002", "text": "Big", "media": [photo]})
    (sms,) = await running.sms.wait(1)
    assert sms["to"] == "+12035550001" and sms["text"].startswith("Big http")
    got = await running.fallback_of(asked["id"], "submitted")
    assert got["trigger"] == "failed"

    async def failed() -> bool:
        return (await running.view(not_asked["id"]))["status"] == "failed"

    await wait_for(failed)
    assert (await running.view(not_asked["id"]))["recipients"][0]["fallback_sms"] is None
    assert len(running.sms.sent) == 1


async def test_a_message_may_say_none(running: Running) -> None:
    message_id = (await running.post(message(NO_MMS, fallback="none")))["id"]

    async def undelivered() -> bool:
        return (await running.view(message_id))["status"] == "failed"

    await wait_for(undelivered)
    assert (await running.view(message_id))["recipients"][0]["fallback_sms"] is None
    assert running.sms.sent == []


async def test_down_then_back_is_retried_refused_is_failed(running: Running) -> None:
    running.sms.answers = [503, 503]
    first = (await running.post(message(NO_MMS)))["id"]
    await running.fallback_of(first, "submitted")
    assert len(running.sms.sent) == 3  # two refusals, then taken
    running.sms.answers = [400]
    second = (await running.post(message(NO_MMS)))["id"]
    failed = await running.fallback_of(second, "failed")
    assert "rejected" in failed["error"] and len(running.sms.sent) == 4


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"fallback": "email"}, 'expected "sms" or "none"'),
        ({"fallback": True}, 'expected "sms" or "none"'),
        ({"fallback": "sms", "to": "+12045550001"}, "link 'plain' has no SMS link"),
    ],
)
async def test_the_field_is_checked(
    running: Running, tmp_path: Path, body: dict[str, Any], problem: str
) -> None:
    answer = await running.post({**message(), **body}, status=422)
    assert answer["error"]["field"] == "fallback" and problem in answer["error"]["message"]


# --------------------------------------------------------------------------- configuration


def _config(tmp_path: Path, extra: str, main: str = "") -> Path:
    path = write_config(tmp_path, 9, extra=extra)
    path.write_text(path.read_text().replace("[links.main]\n", f"[links.main]\n{main}", 1))
    return path


SMS1 = '\n[sms_links.sms1]\ntype = "http"\nurl = "http://127.0.0.1:9/s?to={to}&text={text}"\n'


@pytest.mark.parametrize(
    ("extra", "main", "where", "problem"),
    [
        ("\n[hosting]\nenabled = true\n" + SMS1, 'fallback_sms_link = "nope"\n',
         "links.main.fallback_sms_link", "no [sms_links.nope] (SMS links: sms1)"),
        (SMS1, 'fallback = "sms"\nfallback_sms_link = "sms1"\n',
         "links.main.fallback_sms_link", "[hosting] is not enabled"),
        ("\n[hosting]\nenabled = true\n" + SMS1, 'fallback = "sms"\n',
         "links.main.fallback_sms_link", 'required with fallback = "sms"'),
        ("", 'fallback = "mms"\n', "links.main.fallback", "sms"),
        ("\n[hosting]\nenabled = true\n" + SMS1,
         'fallback_sms_link = "sms1"\nfallback_text_max = 20\n',
         "links.main.fallback_text_max", "70"),
        ("\n[fallback]\nmax_backoff = \"1s\"\ninitial_backoff = \"2s\"\n", "",
         "fallback.max_backoff", "initial_backoff"),
        ("\n[fallback]\nreceipt_timeout = -1\n", "",
         "fallback.receipt_timeout", "expected a duration of 0 or more"),
        ("\n[fallback]\nreceipt_timeout = \"-2h\"\n", "",
         "fallback.receipt_timeout", "expected a duration of 0 or more"),
    ],
)  # fmt: skip
def test_the_configuration_is_refused_by_name(
    tmp_path: Path, extra: str, main: str, where: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_config(tmp_path, extra, main), env={})
    assert where in str(caught.value) and problem in str(caught.value)


def test_a_valid_configuration(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        '\n[hosting]\nenabled = true\n[fallback]\nmax_age = "10m"\n' + SMS1,
        'fallback = "sms"\nfallback_sms_link = "sms1"\nfallback_text_max = 300\n',
    )
    config = load_config(path, env={})
    link = config.link("main")
    assert (link.fallback, link.fallback_sms_link, link.fallback_text_max) == ("sms", "sms1", 300)
    assert config.fallback.max_age == 600.0


@pytest.mark.parametrize(
    ("line", "seconds"),
    [("", 172800.0), ("receipt_timeout = 0", 0.0), ('receipt_timeout = "6h"', 21600.0),
     ("receipt_timeout = 90.5", 90.5)],
)  # fmt: skip
def test_receipt_timeout_defaults_to_48_hours_and_0_is_never(
    tmp_path: Path, line: str, seconds: float
) -> None:
    config = load_config(_config(tmp_path, f"\n[fallback]\n{line}\n"), env={})
    assert config.fallback.receipt_timeout == seconds
