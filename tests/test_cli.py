"""The `mm7` command: compose -> inspect -> validate on real files, for every dialect; bad input of
every shape ends in exit 2 and ONE stderr line, never a traceback.

Most runs call ``main([...])`` in-process; a few run the installed console script as a real
subprocess to prove the end-to-end contract (exit status, streams) holds outside pytest too.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import io
import json
import logging
import random
from pathlib import Path
from typing import Any

import pytest

from mm7 import __version__
from mm7.cli.main import EXIT_INVALID, EXIT_OK, EXIT_UNREADABLE, inspect_bytes, main, one_line
from mm7.core.codec import decode
from mm7.core.dialect import DIALECTS, get_dialect
from mm7.core.errors import MM7Error
from mm7.core.mime import Part, parse_content_type
from mm7.core.model import SubmitReq
from mm7.core.versions import NAMESPACE_BASE, get_version
from tests.helpers.cli import assert_one_line_failure, run, run_cli
from tests.helpers.media import GIF, amr, jpeg_bytes, pillow, png_bytes

FIXTURES = Path(__file__).parent / "fixtures" / "cli"
RECONSTRUCTED = Path("/work/shared/mm7-reference/xsd-reconstructed")
needs_reconstructed = pytest.mark.skipif(
    not (RECONSTRUCTED / "REL-6-MM7-1-4.xsd").is_file(),
    reason=f"{RECONSTRUCTED} (reconstructed 3GPP XSDs) is not present on this machine",
)


def inspect_json(capsys: pytest.CaptureFixture[str], path: Path) -> dict[str, Any]:
    code, out, err = run(capsys, "inspect", "--json", str(path))
    assert (code, err) == (EXIT_OK, ""), err
    result: dict[str, Any] = json.loads(out)
    return result


def split_entity(raw: bytes) -> tuple[str, bytes]:
    """A composed file as (Content-Type value, HTTP body): one header line, CRLF CRLF, body."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, "no blank line after the Content-Type header"
    assert b"\r\n" not in head, "compose writes exactly one header"
    assert head.startswith(b"Content-Type: ")
    return head[len(b"Content-Type: ") :].decode("ascii"), body


def compose(
    capsys: pytest.CaptureFixture[str], out: Path, *extra: str, to: str = "+15551230001"
) -> Path:
    code, stdout, err = run(
        capsys,
        "compose",
        "--vasp-id",
        "acme",
        "--vas-id",
        "news",
        "--from",
        "12345",
        "--to",
        to,
        "--transaction-id",
        "tx-cli-0001",
        *extra,
        "-o",
        str(out),
    )
    assert (code, stdout, err) == (EXIT_OK, "", ""), err
    return out


# --------------------------------------------------------------------------- --version


def test_version_flag_of_the_installed_command() -> None:
    proc = run_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.decode().strip() == f"mm7 {__version__}"
    assert proc.stderr == b""


def test_version_flag_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert out.strip() == f"mm7 {__version__}"


# --------------------------------------------------------------------------- compose


