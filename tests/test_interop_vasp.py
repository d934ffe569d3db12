"""`mm7 interop vasp` as a real process against real endpoints on loopback: mm7's own gateway
(its inbound endpoint, SQLite store) passes the whole suite and stores every MO it acknowledged;
a deliberately broken VASP fails exactly the cases it breaks, each problem saying why; the HTML
report escapes what the peer wrote; a VASP nobody answers for is given up on, bounded."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import sqlite3
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from mm7.core.codec import decode, encode
from mm7.core.dialect import STRICT_3GPP
from mm7.core.errors import MM7Error
from mm7.core.model import (
    RESPONSE_FOR,
    DeliverReq,
    DeliveryReportReq,
    Fault,
    ReadReplyReq,
    Request,
    Response,
    Status,
    VASPErrorRsp,
    reply_to,
)
from mm7.core.status import MMStatus, ReadStatus
from mm7.core.versions import get_version
from mm7.interop.vasp_cases import NON_ASCII_SUBJECT, Parties, build_cases
from mm7.service.config.loader import load_config
from mm7.service.runtime import Gateway
from tests.helpers.interop import run_mm7
from tests.helpers.tls_ca import make_ca

Server = Callable[..., Awaitable[Any]]

CONFIG = """
[links.main]
url = "http://127.0.0.1:9/mm7"
default = true
sender_address = "12345"

[inbound]
listen = "127.0.0.1:0"
[inbound.peers.carrier]
link = "main"
basic = {{ username = "mmsc", password = "mmsc-secret-pw" }}

[api]
listen = "127.0.0.1:0"
[[api.keys]]
name = "app"
key = "interop-api-key-0123456789"

[store]
path = "{db}"

[logging]
level = "warning"
"""


def case_names(*versions: str) -> set[str]:
    """The names of every case in ``versions`` (all when none is named)."""
    chosen = [get_version(v) for v in versions] if versions else None
    now = datetime.now(UTC)
    if chosen is None:
        return {c.name for c in build_cases(Parties(), run_id="x", now=now)}
    return {c.name for c in build_cases(Parties(), run_id="x", now=now, versions=chosen)}


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[Gateway, Path]]:
    path = tmp_path / "gateway.toml"
    db = tmp_path / "mm7.sqlite"
    path.write_text(CONFIG.format(db=db.as_posix()))
    gw = Gateway(
        load_config(path, env={}), configure_logs=False, poll_interval=3600, announce=lambda x: None
    )
    await gw.start()
    try:
        yield gw, db
    finally:
        await gw.stop()


async def test_mm7s_own_inbound_endpoint_passes_the_whole_suite(
    gateway: tuple[Gateway, Path], tmp_path: Path
) -> None:
    gw, db = gateway
    assert gw.inbound_url is not None
    report = tmp_path / "report.html"
    ran = await run_mm7(
        "interop", "vasp", gw.inbound_url, "--user", "mmsc", "--password-env", "VASP_PW",
        "--json", "--html", str(report),
        env={"VASP_PW": "mmsc-secret-pw"},
    )  # fmt: skip
    assert ran.code == 0, ran.out[-3000:] + ran.err
    result = ran.json()
    assert set(result) == {"passed", "failed", "cases"}
    expected = case_names()
    assert result["failed"] == 0 and result["passed"] == len(expected)
    assert {c["name"] for c in result["cases"]} == expected
    assert all(c["ok"] is True and c["problem"] is None for c in result["cases"])
    # every schema version, every MMStatus of each, the quirks and the expected errors were run
    assert "report/deliveryconditionnotmet@REL-6-MM7-1-4" in expected
    assert "quirk/deliver-no-reply-charging-id@REL-5-MM7-1-0" in expected
    assert "error/broken-soap@REL-5-MM7-1-2" in expected
    # what the gateway acknowledged it had committed: one MO per DeliverReq answered 1000
    delivers = [
        e
        for c in build_cases(Parties(), run_id="x", now=datetime.now(UTC))
        for e in c.exchanges
        if isinstance(e.request, DeliverReq) and e.status == 1000
    ]
    with sqlite3.connect(db) as conn:
        stored = [json.loads(row[0]) for row in conn.execute("SELECT fields FROM mo_messages")]
    assert len(stored) == len(delivers)
    assert sum(1 for f in stored if f.get("subject") == NON_ASCII_SUBJECT) == 10
    page = report.read_text(encoding="utf-8")
    assert "PASSED" in page and f"{len(expected)} passed, 0 failed" in page
    assert "mmsc-secret-pw" not in page + ran.out + ran.err


async def test_wrong_credentials_fail_every_case_saying_so(
    gateway: tuple[Gateway, Path],
) -> None:
    gw, _ = gateway
    assert gw.inbound_url is not None
    ran = await run_mm7(
        "interop", "vasp", gw.inbound_url, "--user", "mmsc", "--password-env", "VASP_PW",
        "--versions", "REL-6-MM7-1-4", "--only", "deliver/text",
        env={"VASP_PW": "not-the-password"},
    )  # fmt: skip
    assert ran.code == 1
    assert "FAIL" in ran.out and "HTTP 401: the VASP refused the MMSC's credentials" in ran.out
    assert "0 passed, 1 failed" in ran.out
    assert "not-the-password" not in ran.out + ran.err


# ---------------------------------------------------------------- a VASP broken on purpose


class BrokenVasp:
    """Answers as a VASP should, except: the MO with the non-ASCII subject gets another
    TransactionID, the Expired report an answer in another namespace, the Rejected report a
    status 2000 whose text is markup, and the Deleted read reply no answer at all."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/mm7", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            message = decode(body, request.headers.get("Content-Type")).message
        except MM7Error as exc:
            return self.fault(None, Status.of(exc.status_code))
        if not isinstance(message, DeliverReq | DeliveryReportReq | ReadReplyReq):
            assert isinstance(message, Request)
            return self.fault(message, Status.of(4003))
        rsp: Response = reply_to(message, RESPONSE_FOR[type(message)]())
        if isinstance(message, DeliverReq) and message.subject == NON_ASCII_SUBJECT:
            rsp = dataclasses.replace(rsp, transaction_id="someone-else")
        elif isinstance(message, DeliveryReportReq) and message.mm_status is MMStatus.EXPIRED:
            other = "REL-6-MM7-1-4" if message.namespace == OLDEST.namespace else OLDEST.token
            version = get_version(other)
            rsp = dataclasses.replace(
                rsp, namespace=version.namespace, mm7_version=version.default_mm7_version
            )
        elif isinstance(message, DeliveryReportReq) and message.mm_status is MMStatus.REJECTED:
            rsp = dataclasses.replace(rsp, status=Status(2000, MARKUP))
        elif isinstance(message, ReadReplyReq) and message.mm_status is ReadStatus.DELETED:
            await self.release.wait()
        encoded = encode(rsp, STRICT_3GPP)
        return web.Response(body=encoded.body, headers={"Content-Type": encoded.content_type})

    def fault(self, request: Request | None, status: Status) -> web.Response:
        error = VASPErrorRsp(status=status)
        fault = Fault(faultcode="Client", faultstring=status.text, error=error)
        if request is not None:
            fault = reply_to(request, dataclasses.replace(fault, error=reply_to(request, error)))
        encoded = encode(fault, STRICT_3GPP)
        return web.Response(
            status=500, body=encoded.body, headers={"Content-Type": encoded.content_type}
        )


