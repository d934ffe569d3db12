"""The simulator's authentication faults on the wire: HTTP Digest (challenge, verification,
stale nonces, replays) and mutual TLS (required in the handshake, or optional there and required
by the ``client_cert`` fault), driven with the project's client as the VASP."""

from __future__ import annotations

import hashlib
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mm7.core.codec import decode, encode
from mm7.core.model import Fault
from mm7.simulator.digest import DigestCheck, DigestCredentials, DigestVerifier, parse_auth_params
from mm7.simulator.faults import FaultInjector
from mm7.simulator.personas import PersonaError, load_persona_file
from mm7.transport.classify import Outcome
from mm7.transport.client import MM7Client
from mm7.transport.errors import MM7ClientError
from mm7.transport.link import BasicAuth, DigestAuth, LinkConfig, Secret, TLSConfig
from tests.helpers.simulator import Make, fault_detail, submit
from tests.helpers.tls_ca import Issued, TestCA, make_ca

DIGEST = {"user": "vasp", "password": "dig-pw-77", "realm": "mmsc.example"}


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def answer(
    challenge: str, *, password: str = "dig-pw-77", nc: str = "00000001", uri: str = "/mm7"
) -> str:
    """An Authorization: Digest header for ``challenge``, computed here by hand (RFC 7616)."""
    params = parse_auth_params(challenge.split(" ", 1)[1])
    assert params is not None
    realm, nonce = params["realm"], params["nonce"]
    ha1 = md5(f"vasp:{realm}:{password}")
    ha2 = md5(f"POST:{uri}")
    response = md5(f"{ha1}:{nonce}:{nc}:cn0nce:auth:{ha2}")
    return (
        f'Digest username="vasp", realm="{realm}", nonce="{nonce}", uri="{uri}", '
        f'response="{response}", qop=auth, nc={nc}, cnonce="cn0nce", algorithm=MD5'
    )


def status_code_in(body: bytes) -> int:
    """The MM7 status code of a Fault answer, read from the bytes."""
    detail = fault_detail(body)
    codes = [e.text for e in detail.iter() if str(e.tag).endswith("StatusCode")]
    assert codes, body
    return int(codes[0] or 0)


# ---------------------------------------------------------------- Digest


async def test_digest_challenge_on_the_wire(sim_rig: Make) -> None:
    r = await sim_rig(faults={"digest_auth": DIGEST})
    encoded = encode(submit(report=False))
    status, headers, body = await r.post(encoded.body, encoded.content_type)
    assert status == 401
    challenge = headers["WWW-Authenticate"]
    assert challenge.startswith('Digest realm="mmsc.example", nonce="')
    assert 'qop="auth"' in challenge and "algorithm=MD5" in challenge
    assert status_code_in(body) == 4001
    assert not r.sim.store.messages
    # answered by hand: accepted, then the same nonce count again is a replay
    auth = answer(challenge)
    status, _, body = await r.post(
        encoded.body, encoded.content_type, headers={"Authorization": auth}
    )
    assert status == 200 and b"<StatusCode>1000</StatusCode>" in body.replace(b"mm7:", b"")
    status, headers, body = await r.post(
        encoded.body, encoded.content_type, headers={"Authorization": auth}
    )
    assert status == 401 and status_code_in(body) == 4001
    assert b"nonce count was already used" in body


async def test_digest_accepted_with_the_right_password(sim_rig: Make) -> None:
    r = await sim_rig(faults={"digest_auth": DIGEST})
    async with r.client(auth=DigestAuth("vasp", Secret("dig-pw-77"))) as client:
        first = await client.submit(submit(report=False))
        second = await client.submit(submit(report=False))
    assert first.status.code == 1000 and second.status.code == 1000
    assert len(r.sim.store.messages) == 2
    exchanges = (await r.control("GET", "/traffic"))["exchanges"]
    # one challenge, then both submits answered with the nonce it carried
    assert [e["http_status"] for e in exchanges] == [401, 200, 200]
    entry = await r.control("GET", f"/traffic/{exchanges[1]['id']}")
    assert "dig-pw-77" not in str(entry)


