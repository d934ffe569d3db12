"""`mm7 interop mmsc` as a real process against the bundled simulator on loopback, with each
shipped persona (and one written here): the probe finds what the persona refuses, with its
status and reason; the dialect it prints loads with the gateway's own loader; and a SubmitReq
written in that dialect through mm7's client is accepted by that persona."""

from __future__ import annotations

import dataclasses
import socket
import tomllib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mm7.content.builder import build_presentation, to_part
from mm7.content.parts import make_items
from mm7.core.dialect import STRICT_3GPP, Dialect
from mm7.core.mime import make_part
from mm7.core.model import Address, Recipients, SubmitReq
from mm7.interop.mmsc_plan import PHOTO, ProbeSettings, pair_variants
from mm7.service.config.loader import load_config
from mm7.simulator.app import SIMULATOR, SimulatorConfig, create_simulator_app
from mm7.simulator.personas import Persona, load_persona, load_persona_file, persona_names
from mm7.transport.client import MM7Client
from mm7.transport.link import ClientAuth, DigestAuth, LinkConfig, Secret
from tests.helpers.interop import Ran, run_mm7
from tests.helpers.tls_ca import make_ca

Server = Callable[..., Awaitable[Any]]
TO = "+15551230001"
HEADER = "recommended dialect (paste into conf/dialects.toml):\n\n"


@dataclass(frozen=True)
class Expect:
    """What the probe must find against one persona."""

    refused: frozenset[str] = frozenset()
    options: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    version: str = "REL-6-MM7-1-4"
    number_plus: str = "keep"


DIGEST = ("--user", "vasp", "--password-env", "MMSC_PW", "--digest")
#: every shipped persona, with what it refuses of the probe's SubmitReqs
SHIPPED: dict[str, Expect] = {
    # schema validation: a plain-text SenderAddress is invalid from REL-5-MM7-1-2 on
    "strict-3gpp": Expect(frozenset({"sender-address-untyped"})),
    "aggregator": Expect(frozenset({"no-smil", "chunked"})),
    "nokia": Expect(),
    "bare-status-faults": Expect(),
    "carrier-codes": Expect(),
    "mbuni-digest": Expect(options=DIGEST, env={"MMSC_PW": "digest-demo"}),
}


#: the 17 namespace/MM7Version pairs: each namespace with its newest MM7Version and with 5.3.0
ALL_PAIRS = {v.name for v in pair_variants(ProbeSettings(TO))}


def test_every_shipped_persona_is_probed() -> None:
    assert len(ALL_PAIRS) == 17
    assert set(persona_names()) == set(SHIPPED)


async def probe(server: Any, *options: str, env: dict[str, str] | None = None) -> Ran:
    url = str(server.make_url("/mm7"))
    return await run_mm7("interop", "mmsc", url, "--to", TO, "--from", "12345", *options, env=env)


async def start(aiohttp_server: Server, persona: Persona) -> Any:
    config = SimulatorConfig(persona=persona, ui_path=None)
    return await aiohttp_server(create_simulator_app(config))


def toml_of(ran: Ran) -> str:
    assert HEADER in ran.out, ran.out
    return ran.out.split(HEADER, 1)[1]


def load_dialect(tmp_path: Path, toml: str) -> Dialect:
    """The printed table, pasted into a deployment's dialects.toml, read by the real loader."""
    (tmp_path / "dialects.toml").write_text(toml, encoding="utf-8")
    (tmp_path / "gateway.toml").write_text(
        '[links.carrier]\nurl = "http://127.0.0.1:9/mm7"\ndialect = "probed"\n'
        '[inbound.peers.carrier]\nlink = "carrier"\n'
        '[[api.keys]]\nname = "app"\nkey = "interop-api-key-0123456789"\n'
        '[store]\npath = "mm7.sqlite"\n'
    )
    [link] = load_config(tmp_path / "gateway.toml", env={}).links
    dialect = link.link.dialect
    assert isinstance(dialect, Dialect)
    return dialect