def test_compose_writes_content_type_blank_line_then_the_http_body(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(jpeg_bytes())
    out = compose(
        capsys,
        tmp_path / "submit.mime",
        "--mm7-version",
        "REL-6-MM7-1-4",
        "--version-value",
        "6.8.0",
        "--media",
        str(photo),
    )
    content_type, body = split_entity(out.read_bytes())
    ct = parse_content_type(content_type)
    assert ct.mime_type == "multipart/related"
    assert ct.param("boundary")
    assert ct.param("type") == "text/xml"
    assert ct.param("start") == "<mm7-soap>"
    assert body.startswith(b"--" + ct.param("boundary").encode())  # type: ignore[union-attr]
    decoded = decode(body, content_type)
    msg = decoded.message
    assert isinstance(msg, SubmitReq)
    assert decoded.leniencies == ()
    assert msg.namespace == NAMESPACE_BASE + "REL-6-MM7-1-4"
    assert msg.mm7_version == "6.8.0"
    assert msg.transaction_id == "tx-cli-0001"
    assert (msg.vasp_id, msg.vas_id, msg.sender_address and msg.sender_address.value) == (
        "acme",
        "news",
        "12345",
    )
    assert msg.content is not None
    assert msg.content.content_type.mime_type == "image/jpeg"
    assert msg.content.body == jpeg_bytes()


def test_media_types_come_from_the_bytes_not_the_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every file is named after another format: the parts must carry the real types and bytes."""
    jpeg, png, gif = tmp_path / "picture.png", tmp_path / "image.gif", tmp_path / "anim.jpg"
    jpeg.write_bytes(jpeg_bytes())
    png.write_bytes(png_bytes())
    gif.write_bytes(GIF)
    out = compose(
        capsys,
        tmp_path / "submit.mime",
        "--subject",
        "Three pictures",
        "--media",
        str(jpeg),
        str(png),
        "--media",
        str(gif),
    )
    content_type, body = split_entity(out.read_bytes())
    content = decode(body, content_type).message.content  # type: ignore[attr-defined]
    assert isinstance(content, Part)
    assert content.content_type.mime_type == "multipart/related"
    assert content.content_type.param("type") == "application/smil"  # several parts: SMIL root
    smil, *media = content.children
    assert smil.content_type.mime_type == "application/smil"
    assert [(p.content_type.mime_type, p.body) for p in media] == [
        ("image/jpeg", jpeg_bytes()),
        ("image/png", png_bytes()),
        ("image/gif", GIF),
    ]
    # the name is kept, the extension follows the real type
    assert [p.content_location for p in media] == ["picture.jpg", "image.png", "anim.gif"]

    info = inspect_json(capsys, out)
    assert [(p["content_type"], p["content_id"][:5], p["size"]) for p in info["parts"][1:]] == [
        ("image/jpeg", "img1-", len(jpeg_bytes())),
        ("image/png", "img2-", len(png_bytes())),
        ("image/gif", "img3-", len(GIF)),
    ]


def test_text_and_media_with_a_smil_file_make_the_smil_the_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    smil = tmp_path / "slides.txt"  # a SMIL document under a misleading name
    smil.write_bytes(
        b'<?xml version="1.0"?><smil><body><par dur="5s"><img src="pic.png"/>'
        b'<text src="text.txt"/></par></body></smil>'
    )
    pic = tmp_path / "pic.png"
    pic.write_bytes(png_bytes())
    out = compose(
        capsys, tmp_path / "s.mime", "--media", str(pic), str(smil), "--text", "Grüße aus Köln"
    )
    content_type, body = split_entity(out.read_bytes())
    content = decode(body, content_type).message.content  # type: ignore[attr-defined]
    assert content.content_type.param("type") == "application/smil"
    assert content.content_type.param("start") == f"<{content.children[0].content_id}>"
    types = [p.content_type.mime_type for p in content.children]
    assert types == ["application/smil", "image/png", "text/plain"]
    text = content.children[2]
    assert text.charset == "utf-8"
    assert text.body.decode("utf-8") == "Grüße aus Köln"


def test_text_only_is_a_single_utf8_part(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = compose(capsys, tmp_path / "t.mime", "--text", "Привет 👋")
    content_type, body = split_entity(out.read_bytes())
    content = decode(body, content_type).message.content  # type: ignore[attr-defined]
    assert content.content_type.mime_type == "text/plain"
    assert content.body == "Привет 👋".encode()


def test_without_content_the_body_is_bare_soap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = compose(capsys, tmp_path / "n.mime")
    content_type, body = split_entity(out.read_bytes())
    assert content_type.startswith("text/xml")
    assert body.startswith(b"<?xml")
    assert decode(body, content_type).message.content is None  # type: ignore[attr-defined]


def test_every_option_reaches_the_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = compose(
        capsys,
        tmp_path / "all.mime",
        "--to",
        "+15551230002",
        "--cc",
        "ann@example.com",
        "--bcc",
        "54321",
        "--subject",
        "Offer",
        "--service-code",
        "svc-7",
        "--linked-id",
        "mo-123",
        "--delivery-report",
        "--read-reply",
        "--priority",
        "high",  # case-insensitive
        "--expiry",
        "P2D",
        "--text",
        "hi",
    )
    info = inspect_json(capsys, out)
    fields = info["fields"]
    assert fields["recipients"] == {
        "to": [
            {"value": "+15551230001", "kind": "Number"},
            {"value": "+15551230002", "kind": "Number"},
        ],
        "cc": [{"value": "ann@example.com", "kind": "RFC2822Address"}],
        "bcc": [{"value": "54321", "kind": "ShortCode"}],
    }
    assert fields["subject"] == "Offer"
    assert fields["service_code"] == "svc-7"
    assert fields["linked_id"] == "mo-123"
    assert fields["delivery_report"] is True
    assert fields["read_reply"] is True
    assert fields["priority"] == "High"
    assert fields["expiry_date"] == "P2D"
    assert fields["sender_address"] == {"value": "12345", "kind": "ShortCode"}


def test_absolute_expiry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = compose(capsys, tmp_path / "e.mime", "--expiry", "2026-12-24T18:00:00+02:00")
    assert b"<mm7:ExpiryDate>2026-12-24T16:00:00Z</mm7:ExpiryDate>" in out.read_bytes()
    assert inspect_json(capsys, out)["fields"]["expiry_date"] == "2026-12-24T16:00:00+00:00"


def test_output_to_stdout_and_inspect_from_stdin() -> None:
    """`-o -` writes the entity to stdout; `inspect -` reads one from stdin (real pipes)."""
    composed = run_cli("compose", "--to", "+15551230001", "--text", "piped", "-o", "-")
    assert composed.returncode == 0, composed.stderr
    assert composed.stdout.startswith(b"Content-Type: ")
    shown = run_cli("inspect", "--json", "-", stdin=composed.stdout)
    assert shown.returncode == 0, shown.stderr
    info = json.loads(shown.stdout)
    assert info["operation"] == "SubmitReq"
    assert info["parts"][0]["size"] == len(b"piped")


# --------------------------------------------------------------------------- the chain

CHAIN = [(name, None) for name in DIALECTS] + [
    ("3gpp", "REL-5-MM7-1-2"),
    ("3gpp", "REL-5-MM7-1-3"),
    ("3gpp", "REL-6-MM7-1-0"),
    ("mbuni", "REL-5-MM7-1-0"),
    ("nokia", "REL-6-MM7-1-2"),
    ("openmarket", "REL-5-MM7-1-4"),
]


def _chain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dialect: str, token: str | None
) -> tuple[Path, dict[str, Any]]:
    """compose (every body option, a PNG and a text) -> inspect --json; returns (file, JSON)."""
    pic = tmp_path / "pic.bin"
    pic.write_bytes(png_bytes())
    version_args = ["--mm7-version", token] if token else []
    out = compose(
        capsys,
        tmp_path / f"{dialect}.mime",
        "--dialect",
        dialect,
        *version_args,
        "--subject",
        "Grüße",
        "--delivery-report",
        "--priority",
        "Normal",
        "--expiry",
        "P1D",
        "--media",
        str(pic),
        "--text",
        "hello",
    )
    return out, inspect_json(capsys, out)


@pytest.mark.parametrize(("dialect", "token"), CHAIN)
def test_compose_inspect_validate_chain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dialect: str, token: str | None
) -> None:
    d = get_dialect(dialect)
    version = get_version(token) if token else d.version
    out, info = _chain(tmp_path, capsys, dialect, token)

    assert info["operation"] == "SubmitReq"
    assert info["namespace"] == version.namespace
    assert info["schema_version"] == version.token
    expected_value = d.mm7_version if token is None and d.mm7_version else None
    assert info["mm7_version"] == (expected_value or version.default_mm7_version)
    assert info["transaction_id"] == "tx-cli-0001"
    assert info["status"] is None
    number = "15551230001" if d.number_plus == "strip" else "+15551230001"
    assert info["fields"]["recipients"]["to"] == [{"value": number, "kind": "Number"}]
    assert info["fields"]["subject"] == "Grüße"
    assert [(p["content_type"], p["size"]) for p in info["parts"][1:]] == [
        ("image/png", len(png_bytes())),
        ("text/plain", 5),
    ]
    assert info["parts"][0]["content_type"] == "application/smil"  # several parts: SMIL root
    expected_lens = (
        {"content-id-unbracketed", "start-unbracketed"} if not d.content_id_brackets else set()
    )
    assert set(info["leniencies"]) == expected_lens

    code, stdout, err = run(capsys, "validate", str(out))
    assert (code, err) == (EXIT_OK, ""), stdout
    assert stdout.strip() == f"valid: SubmitReq against {version.namespace}"


@needs_reconstructed
@pytest.mark.parametrize(("dialect", "token"), CHAIN)
def test_chain_validates_against_the_reconstructed_3gpp_schemas(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dialect: str, token: str | None
) -> None:
    out, _ = _chain(tmp_path, capsys, dialect, token)
    code, stdout, err = run(capsys, "validate", str(out), "--schema-dir", str(RECONSTRUCTED))
    assert (code, err) == (EXIT_OK, ""), stdout
    assert stdout.startswith("valid: SubmitReq against ")


def test_chain_through_the_installed_command(tmp_path: Path) -> None:
    pic = tmp_path / "p.dat"
    pic.write_bytes(GIF)
    out = tmp_path / "nokia.mime"
    made = run_cli(
        "compose", "--dialect", "nokia", "--to", "+15551230001", "--media", str(pic), "-o", str(out)
    )
    assert (made.returncode, made.stdout, made.stderr) == (0, b"", b"")
    shown = run_cli("inspect", "--json", str(out))
    assert shown.returncode == 0 and shown.stderr == b""
    info = json.loads(shown.stdout)
    cid = info["parts"][0]["content_id"]
    assert cid.startswith("img1-") and len(cid) == len("img1-") + 8
    assert info["parts"] == [
        {
            "content_type": "image/gif",
            "content_id": cid,
            "content_location": "p.gif",
            "size": len(GIF),
            "transfer_encoding": "base64",
        }
    ]
    checked = run_cli("validate", str(out))
    assert checked.returncode == 0 and checked.stdout.startswith(b"valid: SubmitReq")


def test_mbuni_strips_the_plus_under_rel5_1_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = compose(
        capsys, tmp_path / "m.mime", "--mm7-version", "REL-5-MM7-1-0", "--dialect", "mbuni"
    )
    raw = out.read_bytes()
    assert b"<mm7:Number>15551230001</mm7:Number>" in raw
    assert b"+1555" not in raw
    assert run(capsys, "validate", str(out))[0] == EXIT_OK


def test_strict_rel5_1_0_refuses_a_plus_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "never.mime"
    code, stdout, err = run(
        capsys,
        "compose",
        "--mm7-version",
        "REL-5-MM7-1-0",
        "--to",
        "+15551230001",
        "-o",
        str(out),
    )
    line = assert_one_line_failure(code, stdout, err, "compose")
    assert "'+15551230001' is not an xs:NMTOKEN" in line
    assert "REL-5-MM7-1-0" in line
    assert not out.exists()
    proc = run_cli("compose", "--mm7-version", "REL-5-MM7-1-0", "--to", "+1555", "-o", str(out))
    assert proc.returncode == 2
    assert proc.stderr.count(b"\n") == 1 and b"Traceback" not in proc.stderr
    assert not out.exists()


# --------------------------------------------------------------------------- inspect fixtures


def test_inspect_json_has_the_documented_keys(capsys: pytest.CaptureFixture[str]) -> None:
    info = inspect_json(capsys, FIXTURES / "submit-rsp-200.http")
    for key in (
        "operation",
        "namespace",
        "mm7_version",
        "transaction_id",
        "status",
        "fields",
        "parts",
        "leniencies",
    ):
        assert key in info
    assert info["operation"] == "SubmitRsp"
    assert info["namespace"] == NAMESPACE_BASE + "REL-6-MM7-1-4"
    assert info["mm7_version"] == "6.8.0"
    assert info["transaction_id"] == "vasp-0042"
    assert info["status"] == {"code": 1000, "text": "Success"}
    assert info["fields"]["message_id"] == "msg-7f3a-0001"
    assert info["parts"] == []
    assert info["leniencies"] == []
    assert (info["capture"], info["http_status"]) == ("http-response", 200)


def test_inspect_rserror_fault_over_http_500(capsys: pytest.CaptureFixture[str]) -> None:
    info = inspect_json(capsys, FIXTURES / "fault-rserror-500.http")
    assert info["operation"] == "RSErrorRsp"
    assert info["status"] == {"code": 2002, "text": "Address Error"}
    assert info["http_status"] == 500
    assert info["transaction_id"] == "vasp-0043"
    assert info["fields"]["faultcode"] == "env:Client"
    assert info["fields"]["faultstring"] == "Client error"


def test_inspect_vasperror_fault(capsys: pytest.CaptureFixture[str]) -> None:
    info = inspect_json(capsys, FIXTURES / "fault-vasperror.xml")
    assert info["operation"] == "VASPErrorRsp"
    assert info["status"] == {"code": 4006, "text": "Service unavailable"}
    assert info["namespace"] == NAMESPACE_BASE + "REL-5-MM7-1-2"
    assert info["mm7_version"] == "5.3.0"
    assert info["capture"] == "xml"


def test_inspect_fault_without_error_element(capsys: pytest.CaptureFixture[str]) -> None:
    info = inspect_json(capsys, FIXTURES / "fault-no-detail.xml")
    assert info["operation"] == "Fault"
    assert info["status"] is None
    assert info["fields"]["faultstring"] == "internal failure"
    assert {"fault-no-status", "transaction-id-missing"} <= set(info["leniencies"])


def test_inspect_gzip_response_after_100_continue(capsys: pytest.CaptureFixture[str]) -> None:
    plain = inspect_json(capsys, FIXTURES / "submit-rsp-200.http")
    packed = inspect_json(capsys, FIXTURES / "submit-rsp-gzip-100-continue.http")
    for key in ("operation", "status", "fields", "transaction_id", "start_line", "http_status"):
        assert packed[key] == plain[key]


def test_inspect_chunked_request_equals_the_plain_one(capsys: pytest.CaptureFixture[str]) -> None:
    plain = inspect_json(capsys, FIXTURES / "deliver-req-plain.http")
    chunked = inspect_json(capsys, FIXTURES / "deliver-req-chunked.http")
    assert chunked["operation"] == "DeliverReq"
    assert chunked["start_line"] == "POST /mm7/inbound HTTP/1.1"
    for key in ("fields", "parts", "transaction_id", "leniencies"):
        assert chunked[key] == plain[key]
    assert [(p["content_type"], p["content_id"], p["size"]) for p in chunked["parts"]] == [
        ("text/plain", "t1", 12),
        ("image/gif", "i1", len(GIF)),
    ]
    assert chunked["fields"]["sender"] == {"value": "+15551230009", "kind": "Number"}


def test_inspect_names_every_leniency(capsys: pytest.CaptureFixture[str]) -> None:
    info = inspect_json(capsys, FIXTURES / "deliver-req-lenient.mime")
    assert info["operation"] == "DeliverReq"
    assert info["leniencies"] == [
        "lf-line-endings",
        "header-folded",
        "content-id-spelling",
        "content-id-unbracketed",
        "start-unbracketed",
        "href-cid-space",
    ]
    assert info["parts"][0]["content_id"] == "lenient-text"


def test_inspect_names_what_a_real_mmsc_left_out(capsys: pytest.CaptureFixture[str]) -> None:
    path = Path(__file__).parent / "fixtures" / "soap"
    info = inspect_json(capsys, path / "mbuni-deliverreq-no-replychargingid-rel5-1-0.xml")
    assert info["operation"] == "DeliverReq"
    assert "required-element-missing" in info["leniencies"]  # (a bare file: bare-xml too)
    assert info["missing"] == ["ReplyChargingID"]
    info = inspect_json(capsys, path / "id-at-sign-in-nmtoken-rel5-1-0.xml")
    assert "id-not-nmtoken" in info["leniencies"] and info["missing"] == []


def test_inspect_bom_and_blank_lines_before_xml(capsys: pytest.CaptureFixture[str]) -> None:
    info = inspect_json(capsys, FIXTURES / "cancel-req-bom-blank-lines.xml")
    assert info["operation"] == "CancelReq"
    assert info["fields"]["message_id"] == "msg-7f3a-0001"
    assert (info["fields"]["vasp_id"], info["fields"]["vas_id"]) == ("acme", "news")


def test_inspect_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "inspect", str(FIXTURES / "fault-rserror-500.http"))
    assert (code, err) == (EXIT_OK, "")
    lines = out.splitlines()
    assert lines[0] == f"RSErrorRsp  ({NAMESPACE_BASE}REL-6-MM7-1-4, MM7Version 6.8.0)"
    assert "  http-response: HTTP/1.1 500 Internal Server Error" in lines
    assert "  Status: 2002 Address Error" in lines
    code, out, _ = run(capsys, "inspect", str(FIXTURES / "deliver-req-chunked.http"))
    assert "  part 2: image/gif  cid=i1  43 bytes" in out.splitlines()


def test_json_stdout_stays_pure_while_the_codec_logs(tmp_path: Path) -> None:
    """The codec logs leniencies at debug: never on stdout, on stderr only with -v."""
    out = tmp_path / "agg.mime"
    made = run_cli(
        "compose", "--dialect", "aggregator", "--to", "1555", "--text", "x", "-o", str(out)
    )
    assert made.returncode == 0
    quiet = run_cli("inspect", "--json", str(out))
    assert quiet.stderr == b""
    assert json.loads(quiet.stdout)["leniencies"] == ["content-id-unbracketed", "start-unbracketed"]
    loud = run_cli("-v", "inspect", "--json", str(out))
    assert b"mm7.codec.leniencies" in loud.stderr
    assert json.loads(loud.stdout)["operation"] == "SubmitReq"


def test_main_restores_the_logging_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logger = logging.getLogger("mm7")
    before = (logger.level, list(logger.handlers))
    run(capsys, "-v", "inspect", str(FIXTURES / "deliver-req-lenient.mime"))
    run(capsys, "-v", "inspect", str(tmp_path / "missing"))
    assert (logger.level, list(logger.handlers)) == before


# --------------------------------------------------------------------------- malformed input


@functools.cache
def _gzip_bomb() -> bytes:
    """20 MiB of zeros in about 20 KiB: over the 16 MiB body limit once expanded."""
    return gzip.compress(b"\x00" * (20 * 1024 * 1024), compresslevel=1)


def _billion_laughs() -> bytes:
    ents = "".join(f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10}">' for i in range(1, 10))
    return (
        f'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY l0 "lol">{ents}]><lolz>&l9;</lolz>'.encode()
    )


ENVELOPE = (
    '<?xml version="1.0"?><env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/" '
    f'xmlns:mm7="{NAMESPACE_BASE}REL-6-MM7-1-4"><env:Body>{{}}</env:Body></env:Envelope>'
)
JUNK = bytes([0x8F]) + bytes(random.Random(7).randrange(256) for _ in range(700))


def _malformed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, bytes]:
    """Broken inputs by name; the truncated one is cut inside the SOAP part of a real message."""
    good = compose(capsys, tmp_path / "good.mime", "--text", "hello").read_bytes()
    cut = good.index(b"<mm7:Recipients>") + 5
    return {
        "empty file": b"",
        "only blank lines": b"\r\n\r\n  \n",
        "binary junk": JUNK,
        "utf-16 junk": b"\xff\xfe" + JUNK[:100],
        "truncated multipart": good[:cut],
        "xml that is not soap": b'<?xml version="1.0"?><order><item>1</item></order>',
        "doctype bomb": _billion_laughs(),
        "external entity": b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM '
        b'"file:///etc/passwd">]><x>&e;</x>',
        "headers without blank line": b'Content-Type: text/xml; charset="utf-8"\r\nX-A: b\r\n',
        "header line that is not a header": b"Content-Type: text/xml\r\njunk here\r\n\r\n<a/>",
        "empty soap body": ENVELOPE.format("").encode(),
        "unknown operation": ENVELOPE.format("<mm7:FooReq/>").encode(),
        "not xml at all": b"Content-Type: text/xml\r\n\r\nhello, this is not XML",
        "multipart without parts": b'Content-Type: multipart/related; boundary="b"\r\n\r\n'
        b"--b--\r\n",
        "bad chunk size": b"POST /mm7 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n",
        "truncated chunk": b"POST /mm7 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nff\r\n<a",
        "gzip bomb": b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n" + _gzip_bomb(),
        "bad status line": b"HTTP/1.1 two-hundred OK\r\n\r\n<a/>",
        "nul in xml": ENVELOPE.format("<mm7:SubmitReq>\x00</mm7:SubmitReq>").encode(),
        "deep xml": ENVELOPE.format("<a>" * 3000 + "</a>" * 3000).encode(),
        "wrong boolean": good.replace(
            b"</mm7:Recipients>", b"</mm7:Recipients><mm7:DeliveryReport>yes</mm7:DeliveryReport>"
        ),
    }


def test_malformed_inputs_fail_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = _malformed(tmp_path, capsys)
    assert len(cases) >= 20
    messages = {}
    for name, data in cases.items():
        path = tmp_path / (name.replace(" ", "-") + ".bin")
        path.write_bytes(data)
        for args in (["inspect", str(path)], ["inspect", "--json", str(path)]):
            code, out, err = run(capsys, *args)
            messages[name] = assert_one_line_failure(code, out, err, "inspect")
    # where and what was expected, for a few of them
    assert "input: the input is empty" in messages["empty file"]
    assert "expected an HTTP request line" in messages["binary junk"]
    assert "SOAP part" in messages["truncated multipart"]
    assert "expected a SOAP 1.1 Envelope" in messages["xml that is not soap"]
    assert "DTD" in messages["doctype bomb"]
    assert "DTD" in messages["external entity"]
    assert "no blank line after the headers" in messages["headers without blank line"]
    assert "line 2 is not a 'Name: value' header" in messages["header line that is not a header"]
    assert "bad chunk size" in messages["bad chunk size"]
    assert "max_total_bytes" in messages["gzip bomb"]
    assert "DeliveryReport" in messages["wrong boolean"]


def test_validate_refuses_unreadable_input_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = _malformed(tmp_path, capsys)
    for name in (
        "empty file",
        "binary junk",
        "truncated multipart",
        "doctype bomb",
        "headers without blank line",
        "not xml at all",
        "gzip bomb",
        "nul in xml",
    ):
        path = tmp_path / "v.bin"
        path.write_bytes(cases[name])
        code, out, err = run(capsys, "validate", str(path))
        assert_one_line_failure(code, out, err, "validate")


def test_missing_file_and_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("inspect", "validate"):
        code, out, err = run(capsys, command, str(tmp_path / "nope.http"))
        assert assert_one_line_failure(code, out, err, command).endswith("nope.http: no such file")
        code, out, err = run(capsys, command, str(tmp_path))
        assert "is a directory" in assert_one_line_failure(code, out, err, command)


@pytest.mark.parametrize(
    "name",
    ["empty file", "binary junk", "doctype bomb", "headers without blank line", "missing file"],
)
def test_malformed_inputs_through_the_installed_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    path = tmp_path / "input.bin"
    if name != "missing file":
        path.write_bytes(_malformed(tmp_path, capsys)[name])
    for args in (("inspect", str(path)), ("inspect", "--json", str(path)), ("validate", str(path))):
        proc = run_cli(*args)
        assert proc.returncode == 2, proc.stderr
        assert proc.stdout == b""
        assert b"Traceback" not in proc.stderr
        assert proc.stderr.count(b"\n") == 1, proc.stderr
        assert proc.stderr.startswith(f"mm7 {args[0]}: ".encode())


def test_mutated_messages_never_escape_the_mm7_error_family(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Random damage to real messages: each either decodes or raises an MM7Error (no bug)."""
    pic = tmp_path / "p.png"
    pic.write_bytes(png_bytes())
    seeds = [
        compose(capsys, tmp_path / "a.mime", "--media", str(pic), "--text", "x").read_bytes(),
        (FIXTURES / "deliver-req-chunked.http").read_bytes(),
        (FIXTURES / "fault-rserror-500.http").read_bytes(),
    ]
    rnd = random.Random(2026)
    tokens = [b"\r\n", b"\n\n", b"--", b"<", b">", b":", b";", b'"', b"\x00", b"\xff", b"cid:"]
    for _ in range(400):
        data = bytearray(rnd.choice(seeds))
        for _ in range(rnd.randint(1, 4)):
            pos = rnd.randrange(len(data))
            action = rnd.random()
            if action < 0.4:
                data[pos] = rnd.randrange(256)
            elif action < 0.7:
                del data[pos : pos + rnd.randint(1, 40)]
            else:
                data[pos:pos] = rnd.choice(tokens)
        with contextlib.suppress(MM7Error):
            inspect_bytes(bytes(data))


# --------------------------------------------------------------------------- usage errors


def test_usage_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "out.mime")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    cases: list[tuple[list[str], str, str]] = [
        (["compose", "-o", out], "compose", "required: --to"),
        (["compose", "--to", "1", "--dialect", "nope", "-o", out], "compose", "unknown dialect"),
        (
            ["compose", "--to", "1", "--priority", "urgent", "-o", out],
            "compose",
            "Normal, High, Low",
        ),
        (["compose", "--to", "1", "--expiry", "tomorrow", "-o", out], "compose", "--expiry"),
        (["compose", "--to", " ", "-o", out], "compose", "--to: empty address"),
        (
            ["compose", "--to", "1", "--media", str(tmp_path / "x.gif"), "-o", out],
            "compose",
            "no such file",
        ),
        (
            ["compose", "--to", "1", "--media", str(empty), "-o", out],
            "compose",
            "the file is empty",
        ),
        (
            ["compose", "--to", "1", "--mm7-version", "REL-9-MM7-1-0", "-o", out],
            "compose",
            "unknown MM7 schema version",
        ),
        (
            ["compose", "--to", "1", "--version-value", "9.9.9", "-o", out],
            "compose",
            "--version-value",
        ),
        (
            ["compose", "--to", "1", "--subject", "bell\x07", "-o", out],
            "compose",
            "control character",
        ),
        (
            ["compose", "--to", "1", "-o", str(tmp_path / "no" / "dir" / "o.mime")],
            "compose",
            "cannot write",
        ),
        (["compose", "--to", "1", "--bogus", "-o", out], "", "unrecognized arguments"),
        (["inspect"], "inspect", "required: file"),
        ([], "", "required: COMMAND"),
        (["frobnicate"], "", "invalid choice"),
    ]
    for argv, command, expected in cases:
        code, stdout, err = run(capsys, *argv)
        assert code == EXIT_UNREADABLE, (argv, err)
        assert stdout == "" and "Traceback" not in err
        assert err.count("\n") == 1, (argv, err)
        assert err.startswith(f"mm7 {command}".rstrip() + ":"), err
        assert expected in err, (argv, err)
    assert not Path(out).exists()