async def test_digest_refused_with_a_wrong_password(sim_rig: Make) -> None:
    r = await sim_rig(faults={"digest_auth": DIGEST})
    async with r.client(auth=DigestAuth("vasp", Secret("not-it"))) as client:
        with pytest.raises(MM7ClientError) as info:
            await client.submit(submit(report=False))
    assert info.value.http_status == 401 and info.value.code == 4001
    assert not info.value.transient
    assert not r.sim.store.messages
    exchanges = (await r.control("GET", "/traffic"))["exchanges"]
    assert [e["http_status"] for e in exchanges] == [401, 401]
    last = await r.control("GET", f"/traffic/{exchanges[-1]['id']}")
    assert dict(last["request_headers"])["Authorization"] != ""  # it did answer the challenge
    body = last["response_body"].encode()
    assert status_code_in(body) == 4001 and b"Digest: wrong user name" in body


async def test_digest_set_and_cleared_through_the_control_api(sim_rig: Make) -> None:
    r = await sim_rig()
    shown = await r.control("POST", "/faults", {"digest_auth": DIGEST})
    assert shown["digest_auth"]["user"] == "vasp" and "dig-pw-77" not in str(shown)
    async with r.client() as client:
        with pytest.raises(MM7ClientError) as info:
            await client.submit(submit(report=False))
    assert info.value.http_status == 401 and info.value.code == 4001
    async with r.client(auth=DigestAuth("vasp", Secret("dig-pw-77"))) as client:
        assert (await client.submit(submit(report=False))).status.code == 1000
    await r.control("DELETE", "/faults")
    async with r.client() as client:
        assert (await client.submit(submit(report=False))).status.code == 1000
    bad = await r.control("POST", "/faults", {"digest_auth": {"user": "x"}})
    assert "digest_auth" in bad["error"]


async def test_digest_or_basic_when_both_are_configured(sim_rig: Make) -> None:
    r = await sim_rig(faults={"digest_auth": DIGEST, "basic_auth": {"user": "b", "password": "bp"}})
    encoded = encode(submit(report=False))
    status, headers, _ = await r.post(encoded.body, encoded.content_type)
    challenges = headers.getall("WWW-Authenticate")
    assert (
        status == 401 and challenges[0].startswith("Digest ") and challenges[1].startswith("Basic ")
    )
    async with r.client(auth=BasicAuth("b", Secret("bp"))) as client:
        assert (await client.submit(submit(report=False))).status.code == 1000
    async with r.client(auth=DigestAuth("vasp", Secret("dig-pw-77"))) as client:
        assert (await client.submit(submit(report=False))).status.code == 1000


def test_digest_verifier_stale_unknown_and_malformed() -> None:
    now = [1000.0]
    verifier = DigestVerifier(
        DigestCredentials("vasp", "dig-pw-77", "mmsc.example"), lifetime=60, clock=lambda: now[0]
    )
    challenge = verifier.challenge()
    assert verifier.check(answer(challenge), "POST", "/mm7") is DigestCheck.OK
    assert verifier.check(answer(challenge, nc="00000002"), "POST", "/mm7") is DigestCheck.OK
    assert verifier.check(answer(challenge, uri="/other"), "POST", "/mm7") is DigestCheck.WRONG
    assert verifier.check(answer(challenge), "GET", "/mm7") is DigestCheck.WRONG
    now[0] += 61
    assert verifier.check(answer(challenge, nc="3"), "POST", "/mm7") is DigestCheck.STALE
    assert "stale=true" in verifier.challenge(stale=True)
    other = DigestVerifier(DigestCredentials("vasp", "dig-pw-77", "mmsc.example"))
    foreign = other.challenge()
    assert verifier.check(answer(foreign), "POST", "/mm7") is DigestCheck.UNKNOWN_NONCE
    assert verifier.check("Digest username=vasp", "POST", "/mm7") is DigestCheck.MALFORMED
    assert verifier.check('Digest realm="unterminated', "POST", "/mm7") is DigestCheck.MALFORMED
    assert verifier.check("Basic dmFzcDp4", "POST", "/mm7") is DigestCheck.MISSING
    assert parse_auth_params(r'a="x\"y, z", b=2') == {"a": 'x"y, z', "b": "2"}