OLDEST = get_version("REL-5-MM7-1-0")
MARKUP = "<script>alert('x')</script>"
BROKEN = ("deliver/non-ascii-subject", "report/expired", "report/rejected", "read-reply/deleted")


async def test_a_broken_vasp_fails_exactly_the_cases_it_breaks(
    aiohttp_server: Server, tmp_path: Path
) -> None:
    vasp = BrokenVasp()
    server = await aiohttp_server(vasp.app())
    report = tmp_path / "report.html"
    try:
        ran = await run_mm7(
            "interop", "vasp", str(server.make_url("/mm7")), "--json", "--html", str(report),
            "--versions", "REL-5-MM7-1-0,REL-6-MM7-1-4", "--timeout", "3",
        )  # fmt: skip
    finally:
        vasp.release.set()
    assert ran.code == 1, ran.err
    result = ran.json()
    failed = {c["name"]: c["problem"] for c in result["cases"] if not c["ok"]}
    versions = ("REL-5-MM7-1-0", "REL-6-MM7-1-4")
    assert set(failed) == {f"{case}@{v}" for case in BROKEN for v in versions}
    assert result["failed"] == 8 and result["passed"] == len(case_names(*versions)) - 8
    for v in versions:
        tid = failed[f"deliver/non-ascii-subject@{v}"]
        assert "TransactionID not echoed" in tid and "answered 'someone-else'" in tid
        ns = failed[f"report/expired@{v}"]
        other = "REL-6-MM7-1-4" if v == OLDEST.token else OLDEST.token
        assert ns == f"namespace not echoed: sent {v}, answered {other}"
        assert failed[f"read-reply/deleted@{v}"] == "no answer within 3 s"
        assert "status 2000" in failed[f"report/rejected@{v}"]
        assert "expected 1000" in failed[f"report/rejected@{v}"]
    passed = [c for c in result["cases"] if c["ok"]]
    assert all(c["problem"] is None and c["elapsed_ms"] >= 0 for c in passed)
    page = report.read_text(encoding="utf-8")
    assert "FAILED" in page and "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page


