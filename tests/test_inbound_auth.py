"""Inbound authentication: each check refuses a wrong credential and accepts the right one.

HTTP Basic (wrong password, missing header), IP allow-list (address outside the list, IPv4 and
IPv6), mutual TLS (no client certificate, a certificate from another CA, a subject or issuer the
peer does not accept) and combinations, against real aiohttp servers on loopback with a test CA
made at test time; plus the checks as plain functions.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from structlog.testing import capture_logs

from mm7.transport.inbound_auth import (
    PEER_IDENTITY,
    AuthFailure,
    BasicCredentials,
    ClientCertRule,
    PeerAuth,
    PeerIdentity,
    Presented,
    Refusal,
    address_allowed,
    auth_middleware,
    authenticate,
    check,
    decode_basic,
    normalise_san,
    server_ssl_context,
)
from mm7.transport.server import InboundConfig, Peer, create_inbound_app
from tests.helpers import tls_ca
from tests.helpers.inbound import Recorder, Reply, post_message, request_message, start
from tests.helpers.tls_ca import Issued, make_ca

ServerFactory = Callable[..., Awaitable[Any]]


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth(user, password)}


def config(*peers: Peer) -> InboundConfig:
    return InboundConfig(peers=peers)


async def send(server: Any, **kwargs: Any) -> Reply:
    message = request_message("DeliverReq", "REL-6-MM7-1-4")
    return await post_message(server.make_url("/mm7"), message, **kwargs)


def assert_refused(reply: Reply, http_status: int) -> None:
    """HTTP ``http_status`` with a 4001 VASPErrorRsp fault."""
    assert reply.status == http_status
    assert reply.fault_status().code == 4001
    assert reply.headers["Connection"] == "close"


# --------------------------------------------------------------------------- the checks as data


def test_address_allow_list_ipv4_ipv6_and_mapped() -> None:
    nets = PeerAuth.of(allow=["10.1.0.0/16", "2001:db8::/32", "192.0.2.7"]).networks
    assert address_allowed("10.1.2.3", nets)
    assert not address_allowed("10.2.0.1", nets)
    assert address_allowed("2001:db8::1", nets)
    assert not address_allowed("2001:db9::1", nets)
    assert address_allowed("192.0.2.7", nets)  # a bare address is a /32
    assert not address_allowed("192.0.2.8", nets)
    assert address_allowed("::ffff:10.1.0.9", nets)  # IPv4-mapped IPv6 is the IPv4 address
    assert not address_allowed(None, nets)
    assert not address_allowed("not-an-address", nets)
    with pytest.raises(ValueError):
        PeerAuth.of(allow=["10.0.0.0/33"])


def test_basic_header_parsing() -> None:
    assert decode_basic(aiohttp.encode_basic_auth("vasp", "pä:ss")) == (
        b"vasp",
        "pä:ss".encode(),
    )
    assert decode_basic("basic " + base64.b64encode(b"u:p").decode()) == (b"u", b"p")
    assert decode_basic(None) is None
    assert decode_basic("Bearer abc") is None
    assert decode_basic("Basic !!!not-base64") is None
    assert decode_basic("Basic " + base64.b64encode(b"no-colon").decode()) is None


def test_credentials_never_show_the_password() -> None:
    creds = BasicCredentials("vasp", "s3cret")
    assert "s3cret" not in repr(creds)
    assert "s3cret" not in repr(Presented(authorization=aiohttp.encode_basic_auth("v", "s3cret")))
    assert creds.matches(b"vasp", b"s3cret")
    assert not creds.matches(b"vasp", b"s3cret ")
    assert not creds.matches(b"vasP", b"s3cret")


def test_each_check_names_its_failure() -> None:
    auth = PeerAuth.of(basic=("vasp", "pw"), allow=["127.0.0.0/8"])
    right = aiohttp.encode_basic_auth("vasp", "pw")
    assert check(auth, Presented("127.0.0.1", right)) is None
    assert check(auth, Presented("127.0.0.1", None)) is AuthFailure.BASIC_MISSING
    wrong = aiohttp.encode_basic_auth("vasp", "nope")
    assert check(auth, Presented("127.0.0.1", wrong)) is AuthFailure.BASIC_WRONG
    assert check(auth, Presented("10.0.0.1", right)) is AuthFailure.ADDRESS_NOT_ALLOWED
    tls = PeerAuth(client_cert=ClientCertRule())
    assert check(tls, Presented("127.0.0.1")) is AuthFailure.CERT_MISSING
    assert PeerAuth().is_open and not auth.is_open


def test_authenticate_answers_401_only_when_a_password_would_help() -> None:
    peers = [
        Peer("a", PeerAuth.of(basic=("a", "pa"), realm='car"rier')),
        Peer("b", PeerAuth.of(allow=["10.0.0.0/8"])),
    ]
    refusal = authenticate(peers, Presented("127.0.0.1", None))
    assert isinstance(refusal, Refusal)
    assert refusal.http_status == 401
    assert refusal.challenge == 'Basic realm="car\\"rier", charset="UTF-8"'
    assert refusal.reasons == (
        ("a", AuthFailure.BASIC_MISSING),
        ("b", AuthFailure.ADDRESS_NOT_ALLOWED),
    )
    only_ip = authenticate(peers[1:], Presented("127.0.0.1", None))
    assert isinstance(only_ip, Refusal) and only_ip.http_status == 403
    assert only_ip.challenge is None
    who = authenticate(peers, Presented("10.0.0.5", None))
    assert who == PeerIdentity("b", "10.0.0.5")


# --------------------------------------------------------------------------- Basic over HTTP


async def test_basic_refuses_a_wrong_password_and_a_missing_header(
    aiohttp_server: ServerFactory,
) -> None:
    recorder = Recorder()
    peer = Peer("carrier", PeerAuth.of(basic=("vasp", "s3cret"), realm="carrier-mm7"))
    server = await start(aiohttp_server, recorder, config=config(peer))
    with capture_logs() as logs:
        wrong = await send(server, headers=basic("vasp", "guess"))
        missing = await send(server)
        wrong_user = await send(server, headers=basic("admin", "s3cret"))
    for reply in (wrong, missing, wrong_user):
        assert_refused(reply, 401)
        assert reply.headers["WWW-Authenticate"] == 'Basic realm="carrier-mm7", charset="UTF-8"'
    assert recorder.contexts == []
    reasons = [e["reasons"] for e in logs if e["event"] == "mm7.auth.refused"]
    assert reasons == [["carrier:basic-wrong"], ["carrier:basic-missing"], ["carrier:basic-wrong"]]
    assert "guess" not in repr(logs) and "s3cret" not in repr(logs)

    right = await send(server, headers=basic("vasp", "s3cret"))
    assert right.status == 200
    assert recorder.contexts[0].peer == PeerIdentity("carrier", "127.0.0.1", "vasp")


async def test_peers_are_told_apart_by_their_credentials(aiohttp_server: ServerFactory) -> None:
    recorder = Recorder()
    peers = (
        Peer("carrier-a", PeerAuth.of(basic=("a", "pa"))),
        Peer("carrier-b", PeerAuth.of(basic=("b", "pb"))),
    )
    server = await start(aiohttp_server, recorder, config=config(*peers))
    assert (await send(server, headers=basic("b", "pb"))).status == 200
    assert (await send(server, headers=basic("a", "pa"))).status == 200
    assert_refused(await send(server, headers=basic("a", "pb")), 401)
    assert [c.peer.name for c in recorder.contexts] == ["carrier-b", "carrier-a"]


async def test_unauthenticated_expect_100_is_refused_before_the_body(
    aiohttp_server: ServerFactory,
) -> None:
    recorder = Recorder()
    peer = Peer("carrier", PeerAuth.of(basic=("vasp", "s3cret")))
    server = await start(aiohttp_server, recorder, config=config(peer))
    never = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        never.set()  # would only run if the server had said 100 Continue
        yield b"<x/>"

    headers = {"Content-Type": "text/xml", **basic("vasp", "wrong")}
    async with (
        aiohttp.ClientSession() as s,
        s.post(server.make_url("/mm7"), data=body(), headers=headers, expect100=True) as resp,
    ):
        await resp.read()
        assert resp.status == 401
    assert not never.is_set()
    assert recorder.contexts == []


# --------------------------------------------------------------------------- IP allow-list


async def test_allow_list_refuses_an_address_outside_it(aiohttp_server: ServerFactory) -> None:
    recorder = Recorder()
    outside = Peer("carrier", PeerAuth.of(allow=["10.0.0.0/8", "2001:db8::/32"]))
    server = await start(aiohttp_server, recorder, config=config(outside))
    reply = await send(server)
    assert_refused(reply, 403)
    assert "WWW-Authenticate" not in reply.headers  # a password would not help
    assert recorder.contexts == []

    inside = Peer("carrier", PeerAuth.of(allow=["10.0.0.0/8", "127.0.0.0/8"]))
    server = await start(aiohttp_server, recorder, config=config(inside))
    assert (await send(server)).status == 200


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
async def test_allow_list_over_ipv6(aiohttp_server: ServerFactory) -> None:
    recorder = Recorder()
    refused = InboundConfig(peers=(Peer("v6", PeerAuth.of(allow=["fd00::/8"])),))
    server = await aiohttp_server(_app(refused, recorder), host="::1")
    assert_refused(await send(server), 403)
    allowed = InboundConfig(peers=(Peer("v6", PeerAuth.of(allow=["::1/128"])),))
    server = await aiohttp_server(_app(allowed, recorder), host="::1")
    assert (await send(server)).status == 200
    assert recorder.contexts[0].peer.remote == "::1"


def _app(cfg: InboundConfig, recorder: Recorder) -> web.Application:
    return create_inbound_app(cfg, recorder.handlers())


async def test_basic_and_allow_list_must_both_pass(aiohttp_server: ServerFactory) -> None:
    recorder = Recorder()
    here = Peer("carrier", PeerAuth.of(basic=("vasp", "pw"), allow=["127.0.0.0/8"]))
    server = await start(aiohttp_server, recorder, config=config(here))
    assert_refused(await send(server, headers=basic("vasp", "bad")), 401)
    assert (await send(server, headers=basic("vasp", "pw"))).status == 200

    elsewhere = Peer("carrier", PeerAuth.of(basic=("vasp", "pw"), allow=["10.0.0.0/8"]))
    server = await start(aiohttp_server, recorder, config=config(elsewhere))
    assert_refused(await send(server, headers=basic("vasp", "pw")), 403)  # right password
    assert len(recorder.contexts) == 1


# --------------------------------------------------------------------------- mutual TLS


class PKI:
    """A test CA with a server certificate, and a second CA the server does not trust."""

    def __init__(self, folder: Path) -> None:
        self.ca: tls_ca.TestCA = make_ca(folder, "carrier-ca")
        self.other: tls_ca.TestCA = make_ca(folder, "rogue-ca")
        self.server: Issued = self.ca.issue("vasp.example", server=True)
        self.client: Issued = self.ca.issue("mmsc-1")
        self.client2: Issued = self.ca.issue("mmsc-2")
        self.rogue: Issued = self.other.issue("mmsc-1")
        self.named: Issued = self.ca.issue(
            "mmsc-9",
            sans=[
                x509.DNSName("MMSC1.Carrier.Example"),
                x509.UniformResourceIdentifier("spiffe://carrier/mmsc1"),
            ],
        )
        self.wildcard: Issued = self.ca.issue(
            "mmsc-8", sans=[x509.DNSName("*.carrier.example")], label="wildcard"
        )
        self.two_cns: Issued = self.ca.issue(
            "mmsc-1", more_common_names=["mmsc-2"], label="two-cns"
        )
        self.same_cns: Issued = self.ca.issue(
            "mmsc-1", more_common_names=["mmsc-1"], label="same-cns"
        )
        # a listener that trusts both CAs (issuer pinning per peer is then what separates them)
        self.both = folder / "both.pem"
        self.both.write_bytes(self.ca.cert_path.read_bytes() + self.other.cert_path.read_bytes())

    def server_context(
        self, *, required: bool = True, client_ca: Path | None = None
    ) -> ssl.SSLContext:
        return server_ssl_context(
            self.server.cert,
            self.server.key,
            client_ca=client_ca or self.ca.cert_path,
            require_client_cert=required,
        )

    def client_context(self, issued: Issued | None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca.cert_path))
        if issued is not None:
            context.load_cert_chain(issued.cert, issued.key)
        return context


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return PKI(tmp_path_factory.mktemp("pki"))


async def send_tls(server: Any, pki: PKI, issued: Issued | None, **kwargs: Any) -> Reply:
    connector = aiohttp.TCPConnector(ssl=pki.client_context(issued))
    async with aiohttp.ClientSession(connector=connector) as session:
        return await send(server, session=session, **kwargs)


TLS_PEER = Peer("carrier", PeerAuth(client_cert=ClientCertRule()))


async def test_mutual_tls_accepts_the_right_certificate_and_shows_its_subject(
    aiohttp_server: ServerFactory, pki: PKI
) -> None:
    recorder = Recorder()
    server = await start(
        aiohttp_server, recorder, config=config(TLS_PEER), ssl=pki.server_context()
    )
    assert str(server.make_url("/mm7")).startswith("https://127.0.0.1:")
    reply = await send_tls(server, pki, pki.client)
    assert reply.status == 200
    peer = recorder.contexts[0].peer
    assert peer.cert_subject == "CN=mmsc-1"
    cert = x509.load_pem_x509_certificate(pki.client.cert.read_bytes())
    assert peer.cert_sha256 == hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


@pytest.mark.parametrize("which", ["no-certificate", "other-ca"])
async def test_mutual_tls_handshake_refuses_no_or_a_foreign_certificate(
    aiohttp_server: ServerFactory, pki: PKI, which: str
) -> None:
    recorder = Recorder()
    server = await start(
        aiohttp_server, recorder, config=config(TLS_PEER), ssl=pki.server_context()
    )
    issued = None if which == "no-certificate" else pki.rogue
    with pytest.raises(aiohttp.ClientError):
        await send_tls(server, pki, issued)
    assert recorder.contexts == []


async def test_optional_client_certificate_leaves_the_refusal_to_the_peer_rule(
    aiohttp_server: ServerFactory, pki: PKI
) -> None:
    recorder = Recorder()
    peers = (
        Peer("tls", PeerAuth(client_cert=ClientCertRule(subjects=frozenset({"mmsc-1"})))),
        Peer("pw", PeerAuth.of(basic=("vasp", "pw"))),
    )
    server = await start(
        aiohttp_server, recorder, config=config(*peers), ssl=pki.server_context(required=False)
    )
    no_cert = await send_tls(server, pki, None)
    assert_refused(no_cert, 401)  # the password peer could let it in
    assert (await send_tls(server, pki, None, headers=basic("vasp", "pw"))).status == 200
    assert (await send_tls(server, pki, pki.client)).status == 200
    assert [c.peer.name for c in recorder.contexts] == ["pw", "tls"]
    assert recorder.contexts[0].peer.cert_subject is None


async def test_certificate_subject_not_in_the_peer_list_is_refused(
    aiohttp_server: ServerFactory, pki: PKI
) -> None:
    recorder = Recorder()
    rule = ClientCertRule(subjects=frozenset({"CN=mmsc-1"}))
    server = await start(
        aiohttp_server,
        recorder,
        config=config(Peer("carrier", PeerAuth(client_cert=rule))),
        ssl=pki.server_context(),
    )
    assert_refused(await send_tls(server, pki, pki.client2), 403)
    assert (await send_tls(server, pki, pki.client)).status == 200
    assert len(recorder.contexts) == 1


async def test_issuer_pinning_separates_peers_on_a_listener_trusting_two_cas(
    aiohttp_server: ServerFactory, pki: PKI
) -> None:
    recorder = Recorder()
    rule = ClientCertRule.from_files(issuers=[pki.ca.cert_path])
    server = await start(
        aiohttp_server,
        recorder,
        config=config(Peer("carrier", PeerAuth(client_cert=rule))),
        ssl=pki.server_context(client_ca=pki.both),
    )
    # the rogue CA's certificate passes the TLS layer (the listener trusts it) but not the peer
    assert_refused(await send_tls(server, pki, pki.rogue), 403)
    assert (await send_tls(server, pki, pki.client)).status == 200


async def test_certificate_and_password_must_both_pass(
    aiohttp_server: ServerFactory, pki: PKI
) -> None:
    recorder = Recorder()
    auth = PeerAuth.of(basic=("vasp", "pw"), allow=["127.0.0.1"], client_cert=ClientCertRule())
    server = await start(
        aiohttp_server, recorder, config=config(Peer("carrier", auth)), ssl=pki.server_context()
    )
    assert_refused(await send_tls(server, pki, pki.client, headers=basic("vasp", "x")), 401)
    reply = await send_tls(server, pki, pki.client, headers=basic("vasp", "pw"))
    assert reply.status == 200
    peer = recorder.contexts[0].peer
    assert (peer.username, peer.cert_subject) == ("vasp", "CN=mmsc-1")


async def _tls_server(
    aiohttp_server: ServerFactory, pki: PKI, recorder: Recorder, rule: ClientCertRule
) -> Any:
    return await start(
        aiohttp_server,
        recorder,
        config=config(Peer("carrier", PeerAuth(client_cert=rule))),
        ssl=pki.server_context(),
    )


@pytest.mark.parametrize(
    ("sans", "accepted"),
    [
        (["DNS:mmsc1.carrier.example"], True),
        (["dns:MMSC1.CARRIER.EXAMPLE."], True),  # DNS compares case-insensitively
        (["URI:spiffe://carrier/mmsc1"], True),
        (["DNS:*.carrier.example"], True),  # one whole label
        (["URI:spiffe://carrier/MMSC1"], False),  # a URI compares exactly
        (["DNS:mmsc2.carrier.example", "URI:spiffe://carrier/mmsc2"], False),
        (["DNS:*.example"], None),  # refused by the rule itself (too wide)
        (["DNS:carrier.example"], False),
        (["DNS:spiffe"], False),  # a URI is not a DNS name
    ],
)
async def test_a_peer_is_matched_by_subject_alternative_name(
    aiohttp_server: ServerFactory, pki: PKI, sans: list[str], accepted: bool | None
) -> None:
    if accepted is None:
        with pytest.raises(ValueError, match="two labels"):
            ClientCertRule.from_files(sans=sans)
        return
    recorder = Recorder()
    server = await _tls_server(aiohttp_server, pki, recorder, ClientCertRule.from_files(sans=sans))
    with capture_logs() as logs:
        reply = await send_tls(server, pki, pki.named)
    if accepted:
        assert reply.status == 200
        assert recorder.contexts[0].peer.cert_subject == "CN=mmsc-9"
    else:
        assert_refused(reply, 403)
        (event,) = [e for e in logs if e["event"] == "mm7.auth.refused"]
        assert event["reasons"] == ["carrier:cert-subject"]
        assert event["cert_subject"] == "CN=mmsc-9"
        assert recorder.contexts == []
    # a certificate without the SAN extension matches no SAN rule
    assert_refused(await send_tls(server, pki, pki.client), 403)


async def test_subjects_and_sans_either_one_lets_the_certificate_in(
    aiohttp_server: ServerFactory, pki: PKI
) -> None:
    recorder = Recorder()
    rule = ClientCertRule.from_files(subjects=["mmsc-1"], sans=["URI:spiffe://carrier/mmsc1"])
    server = await _tls_server(aiohttp_server, pki, recorder, rule)
    assert (await send_tls(server, pki, pki.client)).status == 200  # by common name
    assert (await send_tls(server, pki, pki.named)).status == 200  # by SAN
    assert_refused(await send_tls(server, pki, pki.client2), 403)  # neither


async def test_a_wildcard_in_the_certificate_names_no_peer(
    aiohttp_server: ServerFactory, pki: PKI
) -> None:
    recorder = Recorder()
    for sans in (["DNS:mmsc1.carrier.example"], ["DNS:*.carrier.example"]):
        rule = ClientCertRule.from_files(sans=sans)
        server = await _tls_server(aiohttp_server, pki, recorder, rule)
        assert_refused(await send_tls(server, pki, pki.wildcard), 403)


@pytest.mark.parametrize(
    "rule",
    [
        ClientCertRule(),
        ClientCertRule(subjects=frozenset({"mmsc-1"})),
        ClientCertRule(subjects=frozenset({"mmsc-2"})),
    ],
    ids=["any", "first-cn", "second-cn"],
)
async def test_a_certificate_whose_common_names_disagree_is_refused(
    aiohttp_server: ServerFactory, pki: PKI, rule: ClientCertRule
) -> None:
    recorder = Recorder()
    server = await _tls_server(aiohttp_server, pki, recorder, rule)
    with capture_logs() as logs:
        reply = await send_tls(server, pki, pki.two_cns)
    assert_refused(reply, 403)
    (event,) = [e for e in logs if e["event"] == "mm7.auth.refused"]
    assert event["reasons"] == ["carrier:cert-cn-conflict"]
    assert event["cert_subject"] == "CN=mmsc-2,CN=mmsc-1"
    assert "BEGIN" not in repr(event)
    assert recorder.contexts == []


async def test_a_certificate_repeating_the_same_common_name_is_accepted(
    aiohttp_server: ServerFactory, pki: PKI
) -> None:
    recorder = Recorder()
    rule = ClientCertRule(subjects=frozenset({"mmsc-1"}))
    server = await _tls_server(aiohttp_server, pki, recorder, rule)
    assert (await send_tls(server, pki, pki.same_cns)).status == 200
    assert recorder.contexts[0].peer.cert_subject == "CN=mmsc-1,CN=mmsc-1"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("mmsc1.carrier.example", "expected DNS:name or URI:uri"),
        ("IP:127.0.0.1", "expected DNS:name or URI:uri"),
        ("DNS:", "needs a value"),
        ("DNS:mm*sc.carrier.example", "whole leftmost"),
        ("DNS:a..example", "not a DNS name"),
        ("DNS:bücher.example", "ASCII"),
        ("URI:carrier mmsc1", "absolute URI"),
    ],
)
def test_bad_subject_alternative_names_are_refused(entry: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        normalise_san(entry)


def test_server_context_modes(pki: PKI) -> None:
    assert pki.server_context().verify_mode == ssl.CERT_REQUIRED
    assert pki.server_context(required=False).verify_mode == ssl.CERT_OPTIONAL
    plain = server_ssl_context(pki.server.cert, pki.server.key)
    assert plain.verify_mode == ssl.CERT_NONE
    assert plain.minimum_version >= ssl.TLSVersion.TLSv1_2


# --------------------------------------------------------------------------- the middleware


async def test_middleware_guards_any_application(aiohttp_server: ServerFactory) -> None:
    peers = [Peer("ops", PeerAuth.of(basic=("ops", "pw")))]
    seen: list[PeerIdentity] = []

    async def hello(request: web.Request) -> web.Response:
        seen.append(request[PEER_IDENTITY])
        return web.Response(text="hi")

    app = web.Application(middlewares=[auth_middleware(peers, paths=["/private"])])
    app.router.add_get("/private", hello)
    app.router.add_get("/public", public)
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as s:
        async with s.get(server.make_url("/private")) as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"].startswith('Basic realm="MM7"')
        async with s.get(server.make_url("/private"), headers=basic("ops", "pw")) as resp:
            assert resp.status == 200
        async with s.get(server.make_url("/public")) as resp:
            assert resp.status == 200
    assert [p.name for p in seen] == ["ops"]


async def public(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def test_address_parsing_is_strict_about_versions() -> None:
    v4_only = (ipaddress.ip_network("0.0.0.0/0"),)
    assert address_allowed("192.0.2.1", v4_only)
    assert not address_allowed("2001:db8::1", v4_only)