async def test_expired_nonce_is_challenged_stale_and_the_client_recovers(sim_rig: Make) -> None:
    now = [0.0]
    r = await sim_rig(
        faults={"digest_auth": {**DIGEST, "nonce_lifetime": 30}}, clock=lambda: now[0]
    )
    async with r.client(auth=DigestAuth("vasp", Secret("dig-pw-77"))) as client:
        assert (await client.submit(submit(report=False))).status.code == 1000
        now[0] += 31
        assert (await client.submit(submit(report=False))).status.code == 1000
    exchanges = (await r.control("GET", "/traffic"))["exchanges"]
    assert [e["http_status"] for e in exchanges] == [401, 200, 401, 200]
    assert any("expired" in p for p in exchanges[2]["problems"])


async def test_unauthorized_fault_challenges_a_good_client_which_answers_again(
    sim_rig: Make,
) -> None:
    r = await sim_rig(faults={"digest_auth": DIGEST})
    async with r.client(auth=DigestAuth("vasp", Secret("dig-pw-77"))) as client:
        assert (await client.submit(submit(report=False))).status.code == 1000
        await r.control("POST", "/faults", {"once": [{"kind": "unauthorized"}]})
        assert (await client.submit(submit(report=False))).status.code == 1000
    exchanges = (await r.control("GET", "/traffic"))["exchanges"]
    assert [e["http_status"] for e in exchanges] == [401, 200, 401, 200]
    assert exchanges[2]["fault"] == "unauthorized" and exchanges[2]["status_code"] == 4001
    assert len(r.sim.store.messages) == 2


async def test_unauthorized_fault_without_configured_auth_is_a_basic_challenge(
    sim_rig: Make,
) -> None:
    r = await sim_rig()
    await r.control("POST", "/faults", {"once": [{"kind": "unauthorized"}]})
    encoded = encode(submit(report=False))
    status, headers, body = await r.post(encoded.body, encoded.content_type)
    assert status == 401 and headers.getall("WWW-Authenticate") == ['Basic realm="mm7-simulator"']
    assert status_code_in(body) == 4001
    status, _, _ = await r.post(encoded.body, encoded.content_type)
    assert status == 200


def test_persona_auth_is_a_baseline_kept_across_resets(tmp_path: Path) -> None:
    conf = tmp_path / "locked.toml"
    conf.write_text(
        '[dialect]\nextends = "3gpp"\n'
        '[auth]\ndigest = { user = "vasp", password = "pw", realm = "r" }\nclient_cert = true\n'
    )
    persona = load_persona_file(conf)
    faults = FaultInjector(baseline=persona.auth)
    assert faults.digest is not None and faults.client_cert
    faults.configure({"digest_auth": None, "client_cert": False})
    faults.reset()
    assert faults.digest is not None and faults.digest.credentials.realm == "r"
    conf.write_text('[dialect]\nextends = "3gpp"\n[auth]\ndigest = { user = "vasp" }\n')
    with pytest.raises(PersonaError, match="auth: digest_auth"):
        load_persona_file(conf)
    conf.write_text('[dialect]\nextends = "3gpp"\n[auth]\nkerberos = true\n')
    with pytest.raises(PersonaError, match="kerberos"):
        load_persona_file(conf)


async def test_persona_digest_survives_a_control_reset(sim_rig: Make, tmp_path: Path) -> None:
    conf = tmp_path / "digest-mmsc.toml"
    conf.write_text(
        '[dialect]\nextends = "3gpp"\n'
        '[auth]\ndigest = { user = "vasp", password = "dig-pw-77", realm = "mmsc.example" }\n'
    )
    r = await sim_rig(load_persona_file(conf))
    await r.control("POST", "/reset")
    assert (await r.control("DELETE", "/faults"))["digest_auth"]["realm"] == "mmsc.example"
    async with r.client() as client:
        with pytest.raises(MM7ClientError) as info:
            await client.submit(submit(report=False))
    assert info.value.http_status == 401 and info.value.code == 4001
    async with r.client(auth=DigestAuth("vasp", Secret("dig-pw-77"))) as client:
        assert (await client.submit(submit(report=False))).status.code == 1000


# ---------------------------------------------------------------- mutual TLS


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("sim-pki")
    ca = make_ca(folder)
    other = make_ca(folder, "other-ca")
    return {
        "ca": ca,
        "server": ca.issue("mmsc", server=True),
        "client": ca.issue("vasp"),
        "stranger": other.issue("vasp"),
    }


def tls_kw(pki: dict[str, Any], *, require: bool = True) -> dict[str, Any]:
    ca: TestCA = pki["ca"]
    server: Issued = pki["server"]
    return {
        "tls_cert": server.cert,
        "tls_key": server.key,
        "client_ca": ca.cert_path,
        "require_client_cert": require,
    }


