"""conf/dialects.toml holds valid dialects, each different from the one it extends."""

from __future__ import annotations

import tomllib
from pathlib import Path

from mm7.core.codec import decode, encode
from mm7.core.dialect import Dialect, get_dialect
from mm7.core.model import Address, Recipients, SubmitReq
from tests.helpers.samples import content

CONF = Path(__file__).resolve().parents[1] / "mm7" / "conf" / "dialects.toml"


def test_every_configured_dialect_builds_and_round_trips() -> None:
    tables = tomllib.loads(CONF.read_text(encoding="utf-8"))["dialects"]
    assert tables
    for name, table in tables.items():
        dialect = Dialect.from_mapping({"name": name, **table})
        assert dialect.name == name
        assert dialect != get_dialect(table["extends"])
        message = SubmitReq(
            transaction_id=f"tx-{name}",
            recipients=Recipients(to=(Address("15551230001"),)),
            subject="dialect check",
            content=content(),
        )
        wire = encode(message, dialect)
        back = decode(wire.body, wire.content_type).message
        assert back.mm7_version == dialect.effective_mm7_version
        assert back.content == message.content


def test_kt_like_dialect_writes_upper_case_booleans_and_its_version() -> None:
    table = tomllib.loads(CONF.read_text(encoding="utf-8"))["dialects"]["kt-like"]
    dialect = Dialect.from_mapping(table)
    wire = encode(
        SubmitReq(
            transaction_id="tx",
            recipients=Recipients(to=(Address("01012345678"),)),
            delivery_report=True,
        ),
        dialect,
    )
    assert b"<mm7:DeliveryReport>TRUE</mm7:DeliveryReport>" in wire.body
    assert b"<mm7:MM7Version>1.6</mm7:MM7Version>" in wire.body
    assert b"REL-5-MM7-1-2" in wire.body
