"""The interop kit's pure parts, without a network: the VASP suite's cases (valid in their
schema unless broken on purpose, by a named quirk the reader recognises), the judging of one
answer, the probe's plan, the dialect written as TOML, and the command's option errors."""

from __future__ import annotations

import dataclasses
import tomllib
from datetime import UTC, datetime
from typing import Any

import pytest

from mm7.core.codec import Encoded, decode, encode
from mm7.core.dialect import STRICT_3GPP
from mm7.core.errors import ParseError
from mm7.core.model import (
    DeliverReq,
    DeliverRsp,
    DeliveryReportReq,
    Fault,
    Status,
    SubmitRsp,
    VASPErrorRsp,
    reply_to,
)
from mm7.core.spec import enum_values
from mm7.core.validate import validate_envelope
from mm7.core.versions import VERSIONS, get_version
from mm7.core.xmlsafe import parse_xml
from mm7.interop.dialect_toml import check_name, dialect_table, toml_string
from mm7.interop.errors import InteropError
from mm7.interop.mmsc_plan import ProbeSettings, packaging_variants, pair_variants, plan_size
from mm7.interop.quirks import Quirk, QuirkError, apply
from mm7.interop.vasp_cases import Case, Exchange, Parties, build_cases, parse_versions, select
from mm7.interop.vasp_check import Answer, check
from tests.helpers.cli import assert_one_line_failure, run

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
CASES = build_cases(Parties(), run_id="run1", now=NOW)


def by_name(name: str) -> Case:
    [case] = [c for c in CASES if c.name == name]
    return case


# ---------------------------------------------------------------- the case table


def test_case_names_are_unique_and_cover_every_version() -> None:
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
    assert {c.version for c in CASES} == set(VERSIONS)
    for version in VERSIONS:
        statuses = enum_values("mmDeliveryStatus", version)
        reports = {c.name for c in CASES if c.name.startswith("report/") and c.version == version}
        assert {f"report/{s.lower()}@{version.token}" for s in statuses} <= reports


def test_every_request_sent_as_is_is_valid_in_its_schema() -> None:
    checked = 0
    for case in CASES:
        for exchange in case.exchanges:
            if exchange.quirk is not None or not exchange.dialect.strict:
                continue  # broken on purpose, by name
            encoded = exchange.encoded()
            soap = decode(encoded.body, encoded.content_type).soap
            report = validate_envelope(parse_xml(soap))
            assert report.valid, (case.name, report.errors)
            checked += 1
    assert checked > 200


def test_transaction_ids_are_fresh_except_the_retry() -> None:
    tids = [e.request.transaction_id for c in CASES for e in c.exchanges]
    retry = {c.name for c in CASES if c.name.startswith("report/duplicate-retry@")}
    assert len(tids) - len(set(tids)) == len(retry)
    other = build_cases(Parties(), run_id="run2", now=NOW)
    assert not set(tids) & {e.request.transaction_id for c in other for e in c.exchanges}


def test_nmtoken_versions_get_numbers_without_plus() -> None:
    old = by_name("deliver/text@REL-5-MM7-1-0").exchanges[0].request
    new = by_name("deliver/text@REL-6-MM7-1-4").exchanges[0].request
    assert isinstance(old, DeliverReq) and isinstance(new, DeliverReq)
    assert old.sender is not None and old.sender.value == "15551230001"
    assert new.sender is not None and new.sender.value == "+15551230001"
    assert old.reply_charging_id is not None and new.reply_charging_id is None


def test_the_reply_charging_quirk_exists_where_the_schema_requires_it() -> None:
    found = {c.version.token for c in CASES if c.name.startswith("quirk/deliver-no-reply")}
    assert found == {"REL-5-MM7-1-0", "REL-5-MM7-1-1"}
    exchange = by_name("quirk/deliver-no-reply-charging-id@REL-5-MM7-1-0").exchanges[0]
    encoded = exchange.encoded()
    assert decode(encoded.body, encoded.content_type).missing == ("ReplyChargingID",)


def test_swapped_report_names_the_handset_as_sender() -> None:
    request = by_name("report/swapped-addresses@REL-6-MM7-1-4").exchanges[0].request
    assert isinstance(request, DeliveryReportReq)
    assert request.sender is not None and request.sender.value == "+15551230001"
    assert request.recipient is not None and request.recipient.value == "12345"


def test_select_and_versions() -> None:
    assert {c.name for c in select(CASES, ["report/stages@REL-6*"])} == {
        f"report/stages@{v.token}" for v in VERSIONS if v.release == 6
    }
    assert len(select(CASES, ["read-reply/read"])) == len(VERSIONS)
    assert select(CASES, ["nothing-like-this"]) == []
    assert parse_versions("REL-6-MM7-1-4, REL-5-MM7-1-0") == (
        get_version("REL-5-MM7-1-0"),
        get_version("REL-6-MM7-1-4"),
    )
    assert parse_versions("all") == VERSIONS
    with pytest.raises(KeyError, match="REL-9"):
        parse_versions("REL-9-MM7-1-0")