async def test_a_vasp_that_cannot_be_reached_is_given_up_on(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/mm7"
        ran = await run_mm7("interop", "vasp", url, "--versions", "REL-6-MM7-1-4", "--json")
    assert ran.code == 1
    cases = ran.json()["cases"]
    assert [c["ok"] for c in cases] == [False] * len(cases)
    assert all(c["problem"].startswith("cannot connect") for c in cases[:3])
    assert all(
        c["problem"].startswith("not sent: the VASP could not be reached") for c in cases[3:]
    )


async def test_https_is_verified_against_the_ca_given(
    aiohttp_server: Server, tmp_path: Path
) -> None:
    ca = make_ca(tmp_path / "pki")
    issued = ca.issue("vasp", server=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(issued.cert, issued.key)
    vasp = BrokenVasp()
    server = await aiohttp_server(vasp.app(), ssl=context)
    url = str(server.make_url("/mm7")).replace("http://", "https://")
    only = ("--versions", "REL-6-MM7-1-4", "--only", "deliver/text", "--json")
    trusted = await run_mm7("interop", "vasp", url, "--tls-ca", str(ca.cert_path), *only)
    assert trusted.code == 0, trusted.out + trusted.err
    assert trusted.json()["passed"] == 1
    untrusted = await run_mm7("interop", "vasp", url, *only)
    assert untrusted.code == 1
    [case] = untrusted.json()["cases"]
    assert "certificate verify failed" in case["problem"]


MTLS_CONFIG = """
[links.main]
url = "http://127.0.0.1:9/mm7"
default = true
sender_address = "12345"

[inbound]
listen = "127.0.0.1:0"
[inbound.tls]
cert_file = "{cert}"
key_file = "{key}"
client_ca = "{ca}"
require_client_cert = true
[inbound.peers.carrier]
link = "main"
client_cert = {{ subjects = ["mmsc1"], issuers = ["{ca}"] }}

[api]
listen = "127.0.0.1:0"
[[api.keys]]
name = "app"
key = "interop-api-key-0123456789"

[store]
path = "{db}"

[logging]
level = "warning"
"""


async def test_mutual_tls_presents_the_client_certificate_given(tmp_path: Path) -> None:
    """mm7's own inbound endpoint behind mutual TLS, as carriers connect: the suite passes with
    --tls-cert/--tls-key naming a certificate the peer accepts, and fails without one."""
    ca = make_ca(tmp_path / "pki")
    server = ca.issue("gateway", server=True)
    mmsc = ca.issue("mmsc1")
    stranger = ca.issue("mmsc2")
    path = tmp_path / "gateway.toml"
    path.write_text(
        MTLS_CONFIG.format(
            cert=server.cert.as_posix(),
            key=server.key.as_posix(),
            ca=ca.cert_path.as_posix(),
            db=(tmp_path / "mm7.sqlite").as_posix(),
        )
    )
    gw = Gateway(
        load_config(path, env={}), configure_logs=False, poll_interval=3600, announce=lambda x: None
    )
    await gw.start()
    try:
        assert gw.inbound_url is not None and gw.inbound_url.startswith("https://")
        url = gw.inbound_url
        only = ("--versions", "REL-6-MM7-1-4", "--only", "deliver/text", "--json")
        ca_file = ("--tls-ca", str(ca.cert_path))
        good = await run_mm7(
            "interop", "vasp", url, *ca_file, "--tls-cert", str(mmsc.cert),
            "--tls-key", str(mmsc.key), *only,
        )  # fmt: skip
        assert good.code == 0, good.out + good.err
        assert good.json()["passed"] == 1
        # a certificate of the right CA but not the peer's: the gateway answers 401/403
        other = await run_mm7(
            "interop", "vasp", url, *ca_file, "--tls-cert", str(stranger.cert),
            "--tls-key", str(stranger.key), *only,
        )  # fmt: skip
        assert other.code == 1, other.out + other.err
        [case] = other.json()["cases"]
        assert "refused the MMSC's credentials or address" in case["problem"], case
        # no certificate: the handshake itself is refused
        none = await run_mm7("interop", "vasp", url, *ca_file, *only)
        assert none.code == 1, none.out + none.err
        [case] = none.json()["cases"]
        assert case["ok"] is False, case
        assert case["problem"].endswith("give --tls-cert and --tls-key)"), case
        # a certificate without its key is an option error: nothing is sent
        half = await run_mm7("interop", "vasp", url, *ca_file, "--tls-cert", str(mmsc.cert))
        assert half.code == 2 and half.out == ""
        assert "--tls-cert and --tls-key go together" in half.err
    finally:
        await gw.stop()