def test_one_line_flattens_and_escapes() -> None:
    assert one_line("first\r\n  second\nthird") == "first second third"
    assert one_line("bell\x07 and esc\x1b") == "bell\\x07 and esc\\x1b"
    assert one_line("Grüße") == "Grüße"


# --------------------------------------------------------------------------- validate


def _broken(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Path]:
    good = compose(
        capsys, tmp_path / "ok.mime", "--subject", "Hi", "--priority", "Normal", "--delivery-report"
    ).read_bytes()
    order = good.replace(
        b"<mm7:Priority>Normal</mm7:Priority><mm7:Subject>Hi</mm7:Subject>",
        b"<mm7:Subject>Hi</mm7:Subject><mm7:Priority>Normal</mm7:Priority>",
    )
    typed = good.replace(b"<mm7:Priority>Normal<", b"<mm7:Priority>Urgent<")
    assert order != good and typed != good
    paths = {"order": tmp_path / "order.mime", "typed": tmp_path / "typed.mime"}
    paths["order"].write_bytes(order)
    paths["typed"].write_bytes(typed)
    return paths


@pytest.mark.parametrize("schemas", ["own", "reconstructed"])
def test_validate_reports_out_of_order_and_wrong_typed_elements(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], schemas: str
) -> None:
    if schemas == "reconstructed" and not RECONSTRUCTED.is_dir():
        pytest.skip(f"{RECONSTRUCTED} (reconstructed 3GPP XSDs) is not present on this machine")
    extra = ["--schema-dir", str(RECONSTRUCTED)] if schemas == "reconstructed" else []
    paths = _broken(tmp_path, capsys)

    code, out, err = run(capsys, "validate", str(paths["order"]), *extra)
    assert (code, err) == (EXIT_INVALID, "")
    assert out.startswith(f"invalid: SubmitReq ({NAMESPACE_BASE}REL-6-MM7-1-4)")
    assert "Element 'mm7:Priority': This element is not expected" in out

    code, out, err = run(capsys, "validate", str(paths["typed"]), *extra)
    assert (code, err) == (EXIT_INVALID, "")
    assert "Element 'mm7:Priority'" in out
    assert "'Urgent'" in out


