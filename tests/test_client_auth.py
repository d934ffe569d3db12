"""Outbound authentication against fake MMSCs: Basic and Digest challenges, Bearer, mutual TLS
with a CA made at test time, certificate expiry checks, and no credential in any log or error."""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from mm7.transport.classify import Outcome
from mm7.transport.client import MM7Client
from mm7.transport.client_auth import check_certificate, make_ssl_context
from mm7.transport.errors import LinkConfigError, MM7ClientError
from mm7.transport.link import (
    BasicAuth,
    BearerAuth,
    DigestAuth,
    LinkConfig,
    Secret,
    TLSConfig,
)
from tests.helpers import tls_ca
from tests.helpers.fake_mmsc import (
    PATH,
    DigestGuard,
    FakeMMSC,
    basic_guard,
    bearer_guard,
    fault,
    raw,
    submit_req,
)
from tests.helpers.tls_ca import Issued, make_ca

Server = Callable[..., Awaitable[Any]]
PASSWORD = "s3cr3t-Pa55"
TOKEN = "tok-ABCDEF0123456789"


@pytest.fixture
async def mmsc(aiohttp_server: Server) -> AsyncIterator[tuple[FakeMMSC, str]]:
    fake = FakeMMSC()
    server = await aiohttp_server(fake.app())
    yield fake, str(server.make_url(PATH))


def link(url: str, **kwargs: Any) -> LinkConfig:
    return LinkConfig(name="auth-test", url=url, **kwargs)


# --- Basic, Digest, Bearer ---------------------------------------------------------------------


async def test_basic_auth_accepted_and_wrong_password_refused(
    mmsc: tuple[FakeMMSC, str],
) -> None:
    fake, url = mmsc
    fake.default = basic_guard("vasp", PASSWORD)
    async with MM7Client(link(url, auth=BasicAuth("vasp", Secret(PASSWORD)))) as client:
        assert (await client.submit(submit_req())).status.code == 1000
    assert fake.seen[0].headers["Authorization"].startswith("Basic ")
    async with MM7Client(link(url, auth=BasicAuth("vasp", Secret("wrong")))) as client:
        with pytest.raises(MM7ClientError) as info:
            await client.submit(submit_req())
    assert info.value.http_status == 401 and not info.value.transient


async def test_digest_challenge_answered_and_verified(mmsc: tuple[FakeMMSC, str]) -> None:
    fake, url = mmsc
    guard = DigestGuard("vasp", PASSWORD)
    fake.default = guard.behaviour()
    async with MM7Client(link(url, auth=DigestAuth("vasp", Secret(PASSWORD)))) as client:
        first = await client.submit(submit_req())
        second = await client.submit(submit_req())
    assert first.status.code == 1000 and second.status.code == 1000
    assert guard.verified == 2
    # one challenge, then the middleware answers preemptively with the known nonce
    assert guard.challenged == 1
    assert fake.seen[0].headers.get("Authorization") is None
    assert fake.seen[1].headers["Authorization"].startswith("Digest ")
    # the body was sent again after the challenge, whole
    assert fake.seen[1].body == fake.seen[0].body


async def test_digest_wrong_password_is_refused(mmsc: tuple[FakeMMSC, str]) -> None:
    fake, url = mmsc
    guard = DigestGuard("vasp", PASSWORD)
    fake.default = guard.behaviour()
    async with MM7Client(link(url, auth=DigestAuth("vasp", Secret("nope")))) as client:
        with pytest.raises(MM7ClientError) as info:
            await client.submit(submit_req())
    assert info.value.http_status == 401 and not info.value.transient
    assert guard.verified == 0


async def test_bearer_token(mmsc: tuple[FakeMMSC, str]) -> None:
    fake, url = mmsc
    fake.default = bearer_guard(TOKEN)
    async with MM7Client(link(url, auth=BearerAuth(Secret(TOKEN)))) as client:
        assert (await client.submit(submit_req())).status.code == 1000
    async with MM7Client(link(url, auth=BearerAuth(Secret("other")))) as client:
        with pytest.raises(MM7ClientError) as info:
            await client.submit(submit_req())
    assert info.value.http_status == 401


# --- secrets stay secret -----------------------------------------------------------------------