# ---------------------------------------------------------------- quirks


def test_quirks_make_the_deviation_the_reader_names() -> None:
    text = by_name("quirk/deliver-no-namespace@REL-6-MM7-1-4").exchanges[0].encoded()
    assert b"<mm7:DeliverReq><MM7Version>" in text.body and b"</mm7:DeliverReq>" in text.body
    assert "mm7-no-namespace" in decode(text.body, text.content_type).leniencies
    swa = by_name("quirk/deliver-application-xml@REL-6-MM7-1-4").exchanges[0].encoded()
    assert 'type="application/xml"' in swa.content_type
    assert b"Content-Type: application/xml" in swa.body.split(b"<?xml", 1)[0]
    assert isinstance(decode(swa.body, swa.content_type).message, DeliverReq)
    bare = by_name("quirk/report-application-xml@REL-6-MM7-1-4").exchanges[0].encoded()
    assert bare.content_type.startswith("application/xml")
    cut = by_name("error/broken-soap@REL-6-MM7-1-4").exchanges[0].encoded()
    with pytest.raises(ParseError) as caught:
        decode(cut.body, cut.content_type)
    assert caught.value.status_code == 2007


def test_a_quirk_on_a_body_without_envelope_is_refused() -> None:
    with pytest.raises(QuirkError, match="no SOAP envelope"):
        apply(Quirk.NO_NAMESPACE, Encoded("text/xml", b"<x/>"), "DeliverReq")


# ---------------------------------------------------------------- judging one answer


def exchange_of(name: str) -> Exchange:
    return by_name(name).exchanges[0]


def answer_to(exchange: Exchange, **changes: Any) -> bytes:
    """The DeliverRsp a VASP answers (echoing what was sent), with ``changes``."""
    rsp = dataclasses.replace(
        reply_to(exchange.request, DeliverRsp()),
        namespace=exchange.namespace,
        mm7_version=exchange.dialect.effective_mm7_version,
    )
    lenient = dataclasses.replace(STRICT_3GPP, strict=False, allow_any_mm7_version=True)
    return encode(dataclasses.replace(rsp, **changes), lenient).body


def test_a_right_answer_passes() -> None:
    ex = exchange_of("deliver/text@REL-5-MM7-1-3")
    verdict = check(ex, Answer(200, "text/xml", answer_to(ex)))
    assert verdict.problems == () and verdict.notes == ()


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (Answer(200, "text/xml", b""), "a blank body where a DeliverRsp was due"),
        (Answer(302, None, b"", "http://elsewhere/"), "HTTP 302 redirect to http://elsewhere/"),
        (Answer(200, "text/html", b"<html>ok</html>"), "not a readable SOAP message"),
        (Answer(503, "text/plain", b"busy"), "HTTP 503, expected 200"),
        (Answer(401, "text/plain", b"no"), "HTTP 401: the VASP refused the MMSC's credentials"),
    ],
)
def test_wrong_answers_name_the_problem(answer: Answer, problem: str) -> None:
    verdict = check(exchange_of("deliver/text@REL-6-MM7-1-4"), answer)
    assert any(problem in p for p in verdict.problems), verdict


def test_echo_status_and_operation_are_checked() -> None:
    ex = exchange_of("deliver/text@REL-6-MM7-1-4")
    body = answer_to(ex, transaction_id="x" * 100, status=Status(2002, "No\nway"))
    problems = check(ex, Answer(200, "text/xml", body)).problems
    assert problems[0].startswith("TransactionID not echoed") and "x" * 60 + "...'" in problems[0]
    assert problems[1] == "status 2002 'No?way', expected 1000"
    ns = get_version("REL-5-MM7-1-2")
    body = answer_to(ex, namespace=ns.namespace, mm7_version="5.3.0")
    verdict = check(ex, Answer(200, "text/xml", body))
    assert verdict.problems == ("namespace not echoed: sent REL-6-MM7-1-4, answered REL-5-MM7-1-2",)
    assert verdict.notes == ("MM7Version 5.3.0 answered, 6.8.0 sent",)
    wrong = encode(reply_to(ex.request, SubmitRsp(message_id="m")), STRICT_3GPP).body
    problems = check(ex, Answer(200, "text/xml", wrong)).problems
    assert problems == ("answered SubmitRsp, expected DeliverRsp",)