def test_validate_fixtures(capsys: pytest.CaptureFixture[str]) -> None:
    for path in sorted(FIXTURES.iterdir()):
        code, out, err = run(capsys, "validate", str(path))
        assert (code, err) == (EXIT_OK, ""), (path.name, out)
        assert out.startswith("valid: ")


def test_validate_schema_dir_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = str(FIXTURES / "submit-rsp-200.http")
    code, out, err = run(capsys, "validate", target, "--schema-dir", str(tmp_path / "none"))
    assert "no such folder" in assert_one_line_failure(code, out, err, "validate")
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = run(capsys, "validate", target, "--schema-dir", str(empty))
    line = assert_one_line_failure(code, out, err, "validate")
    assert "REL-6-MM7-1-4.xsd" in line
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "REL-6-MM7-1-4.xsd").write_text("<xs:schema this is not xml")
    code, out, err = run(capsys, "validate", target, "--schema-dir", str(broken))
    assert "cannot load a schema" in assert_one_line_failure(code, out, err, "validate")


def test_schemas_command_writes_what_validate_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "xsd"
    code, out, err = run(capsys, "schemas", str(folder))
    assert (code, err) == (EXIT_OK, "")
    written = {Path(line).name for line in out.splitlines()}
    assert {"REL-5-MM7-1-0.xsd", "REL-6-MM7-1-4.xsd"} <= written
    assert all((folder / name).is_file() for name in written)
    code, out, _ = run(
        capsys, "validate", str(FIXTURES / "fault-vasperror.xml"), "--schema-dir", str(folder)
    )
    assert code == EXIT_OK and out.startswith("valid: VASPErrorRsp")