async def submit_with(
    server: Any, dialect: Dialect, *, smil: bool, auth: ClientAuth | None = None
) -> int:
    """A SubmitReq written in ``dialect`` through mm7's client: its status."""
    if smil:
        content = to_part(build_presentation(make_items([PHOTO.read_bytes(), "hello"])))
    else:
        content = make_part(b"hello", "text/plain; charset=utf-8", content_id="text")
    request = SubmitReq(
        sender_address=Address.guess("12345"),
        recipients=Recipients(to=(Address(TO),)),
        content=content,
    )
    link = LinkConfig(name="carrier", url=str(server.make_url("/mm7")), dialect=dialect, auth=auth)
    async with MM7Client(link) as client:
        return (await client.submit(request)).status.code


@pytest.mark.parametrize("name", sorted(SHIPPED))
async def test_the_probe_finds_each_personas_restrictions_and_its_dialect_is_accepted(
    aiohttp_server: Server, tmp_path: Path, name: str
) -> None:
    expect = SHIPPED[name]
    server = await start(aiohttp_server, load_persona(name))
    ran = await probe(server, *expect.options, "--json", env=expect.env)
    assert ran.code == 0, ran.out + ran.err
    result = ran.json()
    assert set(result) == {"accepted", "refused", "dialect"}
    refused = {r["variant"]: r for r in result["refused"]}
    assert set(refused) == expect.refused
    assert {v for v in result["accepted"] if v.startswith("pair/")} == ALL_PAIRS
    assert len(result["accepted"]) + len(refused) == 24
    assert result["dialect"]["version"] == expect.version
    assert result["dialect"]["number_plus"] == expect.number_plus
    # what the simulator saw: exactly the SubmitReqs the probe reported (Digest challenges aside)
    exchanges = [e for e in server.app[SIMULATOR].store.exchanges if e.http_status != 401]
    assert len(exchanges) == 24
    text = await probe(server, *expect.options, env=expect.env)
    assert text.code == 0 and "base pair: REL-6-MM7-1-4 + 6.8.0" in text.out
    dialect = load_dialect(tmp_path, toml_of(text))
    assert dataclasses.replace(dialect, name="x") == dataclasses.replace(
        Dialect.from_mapping(result["dialect"], base=STRICT_3GPP), name="x"
    )
    auth = DigestAuth("vasp", Secret("digest-demo")) if name == "mbuni-digest" else None
    smil = "no-smil" in refused
    assert await submit_with(server, dialect, smil=smil, auth=auth) == 1000


async def test_the_aggregators_refusals_carry_status_and_reason(aiohttp_server: Server) -> None:
    server = await start(aiohttp_server, load_persona("aggregator"))
    ran = await probe(server, "--json")
    refused = {r["variant"]: r for r in ran.json()["refused"]}
    assert refused["no-smil"]["status"] == 2004 and refused["no-smil"]["http_status"] == 500
    assert "SMIL presentation required" in refused["no-smil"]["reason"]
    assert refused["chunked"]["status"] is None and refused["chunked"]["http_status"] == 411
    text = await probe(server)
    toml = toml_of(text)
    assert "# SMIL is required: give the link a content profile" in toml
    # the profile named loads only with [hosting]: the comment says so, and what else to do
    assert "needs [hosting] enabled" in toml and 'too_big = "refuse"' in toml
    assert 'notes = "probed with mm7 interop mmsc on ' in toml and "no-smil, chunked" in toml
    assert tomllib.loads(toml)["dialects"]["probed"]["chunked"] is False


