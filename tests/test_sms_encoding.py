"""SMS text encoding and splitting (GSM 03.38 / UCS-2, UDH) and receipt parsing, sans-I/O."""

from __future__ import annotations

import pytest

from mm7.service.sms import Coding, ReceiptState, parse_receipt, split_text
from mm7.service.sms.encoding import encode_gsm


def test_gsm_fits_in_one_part_up_to_160_septets() -> None:
    (part,) = split_text("a" * 160, reference=7)
    assert (part.coding, part.udh, part.payload) == (Coding.GSM, False, b"a" * 160)
    parts = split_text("a" * 161, reference=7)
    assert [len(p.payload) - 6 for p in parts] == [153, 8]
    assert [p.payload[:6] for p in parts] == [bytes((5, 0, 3, 7, 2, n)) for n in (1, 2)]


def test_extension_characters_count_twice_and_are_never_split() -> None:
    assert encode_gsm("€[") == b"\x1be\x1b<"
    assert len(split_text("€" * 80, 1)) == 1  # 160 septets
    parts = split_text("a" * 152 + "€" + "b" * 10, 1)  # the escape would be septet 153
    assert parts[0].payload[6:] == b"a" * 152
    assert parts[1].payload[6:] == b"\x1be" + b"b" * 10


def test_outside_gsm_goes_ucs2_and_keeps_surrogate_pairs_whole() -> None:
    (part,) = split_text("é ok Ç", 1)
    assert part.coding is Coding.GSM  # é and Ç are in the GSM basic table
    (part,) = split_text("ъ" * 70, 1)
    assert (part.coding, len(part.payload)) == (Coding.UCS2, 140)
    parts = split_text("x" * 66 + "😀" + "y" * 10, 1)
    assert parts[0].payload[6:].decode("utf-16-be") == "x" * 66
    assert parts[1].payload[6:].decode("utf-16-be") == "😀" + "y" * 10


def test_empty_and_too_long_texts_are_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        split_text("", 1)
    with pytest.raises(ValueError, match="255"):
        split_text("a" * 153 * 256, 1)


def test_receipt_fields_are_read() -> None:
    text = (
        b"id:0A1B sub:001 dlvrd:000 submit date:2601010000 done date:2601010001"
        b" stat:UNDELIV err:034 text:hi"
    )
    r = parse_receipt(text)
    assert r is not None
    assert (r.message_id, r.state, r.error) == ("0A1B", ReceiptState.UNDELIVERABLE, "034")
    odd = parse_receipt(b"id:9 stat:WHATEVER")
    assert odd is not None and odd.state is ReceiptState.UNKNOWN
    assert parse_receipt(b"hello, an MO text") is None
