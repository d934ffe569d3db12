"""The wire log shows what an interop engineer needs and no secret."""

from __future__ import annotations

import json

from mm7.core.codec import encode
from mm7.core.spec import OPERATION_BY_NAME
from mm7.core.versions import LATEST
from mm7.transport.wirelog import redact_headers, redact_url, wire_entry
from tests.helpers.samples import JPEG, full_message


def test_secrets_are_masked_and_media_elided() -> None:
    message = full_message(OPERATION_BY_NAME["SubmitReq"], LATEST)
    wire = encode(message)
    entry = wire_entry(
        "request",
        url="https://vasp:s3cret@mmsc.example/mm7",
        headers={
            "Authorization": "Basic dmFzcDpzM2NyZXQ=",
            "Content-Type": wire.content_type,
            "X-Carrier-Id": "42",
        },
        body=wire.body,
        content_type=wire.content_type,
    )
    text = json.dumps(entry)
    assert "s3cret" not in text
    assert "dmFzcDpzM2NyZXQ=" not in text
    assert ["Authorization", "Basic ***"] in entry["headers"] or (
        ("Authorization", "Basic ***") in entry["headers"]
    )
    assert entry["url"] == "https://***@mmsc.example/mm7"
    assert "<mm7:SubmitReq>" in entry["body"]["soap"]
    assert entry["body"]["media"] == [
        "application/smil cid=smil 321 bytes",
        f"image/jpeg cid=image1 {len(JPEG)} bytes",
        "text/plain cid=text1 13 bytes",
    ]
    assert "JFIF" not in text  # the JPEG bytes never reach the log


def test_unparsable_body_is_summarised_not_raised() -> None:
    entry = wire_entry("response", status=502, body=b"Bad gateway", content_type="text/plain")
    assert entry["http_status"] == 502
    assert entry["body"]["size"] == 11
    assert entry["body"]["head"] == "Bad gateway"
    assert "unparsed" in entry["body"]


def test_redaction_helpers() -> None:
    assert redact_url("http://127.0.0.1:8080/mm7") == "http://127.0.0.1:8080/mm7"
    assert redact_headers([("Cookie", "a=b"), ("Accept", "text/xml")]) == [
        ("Cookie", "***"),
        ("Accept", "text/xml"),
    ]