async def test_an_nmtoken_schema_refuses_plus_and_typed_sender(
    aiohttp_server: Server, tmp_path: Path
) -> None:
    # strict-3gpp validates against REL-5-MM7-1-0, whose Number is an xs:NMTOKEN and whose
    # SenderAddress is plain text: the probe's base strips '+', and both other forms are refused
    server = await start(aiohttp_server, load_persona("strict-3gpp"))
    ran = await probe(server, "--versions", "REL-5-MM7-1-0", "--json")
    assert ran.code == 0, ran.err
    result = ran.json()
    assert result["accepted"][0] == "pair/REL-5-MM7-1-0/5.3.0"
    refused = {r["variant"]: r for r in result["refused"]}
    assert set(refused) == {"number-with-plus", "sender-address-typed"}
    assert {r["status"] for r in refused.values()} == {4004}
    assert result["dialect"]["version"] == "REL-5-MM7-1-0"
    assert result["dialect"]["number_plus"] == "strip"
    text = await probe(server, "--versions", "REL-5-MM7-1-0", "--dialect-name", "legacy-mmsc")
    toml = toml_of(text).replace("[dialects.legacy-mmsc]", "[dialects.probed]")
    dialect = load_dialect(tmp_path, toml)
    assert await submit_with(server, dialect, smil=False) == 1000


PICKY = """
description = "one namespace only; errors inside the normal response, HTTP 200, own codes"
[dialect]
extends = "rel5-legacy"
fault_http_status = 200
[accept]
versions = ["REL-5-MM7-1-2"]
refuse_chunked = true
[reply]
fault_shape = "in-response"
[status_codes]
4002 = { code = 4102, text = "Version not supported here" }
"""


async def test_a_persona_taking_one_namespace_is_found_out(
    aiohttp_server: Server, tmp_path: Path
) -> None:
    (tmp_path / "picky.toml").write_text(PICKY)
    server = await start(aiohttp_server, load_persona_file(tmp_path / "picky.toml"))
    ran = await probe(server, "--json")
    assert ran.code == 0, ran.err
    result = ran.json()
    pairs = [v for v in result["accepted"] if v.startswith("pair/")]
    assert pairs == ["pair/REL-5-MM7-1-2/5.3.0"]
    refused = {r["variant"]: r for r in result["refused"]}
    refused_pairs = {v for v in refused if v.startswith("pair/")}
    assert len(refused_pairs) == 16
    for variant in refused_pairs:
        # refused inside a SubmitRsp with HTTP 200: still a refusal, with the carrier's code
        assert refused[variant]["status"] == 4102 and refused[variant]["http_status"] == 200
        assert "REL-5-MM7-1-2" in refused[variant]["reason"]
    assert set(refused) - refused_pairs == {"chunked"}
    assert result["dialect"]["version"] == "REL-5-MM7-1-2"
    assert result["dialect"]["mm7_version"] == "5.3.0"
    dialect = load_dialect(tmp_path, toml_of(await probe(server)))
    assert await submit_with(server, dialect, smil=False) == 1000


async def test_nothing_accepted_means_no_dialect_and_no_packaging_sent(
    aiohttp_server: Server,
) -> None:
    server = await start(aiohttp_server, load_persona("mbuni-digest"))
    ran = await probe(server, "--json")  # no credentials: every request gets 401
    assert ran.code == 1
    result = ran.json()
    assert result["accepted"] == [] and result["dialect"] is None
    assert len(result["refused"]) == 17
    assert all(r["variant"].startswith("pair/") for r in result["refused"])
    assert {(r["status"], r["http_status"]) for r in result["refused"]} == {(4001, 401)}
    text = await probe(server)
    assert text.code == 1 and HEADER not in text.out
    assert "no namespace/MM7Version pair was accepted" in text.out


async def test_a_plan_over_the_budget_sends_nothing(aiohttp_server: Server) -> None:
    server = await start(aiohttp_server, load_persona("nokia"))
    ran = await probe(server, "--max-requests", "10")
    assert ran.code == 2 and ran.out == ""
    assert ran.err.count("\n") == 1
    assert "needs 24 requests" in ran.err and "--max-requests is 10" in ran.err
    assert len(list(server.app[SIMULATOR].store.exchanges)) == 0
    narrowed = await probe(server, "--max-requests", "10", "--versions", "REL-6-MM7-1-4", "--json")
    assert narrowed.code == 0 and len(narrowed.json()["accepted"]) == 9