def test_validate_checks_transaction_id_as_nmtoken_in_rel5_1_0(tmp_path: Path) -> None:
    """REL-5-MM7-1-0 types TransactionID as xs:NMTOKEN: a space is invalid, mustUnderstand not."""
    ns = f"{NAMESPACE_BASE}REL-5-MM7-1-0"
    envelope = (
        '<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Header>'
        f'<m:TransactionID xmlns:m="{ns}" e:mustUnderstand="1">{{tid}}</m:TransactionID>'
        f'</e:Header><e:Body><m:CancelRsp xmlns:m="{ns}"><m:MM7Version>5.3.0</m:MM7Version>'
        "<m:Status><m:StatusCode>1000</m:StatusCode><m:StatusText>ok</m:StatusText></m:Status>"
        "</m:CancelRsp></e:Body></e:Envelope>"
    )
    good = tmp_path / "good.xml"
    good.write_text(envelope.format(tid="tx-1"))
    bad = tmp_path / "bad.xml"
    bad.write_text(envelope.format(tid="tx 1"))
    assert main(["validate", str(good)]) == 0
    assert main(["validate", str(bad)]) == 1


# --------------------------------------------------------------------------- content: SMIL,
# slides, layouts and carrier profiles (issue 3)


def _content(path: Path) -> Part:
    content_type, body = split_entity(path.read_bytes())
    content = decode(body, content_type).message.content  # type: ignore[attr-defined]
    assert isinstance(content, Part)
    return content