async def test_credentials_never_in_logs_or_errors(mmsc: tuple[FakeMMSC, str]) -> None:
    fake, url = mmsc
    guard = DigestGuard("vasp", PASSWORD)
    fake.script = [
        basic_guard("vasp", PASSWORD),
        basic_guard("vasp", PASSWORD, fault(2002, http=500)),
        bearer_guard(TOKEN),
        bearer_guard(TOKEN, raw(503, b"down", "text/plain")),
        guard.behaviour(),
        guard.behaviour(),
    ]
    errors: list[MM7ClientError] = []
    with capture_logs() as logs:
        for auth in (
            BasicAuth("vasp", Secret(PASSWORD)),
            BearerAuth(Secret(TOKEN)),
            DigestAuth("vasp", Secret(PASSWORD)),
        ):
            config = link(url, auth=auth, wire_log=True)
            async with MM7Client(config) as client:
                await client.submit(submit_req())
                try:
                    await client.submit(submit_req())
                except MM7ClientError as exc:
                    errors.append(exc)
            assert PASSWORD not in repr(config) and TOKEN not in repr(config)
            assert PASSWORD not in str(config) and TOKEN not in f"{config}"
    assert len(errors) == 2
    assert any(e.get("event") == "mm7.client.wire" for e in logs)
    dumped = json.dumps(logs, default=repr)
    text = dumped + "".join(str(e) + repr(e) for e in errors)
    basic = base64.b64encode(f"vasp:{PASSWORD}".encode()).decode()
    for secret in (PASSWORD, TOKEN, basic):
        assert secret not in text
    assert "Bearer ***" in dumped and "Basic ***" in dumped


def test_secret_masks_itself() -> None:
    secret = Secret(PASSWORD)
    assert str(secret) == "***" and repr(secret) == "Secret('***')" and f"{secret}" == "***"
    assert f"{secret:>20}" == "***"
    assert secret.reveal() == PASSWORD and secret == Secret(PASSWORD)


def test_credentials_in_url_are_refused_without_echoing_them() -> None:
    with pytest.raises(LinkConfigError) as info:
        LinkConfig(name="x", url=f"https://vasp:{PASSWORD}@mmsc.example/mm7")
    assert PASSWORD not in str(info.value)


# --- mutual TLS --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("pki")
    ca = make_ca(folder)
    other = make_ca(folder, "other-ca")
    return {
        "ca": ca,
        "server": ca.issue("mmsc", server=True),
        "client": ca.issue("vasp"),
        "stranger": other.issue("vasp"),
    }


def server_context(ca: tls_ca.TestCA, server: Issued) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca.cert_path))
    ctx.load_cert_chain(str(server.cert), str(server.key))
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


@pytest.fixture
async def tls_mmsc(
    aiohttp_server: Server, pki: dict[str, Any]
) -> AsyncIterator[tuple[FakeMMSC, str]]:
    fake = FakeMMSC()
    server = await aiohttp_server(fake.app(), ssl=server_context(pki["ca"], pki["server"]))
    yield fake, str(server.make_url(PATH))


def tls(pki: dict[str, Any], who: str | None = "client", **kwargs: Any) -> TLSConfig:
    issued: Issued | None = pki[who] if who else None
    return TLSConfig(
        ca_file=pki["ca"].cert_path,
        cert_file=issued.cert if issued else None,
        key_file=issued.key if issued else None,
        **kwargs,
    )


async def test_mutual_tls_accepted_with_the_right_certificate(
    tls_mmsc: tuple[FakeMMSC, str], pki: dict[str, Any]
) -> None:
    fake, url = tls_mmsc
    assert url.startswith("https://127.0.0.1:")
    async with MM7Client(link(url, tls=tls(pki))) as client:
        assert (await client.submit(submit_req())).status.code == 1000
    assert len(fake.seen) == 1


@pytest.mark.parametrize("who", [None, "stranger"])
async def test_mutual_tls_refused_without_or_with_a_foreign_certificate(
    tls_mmsc: tuple[FakeMMSC, str], pki: dict[str, Any], who: str | None
) -> None:
    fake, url = tls_mmsc
    async with MM7Client(link(url, tls=tls(pki, who))) as client:
        with pytest.raises(MM7ClientError) as info:
            await client.submit(submit_req())
    # TLS 1.3: the server's alert arrives after the client's handshake completed, so the client
    # sees the connection reset on its first read; both outcomes are transient link faults
    assert info.value.outcome in (Outcome.TLS_ERROR, Outcome.CONNECTION_RESET)
    assert info.value.transient
    assert fake.seen == []


