"""Test messages: for each operation and version, one with every element the version defines."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mm7.core import model
from mm7.core.mime import Part, make_multipart, make_part
from mm7.core.model import (
    Address,
    AddressCoding,
    AddressKind,
    ChargedParty,
    ContentClass,
    Message,
    MessageClass,
    MMStatusExtension,
    PreviouslySentBy,
    PreviouslySentDate,
    Priority,
    Recipients,
    ReplyCharging,
    Status,
    UACapabilities,
)
from mm7.core.spec import Kind, Operation
from mm7.core.status import MMStatus, ReadStatus
from mm7.core.values import Duration
from mm7.core.versions import Version

WHEN = datetime(2026, 11, 24, 21, 30, 5, tzinfo=UTC)
SMIL = (
    b'<smil><head><layout><root-layout width="320" height="480"/>'
    b'<region id="Image" top="0" left="0" height="70%" width="100%"/>'
    b'<region id="Text" top="70%" left="0" height="30%" width="100%"/></layout></head>'
    b'<body><par dur="5000ms"><img src="cid:image1" region="Image"/>'
    b'<text src="cid:text1" region="Text"/></par></body></smil>'
)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 4 + b"\xff\xd9"


def content() -> Part:
    """A SMIL presentation with an image and a text, as one multipart/related entity."""
    return make_multipart(
        [
            make_part(SMIL, "application/smil", content_id="smil", content_location="mms.smil"),
            make_part(JPEG, "image/jpeg", content_id="image1", content_location="image1.jpg"),
            make_part(
                "Héllo wörld".encode(),
                "text/plain; charset=utf-8",
                content_id="text1",
                content_location="text1.txt",
            ),
        ],
        "related",
        params={"type": "application/smil", "start": "<smil>"},
        content_id="mm7-content",
    )


def _number(version: Version, digits: str) -> str:
    return digits if version.nmtoken_identifiers else "+" + digits


def _address(version: Version, digits: str, **attrs: Any) -> Address:
    if version.key < (6, 0):
        attrs.pop("address_coding", None)
        attrs.pop("id", None)
    return Address(_number(version, digits), AddressKind.NUMBER, **attrs)


def value_for(attr: str, kind: Kind, version: Version, op: Operation) -> Any:
    """A valid, non-default value of ``attr`` for ``version``."""
    if attr == "recipients":
        return Recipients(
            to=(
                _address(version, "15551230001"),
                Address("user@example.com", AddressKind.RFC2822, display_only=True),
            ),
            cc=(Address("12345", AddressKind.SHORT_CODE),),
            bcc=(
                _address(version, "15551230002", address_coding=AddressCoding.OBFUSCATED, id="r3"),
            ),
        )
    simple: dict[str, Any] = {
        "vasp_id": "vasp01",
        "vas_id": "vas01",
        "sender_address": Address("12345", AddressKind.SHORT_CODE),
        "service_code": "svc-1",
        "linked_id": "linked-1",
        "message_class": MessageClass.ADVERTISEMENT,
        "timestamp": WHEN,
        "reply_charging": ReplyCharging(1024, Duration(days=2)),
        "earliest_delivery_time": WHEN,
        "expiry_date": Duration(days=90),
        "delivery_report": True,
        "read_reply": False,
        "priority": Priority.HIGH,
        "subject": "Héllo & <wörld>",
        "charged_party": ChargedParty.THIRD_PARTY if version.key >= (6, 2) else ChargedParty.SENDER,
        "charged_party_id": "cp-9",
        "distribution_indicator": True,
        "delivery_condition": (1, 2),
        "applic_id": "app.one",
        "reply_applic_id": "app.reply",
        "aux_applic_info": "aux",
        "content_class": ContentClass.IMAGE_RICH,
        "drm_content": False,
        "content": content(),
        "message_id": "msg-000123",
        "mms_relay_server_id": "mmsc01",
        "sender": _address(version, "15559870000"),
        "recipient": _address(version, "15551230001"),
        "previously_sent_by": (PreviouslySentBy(_address(version, "15550000001"), 1),),
        "previously_sent_date": (PreviouslySentDate(WHEN, 1),),
        "sender_spi": "spi-a",
        "recipient_spi": "spi-b",
        "reply_charging_id": "rc-1",
        "ua_capabilities": UACapabilities("http://example.com/ua.xml", WHEN),
        "date": WHEN,
        "mm_status_extension": MMStatusExtension.REJECTION_BY_OTHER_RS,
        "status_text": "Message retrieved",
        "cancel_id": "msg-000123",
        "replace_id": "msg-000124",
    }
    if attr in simple:
        return simple[attr]
    if attr == "mm_status":
        if op.name == "ReadReplyReq":
            return ReadStatus.READ
        return MMStatus.DEFERRED if version.key >= (6, 1) else MMStatus.RETRIEVED
    if attr == "status":
        if kind is Kind.CODE_ONLY_STATUS:
            return Status(1000, "")
        return Status(1000, "Success", "all fine")
    raise KeyError(attr)


def full_message(op: Operation, version: Version) -> Message:
    """``op`` in ``version`` with every element the version defines set."""
    cls: type[Message] = getattr(model, op.model)
    kwargs: dict[str, Any] = {
        "transaction_id": f"tx-{op.name}-{version.token}",
        "namespace": version.namespace,
        "mm7_version": version.default_mm7_version,
    }
    for el in op.sequence(version):
        if el.kind is Kind.VERSION:
            continue
        if el.kind is Kind.SENDER_ID:
            for attr in ("vasp_id", "vas_id", "sender_address"):
                kwargs[attr] = value_for(attr, Kind.STRING, version, op)
            continue
        kwargs[el.attr] = value_for(el.attr, el.kind, version, op)
        if el.kind is Kind.CONTENT:
            kwargs["allow_adaptations"] = False
    return cls(**kwargs)


def minimal_message(op: Operation, version: Version) -> Message:
    """``op`` in ``version`` with only the required elements."""
    cls: type[Message] = getattr(model, op.model)
    kwargs: dict[str, Any] = {"transaction_id": "tx-min"}
    for el in op.sequence(version):
        if el.required and el.kind not in (Kind.VERSION, Kind.SENDER_ID):
            kwargs[el.attr] = value_for(el.attr, el.kind, version, op)
    return cls(**kwargs)