def _media_files(tmp_path: Path) -> list[str]:
    files = {"photo.jpg": pillow("JPEG"), "voice.amr": amr(), "logo.png": pillow("PNG")}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return [str(tmp_path / name) for name in files]


def test_compose_builds_slides_and_inspect_shows_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mm7.content.builder import from_part
    from mm7.content.smil import check_smil

    out = compose(
        capsys,
        tmp_path / "slides.mime",
        "--media",
        *_media_files(tmp_path),
        "--text",
        "Grüße",
        "--layout",
        "landscape",
        "--slide-duration",
        "2.5",
    )
    content = _content(out)
    smil = content.children[0]
    assert content.content_type.param("start") == f"<{smil.content_id}>"
    presentation = from_part(content)
    assert check_smil(smil.body, presentation.items) == []
    assert b'dur="2500ms"' in smil.body and b'<region id="Text" left="128"' in smil.body

    info = inspect_json(capsys, out)
    assert info["layout"] == "landscape"
    photo, voice, logo, text = (p["content_id"] for p in info["parts"][1:])
    assert [
        {k: v["content_id"] if isinstance(v, dict) else v for k, v in s.items()}
        for s in info["slides"]
    ] == [
        {"duration_ms": 2500, "visual": photo, "audio": voice},
        {"duration_ms": 2500, "visual": logo, "text": text},
    ]
    assert info["slides"][1]["text"]["text"] == "Grüße"
    assert info["slides"][0]["visual"]["content_location"] == "photo.jpg"

    code, stdout, err = run(capsys, "inspect", str(out))
    assert (code, err) == (EXIT_OK, "")
    assert f"  slide 1 (2.5 s): image/jpeg {photo}, audio/amr {voice}\n" in stdout
    assert f'  slide 2 (2.5 s): image/png {logo}, text "Grüße"\n' in stdout