def test_an_expected_error_is_checked_too() -> None:
    ex = exchange_of("error/submit-to-vasp@REL-6-MM7-1-4")
    status = Status.of(4003)
    error = reply_to(ex.request, VASPErrorRsp(status=status))
    fault = reply_to(ex.request, Fault(faultcode="Client", faultstring="no", error=error))
    body = encode(fault, STRICT_3GPP).body
    assert check(ex, Answer(500, "text/xml", body)).problems == ()
    ok = encode(reply_to(ex.request, SubmitRsp(message_id="m")), STRICT_3GPP).body
    problems = check(ex, Answer(200, "text/xml", ok)).problems
    assert "expected a SOAP Fault with a VASPErrorRsp" in problems[0]
    assert problems[-1] == "status 1000 'Success', expected 4003"


# ---------------------------------------------------------------- the probe's plan and TOML


def test_the_plan() -> None:
    full = ProbeSettings(to="+15551230001", sender="12345")
    assert plan_size(full) == 17 + 7
    assert plan_size(ProbeSettings(to="15551230001")) == 17 + 5
    pairs = pair_variants(ProbeSettings(to="+1555", versions=(get_version("REL-5-MM7-1-0"),)))
    assert [p.name for p in pairs] == ["pair/REL-5-MM7-1-0/5.3.0"]
    [old] = pairs
    assert old.number_plus == "strip" and old.dialect().strict
    names = {v.name: v for v in packaging_variants(old, full)}
    assert "number-with-plus" in names and not names["number-with-plus"].dialect().strict
    assert "sender-address-typed" in names
    assert (
        names["chunked"].dialect().chunked
        and names["soapaction-none"].dialect().soap_action_header() is None
    )


@pytest.mark.parametrize(
    "value", ['say "hi"', "back\\slash", "line\nbreak\ttab\x7f", "Grüße ☕ 😀"]
)
def test_toml_strings_round_trip(value: str) -> None:
    assert tomllib.loads(f"x = {toml_string(value)}")["x"] == value


def test_dialect_table_loads_and_names_are_checked() -> None:
    text = dialect_table("carrier-a", {"extends": "3gpp", "chunked": False}, ["a\nb"])
    assert text.startswith("# a?b\n[dialects.carrier-a]\n")
    assert tomllib.loads(text) == {"dialects": {"carrier-a": {"extends": "3gpp", "chunked": False}}}
    with pytest.raises(InteropError, match="built-in dialect"):
        check_name("mbuni")
    with pytest.raises(InteropError, match="TOML bare key"):
        check_name("a b")


# ---------------------------------------------------------------- option errors


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["vasp", "http://127.0.0.1:9/mm7", "--user", "u"], "--user needs --password-env"),
        (
            ["vasp", "http://127.0.0.1:9/mm7", "--user", "u", "--password-env", "MM7_UNSET_X"],
            "$MM7_UNSET_X is not set",
        ),
        (["vasp", "http://u:p@127.0.0.1:9/mm7"], "credentials in the URL are refused"),
        (["vasp", "ftp://127.0.0.1/mm7"], "expected http:// or https://"),
        (["vasp", "http://127.0.0.1:9/mm7", "--only", "zzz"], "no case matches 'zzz'"),
        (["vasp", "http://127.0.0.1:9/mm7", "--versions", "REL-7"], "--versions"),
        (["vasp", "http://127.0.0.1:9/mm7", "--tls-ca", "/nonexistent.pem"], "no such file"),
        # checked before the run: its requests are real traffic, its results would be lost
        (["vasp", "http://127.0.0.1:9/mm7", "--html", "/nonexistent/r.html"], "no such folder"),
        (["vasp", "http://127.0.0.1:9/mm7", "--html", "/"], "--html /: is a directory"),
        (["mmsc", "http://127.0.0.1:9/mm7", "--to", "abc"], "--to: expected a handset number"),
        (
            ["mmsc", "http://127.0.0.1:9/mm7", "--to", "+1555123", "--dialect-name", "3gpp"],
            "built-in",
        ),
        (["mmsc", "http://127.0.0.1:9/mm7", "--to", "+1555123", "--digest"], "--digest needs"),
        (["mmsc", "http://127.0.0.1:9/mm7", "--to", "+1555123", "--max-requests", "3"], "needs 23"),
    ],
)
def test_option_errors_are_one_line_and_send_nothing(
    capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    code, out, err = run(capsys, "interop", *args)
    line = assert_one_line_failure(code, out, err, "interop")
    assert says in line, line


def test_a_bad_timeout_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "interop", "vasp", "http://127.0.0.1:9/mm7", "--timeout", "0")
    line = assert_one_line_failure(code, out, err, "interop vasp")
    assert "--timeout: expected seconds between 0 and 600" in line
