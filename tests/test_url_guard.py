"""Callers' URLs cannot reach the inside network: media URLs, callback_url, sendmms content-url,
dlr-url and rr-url, in every spelling a browser accepts, through names, redirects and DNS that
changes between the check and the connect. Real servers on 127.0.0.1 hold the "secret"; each test
also checks that the server was never asked."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestClient, TestServer

from mm7.service import url_guard
from mm7.service.api.app import create_api_app
from mm7.service.api.media_fetch import MediaFetcher
from mm7.service.config.loader import load_config
from mm7.service.config.settings import FetchSettings, RelayHook
from mm7.service.errors import FetchError
from mm7.service.relay.hooks import HookSender
from mm7.service.store.sqlite.store import SqliteStore
from mm7.service.url_guard import UrlGuard, UrlRefused, normalise_host
from mm7.transport.link import Secret
from tests.helpers.api import CONFIG, KEY, OTHER_KEY, Gateway
from tests.helpers.media import png_bytes

SECRET = png_bytes(8, 8)


class Names(AbstractResolver):
    """A resolver answering from a table; a name with several answers gives them in turn (the
    last one from then on), as a DNS server that changes its answer would."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = self.answers.get(host)
        if answers is None:
            raise OSError(f"{host}: no such name")
        address = answers.pop(0) if len(answers) > 1 else answers[0]
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        pass