def test_compose_smil_none_sends_the_parts_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = compose(capsys, tmp_path / "n.mime", "--smil", "none", "--media", *_media_files(tmp_path))
    content = _content(out)
    assert content.content_type.param("type") == "image/jpeg"
    assert [c.content_type.mime_type for c in content.children] == [
        "image/jpeg",
        "audio/amr",
        "image/png",
    ]
    assert "slides" not in inspect_json(capsys, out)


def test_compose_with_a_smil_file_sends_it_as_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo, voice, _ = _media_files(tmp_path)
    smil = tmp_path / "show.smil"
    smil.write_bytes(
        b'<smil><head><layout><root-layout width="160" height="120"/>'
        b'<region id="Image" width="160" height="120"/></layout></head><body>'
        b'<par dur="4s"><img src="photo.jpg" region="Image"/></par>'
        b'<par dur="6s"><audio src="voice.amr"/></par></body></smil>'
    )
    out = compose(capsys, tmp_path / "f.mime", "--smil", str(smil), "--media", photo, voice)
    content = _content(out)
    assert content.children[0].body == smil.read_bytes()
    slides = inspect_json(capsys, out)["slides"]
    assert [(s["duration_ms"], sorted(set(s) - {"duration_ms"})) for s in slides] == [
        (4000, ["visual"]),
        (6000, ["audio"]),
    ]
    # one media item and a SMIL file: still a presentation, since SMIL was asked for
    single = compose(
        capsys,
        tmp_path / "one.mime",
        "--smil",
        str(smil),
        "--media",
        photo,
        "--media",
        voice,
    )
    assert _content(single).content_type.param("type") == "application/smil"