async def test_the_probe_speaks_mutual_tls(aiohttp_server: Server, tmp_path: Path) -> None:
    """An https MMSC that wants a client certificate: the probe verifies it with --tls-ca and
    presents --tls-cert/--tls-key; without the certificate every pair is refused, no dialect."""
    ca = make_ca(tmp_path / "pki")
    mmsc, vasp = ca.issue("mmsc", server=True), ca.issue("vasp")
    config = SimulatorConfig(
        persona=load_persona("nokia"),
        ui_path=None,
        tls_cert=mmsc.cert,
        tls_key=mmsc.key,
        client_ca=ca.cert_path,
    )
    server = await aiohttp_server(create_simulator_app(config), ssl=config.ssl_context())
    url = str(server.make_url("/mm7")).replace("http://", "https://")
    options = ("--to", TO, "--versions", "REL-6-MM7-1-4", "--json", "--tls-ca", str(ca.cert_path))
    ran = await run_mm7(
        "interop", "mmsc", url, *options, "--tls-cert", str(vasp.cert), "--tls-key", str(vasp.key)
    )
    assert ran.code == 0, ran.out + ran.err
    result = ran.json()
    assert result["refused"] == [] and len(result["accepted"]) == 8  # no --from: 2 pairs + 6
    assert result["dialect"]["version"] == "REL-6-MM7-1-4"
    assert len(server.app[SIMULATOR].store.messages) == 8
    without = await run_mm7("interop", "mmsc", url, *options)
    assert without.code == 1, without.out + without.err
    refused = without.json()["refused"]
    assert [r["variant"] for r in refused] == [
        "pair/REL-6-MM7-1-4/6.8.0",
        "pair/REL-6-MM7-1-4/5.3.0",
    ]
    assert all(r["reason"].endswith("give --tls-cert and --tls-key)") for r in refused), refused
    assert len(server.app[SIMULATOR].store.messages) == 8  # nothing more was taken
    # the MMSC's certificate not verified (no --tls-ca: the system store): no certificate hint
    untrusted = await run_mm7(
        "interop", "mmsc", url, "--to", TO, "--versions", "REL-6-MM7-1-4", "--json"
    )
    assert untrusted.code == 1
    for refusal in untrusted.json()["refused"]:
        assert "certificate verify failed" in refusal["reason"], refusal
        assert "--tls-cert" not in refusal["reason"], refusal


async def test_an_mmsc_that_cannot_be_reached_is_given_up_on() -> None:
    """A firewall not yet opened for the VASP: after 3 connection failures in a row the rest of
    the plan is not sent (each says so), rather than waiting out every connect timeout."""
    with socket.socket() as sock:  # a port nobody listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/mm7"
        ran = await run_mm7("interop", "mmsc", url, "--to", TO, "--json")
        table = await run_mm7("interop", "mmsc", url, "--to", TO)
    assert ran.code == 1, ran.out + ran.err
    result = ran.json()
    assert result["accepted"] == [] and result["dialect"] is None
    refused = result["refused"]
    assert len(refused) == 17 and {r["variant"] for r in refused} == ALL_PAIRS
    assert all("Cannot connect" in r["reason"] for r in refused[:3]), refused[:3]
    assert all(
        r["reason"] == "not sent: the MMSC could not be reached (3 connection failures in a row)"
        and r["status"] is None
        and r["http_status"] is None
        for r in refused[3:]
    ), refused[3:]
    assert table.code == 1
    assert "3 SubmitReqs, 0 accepted, 0 refused, 3 could not connect, 14 not sent" in table.out