async def test_mutual_tls_refusal_under_tls12_is_a_tls_error(
    aiohttp_server: Server, pki: dict[str, Any]
) -> None:
    """Under TLS 1.2 the refusal happens inside the handshake and is named as such."""
    fake = FakeMMSC()
    ctx = server_context(pki["ca"], pki["server"])
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    server = await aiohttp_server(fake.app(), ssl=ctx)
    url = str(server.make_url(PATH))
    async with MM7Client(link(url, tls=tls(pki, "stranger"))) as client:
        with pytest.raises(MM7ClientError) as info:
            await client.submit(submit_req())
    assert info.value.outcome is Outcome.TLS_ERROR and fake.seen == []
    async with MM7Client(link(url, tls=tls(pki))) as client:
        assert (await client.submit(submit_req())).status.code == 1000


async def test_hostname_verification_is_on(
    tls_mmsc: tuple[FakeMMSC, str], pki: dict[str, Any]
) -> None:
    """The server certificate names 127.0.0.1/localhost, not mmsc.example.com: refused."""
    fake, url = tls_mmsc
    config = link(url, tls=tls(pki, server_hostname="mmsc.example.com"))
    async with MM7Client(config) as client:
        with pytest.raises(MM7ClientError) as info:
            await client.submit(submit_req())
    assert info.value.outcome is Outcome.TLS_ERROR
    assert fake.seen == []
    ctx = make_ssl_context(tls(pki), link="x")
    assert ctx is not None and ctx.check_hostname and ctx.verify_mode is ssl.CERT_REQUIRED


async def test_server_from_an_untrusted_ca_is_refused(
    tls_mmsc: tuple[FakeMMSC, str], pki: dict[str, Any], tmp_path: Path
) -> None:
    fake, url = tls_mmsc
    foreign = make_ca(tmp_path, "foreign")
    config = link(url, tls=TLSConfig(ca_file=foreign.cert_path))
    async with MM7Client(config) as client:
        with pytest.raises(MM7ClientError) as info:
            await client.submit(submit_req())
    assert info.value.outcome is Outcome.TLS_ERROR and fake.seen == []


def test_expiring_client_certificate_warns(pki: dict[str, Any]) -> None:
    soon = pki["ca"].issue("vasp-soon", days=5)
    with capture_logs() as logs:
        client = MM7Client(
            link(
                "https://127.0.0.1:1/mm7",
                tls=TLSConfig(ca_file=pki["ca"].cert_path, cert_file=soon.cert, key_file=soon.key),
            )
        )
    (warning,) = [e for e in logs if e["event"] == "mm7.tls.client_cert_expiring"]
    assert warning["log_level"] == "warning" and warning["link"] == "auth-test"
    assert 4 < warning["days_left"] <= 5 and warning["subject"] == "vasp-soon"
    # a long-running gateway can ask again (periodic health check)
    with capture_logs() as again:
        info = client.certificate()
    assert info is not None and info.subject == "vasp-soon"
    assert [e["event"] for e in again] == ["mm7.tls.client_cert_expiring"]
    with capture_logs() as quiet:
        check_certificate(pki["client"].cert, link="x", warning_days=7)
    assert quiet == []


def test_expired_or_future_client_certificate_is_refused(pki: dict[str, Any]) -> None:
    expired = pki["ca"].issue("vasp-old", days=-1, not_before_days=-30)
    with pytest.raises(LinkConfigError, match="expired on"):
        MM7Client(
            link(
                "https://127.0.0.1:1/mm7",
                tls=TLSConfig(cert_file=expired.cert, key_file=expired.key),
            )
        )
    future = pki["ca"].issue("vasp-new", days=60, not_before_days=3)
    with pytest.raises(LinkConfigError, match="not valid before"):
        check_certificate(future.cert, link="x")


def test_mismatched_key_is_a_clear_config_error(pki: dict[str, Any]) -> None:
    config = TLSConfig(cert_file=pki["client"].cert, key_file=pki["stranger"].key)
    with pytest.raises(LinkConfigError, match="does not match"):
        make_ssl_context(config, link="x")


def test_tls_settings_need_https() -> None:
    with pytest.raises(LinkConfigError, match="https"):
        LinkConfig(name="x", url="http://mmsc/mm7", tls=TLSConfig())