def test_compose_content_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo, voice, logo = _media_files(tmp_path)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(Path(photo).read_bytes()[:-200])
    wrong = tmp_path / "wrong.smil"
    wrong.write_bytes(b'<smil><body><par dur="5s"><img src="nothere.jpg"/></par></body></smil>')
    out = str(tmp_path / "never.mime")
    cases = [
        (["--media", str(cut)], f"part 1 ({cut}): truncated JPEG"),
        (["--media", photo, "--smil", str(wrong)], "<img src='nothere.jpg'> names no part"),
        (["--media", photo, "--smil", str(tmp_path / "gone.smil")], "no such file"),
        (["--smil", str(wrong)], "needs --media or --text"),
        (["--media", str(wrong), "--smil", str(wrong), "--text", "x"], "more than one SMIL"),
        (["--slide-duration", "0"], "--slide-duration: expected a positive duration"),
        (["--slide-duration", "soon"], "--slide-duration"),
        (["--layout", "diagonal"], "expected one of portrait, portrait-text-above, landscape"),
        (["--media", photo, "--profile", "no-such-carrier"], "no profile named 'no-such-carrier'"),
        (
            ["--media", photo, logo, "--smil", "none", "--profile", "aggregator-smil"],
            "profile aggregator-smil requires SMIL",
        ),
    ]
    for extra, expected in cases:
        code, stdout, err = run(capsys, "compose", "--to", "+15551230001", *extra, "-o", out)
        line = assert_one_line_failure(code, stdout, err, "compose")
        assert expected in line, (extra, line)
    assert not Path(out).exists()


def test_inspect_shows_the_slides_of_a_real_deliver_req(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fixture = Path(__file__).parent / "fixtures" / "soap" / "nokia-mc5-deliverreq.http"
    info = inspect_json(capsys, fixture)
    assert info["slides"] == [
        {
            "duration_ms": 5000,
            "visual": {
                "content_id": "image",
                "content_type": "image/jpeg",
                "content_location": "image.jpg",
                "size": 278,
            },
            "text": {
                "content_id": "text",
                "content_type": "text/plain",
                "content_location": "text.txt",
                "size": 16,
                "text": "Glasam za broj 7",
            },
        }
    ]
    code, stdout, _ = run(capsys, "inspect", str(fixture))
    assert code == EXIT_OK
    assert '  slide 1 (5 s): image/jpeg image, text "Glasam za broj 7"\n' in stdout


def test_compose_fits_a_carrier_profile_and_reports_each_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Last on purpose: it runs the profile fitter (mm7.content.fit) from the CLI."""
    from PIL import Image

    from mm7.content.builder import from_part

    noise = Image.effect_noise((1200, 900), 90).convert("RGB")
    big = tmp_path / "big.png"
    noise.save(big)
    out = tmp_path / "fit.mime"
    code, stdout, err = run(
        capsys,
        "compose",
        "--to",
        "+15551230001",
        "--media",
        str(big),
        "--text",
        "hi",
        "--profile",
        "oma-image-rich",
        "-o",
        str(out),
    )
    assert (code, stdout) == (EXIT_OK, "")
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mm7 compose: img1-")
    assert "image/png" in lines[0] and "-> image/jpeg" in lines[0]
    content = _content(out)
    presentation = from_part(content)
    photo = presentation.items[0]
    assert photo.media_type == "image/jpeg"
    with Image.open(io.BytesIO(photo.data)) as image:
        assert max(image.size) <= 640 and min(image.size) <= 480
    assert sum(len(c.body) for c in content.children) < 100_000