class Inside:
    """A server on the inside network (127.0.0.1 unless told): serves the secret, redirects
    elsewhere, counts every request it gets."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.elsewhere = ""
        self.server: TestServer | None = None
        self.port = 0

    async def start(self, host: str = "127.0.0.1") -> Inside:
        async def secret(request: web.Request) -> web.Response:
            self.hits.append(request.path_qs)
            return web.Response(body=SECRET, content_type="image/png")

        async def away(request: web.Request) -> web.Response:
            self.hits.append(request.path_qs)
            raise web.HTTPFound(self.elsewhere)

        app = web.Application()
        app.router.add_route("*", "/secret", secret)
        app.router.add_get("/away", away)
        self.server = TestServer(app, host=host, port=0)
        await self.server.start_server()
        self.port = self.server.port or 0
        return self

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()


@pytest.fixture
async def inside() -> AsyncIterator[Inside]:
    server = await Inside().start()
    yield server
    await server.close()


def write_config(tmp_path: Path, *, allow_private: bool, other_allows: bool = False) -> Path:
    text = CONFIG
    if other_allows:  # the "other" key may reach private addresses, "app" may not
        text = text.replace('name = "other"\n', 'name = "other"\nallow_private = true\n')
    path = tmp_path / "gateway.toml"
    path.write_text(
        text.format(
            key=KEY,
            other=OTHER_KEY,
            allow_private="true" if allow_private else "false",
            db=(tmp_path / "mm7.sqlite").as_posix(),
        )
    )
    return path


GatewayMaker = Callable[..., Any]


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[GatewayMaker]:
    opened: list[tuple[TestClient[Any, Any], SqliteStore]] = []

    async def make(
        *, allow_private: bool = False, other_allows: bool = False, names: Names | None = None
    ) -> Gateway:
        path = write_config(tmp_path, allow_private=allow_private, other_allows=other_allows)
        config = load_config(path, env={})
        store = await SqliteStore.open(config.store.path)
        guard = UrlGuard(names if names is not None else Names({}))
        app = create_api_app(config, store, url_guard=guard)
        client = TestClient(TestServer(app, host="127.0.0.1", port=0))
        await client.start_server()
        opened.append((client, store))
        return Gateway(client, store, config.store.path)

    yield make
    for client, store in opened:
        await client.close()
        await store.close()


@pytest.fixture
def public_127_0_0_2(monkeypatch: pytest.MonkeyPatch) -> None:
    """127.0.0.2 stands for a public address (a CDN on the internet) in this test."""
    real = url_guard.address_refusal

    def refusal(address: str) -> str | None:
        return None if address == "127.0.0.2" else real(address)

    monkeypatch.setattr(url_guard, "address_refusal", refusal)


# --------------------------------------------------------------------------- the host's spelling


@pytest.mark.parametrize(
    ("host", "normal"),
    [
        ("127。0。0。1", "127.0.0.1"),
        ("127．0．0．1", "127.0.0.1"),
        ("127｡0｡0｡1", "127.0.0.1"),
        ("１２７.０.０.１", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0x7F.0.0.0x1.", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("127%2e0.0.1", "127.0.0.1"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("ＥＸＡＭＰＬＥ．com", "example.com"),
        ("Bücher.example", "xn--bcher-kva.example"),
        ("my_host.example", "my_host.example"),
    ],
)
def test_hosts_are_read_as_a_browser_reads_them(host: str, normal: str) -> None:
    assert normalise_host(host) == normal


@pytest.mark.parametrize("host", ["1.2.3.4.5", "256.0.0.1", "09.0.0.1", "cdn.0x", "a b.example"])
def test_hosts_no_browser_accepts_are_refused(host: str) -> None:
    with pytest.raises(UrlRefused):
        normalise_host(host)


@pytest.mark.parametrize(
    "address", ["::127.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::", "::ffff:10.0.0.1"]
)
def test_ipv4_inside_ipv6_is_judged_as_ipv4(address: str) -> None:
    assert url_guard.address_refusal(address) is not None
    assert url_guard.address_refusal("2001:4860:4860::8888") is None


# --------------------------------------------------------------------------- media


@pytest.mark.parametrize(
    "host",
    [
        "127。0。0。1",
        "１２７.０.０.１",
        "2130706433",
        "0177.0.0.1",
        "0x7f.1",
        "127.1",
        "evil.example",
        "[::ffff:127.0.0.1]",
    ],
)
async def test_media_urls_to_loopback_are_refused_in_every_spelling(
    gateway: GatewayMaker, inside: Inside, host: str
) -> None:
    gw = await gateway(names=Names({"evil.example": ["127.0.0.1"]}))
    url = f"http://{host}:{inside.port}/secret"
    message = await gw.refused({"to": "+12015550100", "media": [{"url": url}]}, 422, "media[0].url")
    assert "a loopback address; set allow_private to allow" in message
    assert "127.0.0.1" in message
    assert inside.hits == []


async def test_sendmms_content_url_to_loopback_is_refused(
    gateway: GatewayMaker, inside: Inside
) -> None:
    gw = await gateway()
    params = {"username": "app", "password": KEY, "to": "+12015550100",
              "content-url": f"http://127。0。0。1:{inside.port}/secret"}  # fmt: skip
    before = gw.counts()
    response = await gw.client.get("/cgi-bin/sendmms", params=params)
    text = await response.text()
    assert response.status == 400 and "a loopback address" in text, text
    assert gw.counts() == before and inside.hits == []


async def test_a_redirect_from_a_public_target_to_loopback_is_refused(
    gateway: GatewayMaker, inside: Inside, public_127_0_0_2: None
) -> None:
    cdn = await Inside().start("127.0.0.2")
    try:
        gw = await gateway()
        for elsewhere in (
            f"http://127.0.0.1:{inside.port}/secret",
            f"http://127。0。0。1:{inside.port}/secret",
        ):
            cdn.elsewhere = elsewhere
            url = f"http://127.0.0.2:{cdn.port}/away"
            message = await gw.refused(
                {"to": "+12015550100", "media": [{"url": url}]}, 422, "media[0].url"
            )
            assert "127.0.0.1, a loopback address" in message
        assert cdn.hits == ["/away", "/away"]  # the allowed target was asked, the inside never
        assert inside.hits == []
    finally:
        await cdn.close()


async def test_dns_that_changes_after_the_check_reaches_nothing(inside: Inside) -> None:
    """The name is public when checked and loopback when connected (DNS rebinding)."""
    guard = UrlGuard(Names({"rebind.example": ["93.184.216.34", "127.0.0.1"]}))
    fetcher = MediaFetcher(FetchSettings(), guard)
    try:
        with pytest.raises(FetchError, match="127.0.0.1, a loopback address"):
            await fetcher.fetch(f"http://rebind.example:{inside.port}/secret")
    finally:
        await fetcher.close()
    assert inside.hits == []


async def test_the_connect_check_holds_for_addresses_no_check_saw(inside: Inside) -> None:
    """A session with the guard's connector refuses an IP literal (which aiohttp does not
    resolve) at connect, whatever was checked before."""
    guard = UrlGuard()
    async with aiohttp.ClientSession(connector=guard.connector()) as session:
        for url in (f"http://127.0.0.1:{inside.port}/secret", f"http://[::1]:{inside.port}/"):
            with pytest.raises(aiohttp.ClientConnectorError) as caught:
                await session.get(url)
            assert isinstance(caught.value.os_error, UrlRefused)
    await guard.close()
    assert inside.hits == []


async def test_allow_private_per_key_and_globally(gateway: GatewayMaker, inside: Inside) -> None:
    url = f"http://127。0。0。1:{inside.port}/secret"
    body = {"to": "+12015550100", "media": [{"url": url}]}
    gw = await gateway(other_allows=True)
    await gw.refused(body, 422, "media[0].url")  # "app" may not
    status, answer = await gw.post(body, headers={"Authorization": f"Bearer {OTHER_KEY}"})
    assert status == 202, answer
    record = await gw.store.get_message(answer["id"])
    assert record is not None
    blob = await gw.store.get_media(record.parts[0].sha256)
    assert blob is not None and blob.data == SECRET
    callback = {
        "to": "+12015550100",
        "text": "x",
        "callback_url": f"http://127.0.0.1:{inside.port}/",
    }
    status, answer = await gw.post(callback, headers={"Authorization": f"Bearer {OTHER_KEY}"})
    assert status == 202, answer

    everyone = await gateway(allow_private=True)
    status, answer = await everyone.post(body)
    assert status == 202, answer
    status, answer = await everyone.post(callback)
    assert status == 202, answer


# --------------------------------------------------------------------------- URLs called later


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://10.0.0.1/cb", "10.0.0.1, a private address; set allow_private to allow"),
        ("http://169.254.169.254/latest", "169.254.169.254, a link-local address"),
        ("https://0x7f.1/cb", "127.0.0.1, a loopback address"),
        ("http://evil.example/cb", "evil.example resolves to 127.0.0.1, a loopback address"),
        ("http://localhost:8000/cb", "localhost is a loopback name"),
    ],
)
async def test_callback_url_to_the_inside_is_refused(
    gateway: GatewayMaker, url: str, why: str
) -> None:
    gw = await gateway(names=Names({"evil.example": ["127.0.0.1"]}))
    message = await gw.refused({"to": "+12015550100", "text": "x", "callback_url": url}, 422,
                               "callback_url")  # fmt: skip
    assert why in message


async def test_callback_url_is_stored_as_checked(gateway: GatewayMaker) -> None:
    gw = await gateway(names=Names({"app.example": ["93.184.216.34"]}))
    status, answer = await gw.post(
        {"to": "+12015550100", "text": "x", "callback_url": "https://ＡＰＰ．example/cb?x=1"}
    )
    assert status == 202, answer
    record = await gw.store.get_message(answer["id"])
    assert record is not None and record.callback_url == "https://app.example/cb?x=1"


@pytest.mark.parametrize("name", ["dlr-url", "rr-url"])
async def test_sendmms_report_urls_to_the_inside_are_refused(
    gateway: GatewayMaker, name: str
) -> None:
    gw = await gateway()
    params = {"username": "app", "password": KEY, "to": "+12015550100", "text": "hi",
              name: "http://127。0。0。1:8000/dlr?s=%d"}  # fmt: skip
    before = gw.counts()
    response = await gw.client.get("/cgi-bin/sendmms", params=params)
    text = await response.text()
    assert response.status == 422, text
    assert text.startswith(f"Error: {name}: refused: 127.0.0.1, a loopback address"), text
    assert gw.counts() == before


async def test_a_relay_delivery_to_the_inside_fails_like_an_unreachable_host(
    inside: Inside, public_127_0_0_2: None
) -> None:
    """A URL accepted earlier whose DNS now says loopback: the attempt fails with the words of
    a host that does not answer, so a caller cannot tell "refused" from "closed port"."""
    closed = socket.socket()
    closed.bind(("127.0.0.2", 0))
    closed_port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    hook = RelayHook(name="callback:x", url="", secret=Secret("s"), timeout=5.0)
    async with HookSender() as sender:
        outcomes = []
        for url in (f"http://127.0.0.1:{inside.port}/secret", f"http://127.0.0.2:{closed_port}/"):
            outcomes.append(
                await sender.deliver(
                    dataclasses.replace(hook, url=url),
                    {"type": "status"},
                    idempotency_key="k",
                    attempt=1,
                    guarded=True,
                )
            )
    refused, unreachable = outcomes
    assert refused.error == f"connection error: cannot connect to 127.0.0.1:{inside.port}"
    assert unreachable.error == f"connection error: cannot connect to 127.0.0.2:{closed_port}"
    assert refused.status is None and unreachable.status is None
    assert inside.hits == []


async def test_configured_hooks_are_not_guarded(inside: Inside) -> None:
    """The operator's own [relay.hooks] may be on the inside network: only callers' URLs are."""
    hook = RelayHook(name="app", url=f"http://127.0.0.1:{inside.port}/secret", secret=Secret("s"))
    async with HookSender() as sender:
        outcome = await sender.deliver(hook, {"type": "mo"}, idempotency_key="k", attempt=1)
    assert outcome.delivered and inside.hits == ["/secret"]