def client_tls(pki: dict[str, Any], who: str | None = "client") -> TLSConfig:
    issued: Issued | None = pki[who] if who else None
    return TLSConfig(
        ca_file=pki["ca"].cert_path,
        cert_file=issued.cert if issued else None,
        key_file=issued.key if issued else None,
    )


def raw_context(pki: dict[str, Any], who: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki["ca"].cert_path))
    if who:
        ctx.load_cert_chain(pki[who].cert, pki[who].key)
    return ctx


async def test_mutual_tls_accepted_with_the_test_cas_client_certificate(
    sim_rig: Make, pki: dict[str, Any]
) -> None:
    r = await sim_rig(**tls_kw(pki))
    assert r.url.startswith("https://127.0.0.1:")
    async with MM7Client(LinkConfig(name="sim", url=r.url, tls=client_tls(pki))) as client:
        assert (await client.submit(submit(report=False))).status.code == 1000
    assert len(r.sim.store.messages) == 1


@pytest.mark.parametrize("who", [None, "stranger"])
async def test_mutual_tls_refused_without_or_with_a_foreign_certificate(
    sim_rig: Make, pki: dict[str, Any], who: str | None
) -> None:
    r = await sim_rig(**tls_kw(pki))
    async with MM7Client(LinkConfig(name="sim", url=r.url, tls=client_tls(pki, who))) as client:
        with pytest.raises(MM7ClientError) as info:
            await client.submit(submit(report=False))
    # refused in the handshake: TLS 1.3 clients see it as a reset on their first read
    assert info.value.outcome in (Outcome.TLS_ERROR, Outcome.CONNECTION_RESET)
    assert not r.sim.store.messages and not r.sim.store.exchanges


async def test_client_cert_fault_refuses_certificate_less_clients_with_403(
    sim_rig: Make, pki: dict[str, Any]
) -> None:
    """Optional in the handshake, required by the fault: switched on and off at run time."""
    r = await sim_rig(**tls_kw(pki, require=False))
    encoded = encode(submit(report=False))
    async with MM7Client(LinkConfig(name="sim", url=r.url, tls=client_tls(pki, None))) as client:
        assert (await client.submit(submit(report=False))).status.code == 1000
    async with aiohttp.ClientSession() as session:
        control = r.base + "/control/faults"
        async with session.post(control, json={"client_cert": True}, ssl=raw_context(pki, None)):
            pass
        async with session.post(
            r.url,
            data=encoded.body,
            headers={"Content-Type": encoded.content_type},
            ssl=raw_context(pki, None),
        ) as rsp:
            status, body, content_type = rsp.status, await rsp.read(), rsp.headers["Content-Type"]
    assert status == 403 and "WWW-Authenticate" not in rsp.headers
    assert status_code_in(body) == 4001 and b"client certificate" in body
    fault = decode(body, content_type).message
    assert isinstance(fault, Fault)
    async with MM7Client(LinkConfig(name="sim", url=r.url, tls=client_tls(pki))) as client:
        assert (await client.submit(submit(report=False))).status.code == 1000
    # a certificate from another CA still fails the handshake
    async with MM7Client(
        LinkConfig(name="sim", url=r.url, tls=client_tls(pki, "stranger"))
    ) as client:
        with pytest.raises(MM7ClientError):
            await client.submit(submit(report=False))


async def test_the_mbuni_digest_persona_challenges_and_speaks_rel5(sim_rig: Make) -> None:
    """conf/personas/mbuni-digest.toml: Digest required, SOAP-ENV prefix, REL-5-MM7-1-0 echo."""
    from mm7.core.dialect import get_dialect

    r = await sim_rig("mbuni-digest")
    mbuni = get_dialect("mbuni")
    async with r.client(mbuni, auth=DigestAuth("vasp", Secret("digest-demo"))) as client:
        result = await client.send(submit(report=False))
    assert result.status.code == 1000
    assert result.message.namespace == mbuni.namespace
    assert b"<SOAP-ENV:Envelope" in result.response_body
    async with r.client(mbuni, auth=DigestAuth("vasp", Secret("wrong"))) as client:
        with pytest.raises(MM7ClientError) as info:
            await client.submit(submit(report=False))
    assert info.value.http_status == 401 and info.value.code == 4001
