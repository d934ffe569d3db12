"""The JSON an application receives for an MO, built from the DeliverReq as it arrived.

    {"type": "mo", "id": "<mo id>", "link": "simulator", "received_at": "...Z",
     "from": "+4915112345678", "to": ["12345"], "cc": [], "bcc": [],
     "subject": "...", "text": "...", "keyword": "PROMO", "opt_out": "stop" | "start" | null,
     "slides": [{"duration_ms": 5000, "visual": "<content id>", "text": "<content id>",
                 "audio": null, "refs": []}],
     "media": [{"index": 0, "content_type": "image/jpeg", "content_id": "...",
                "filename": "photo.jpg", "size": 51234, "sha256": "...",
                "url": "https://gw/media/..." | "data_base64": "..."}],     # added at delivery
     "mm7": {"namespace": "...", "version": "REL-6-MM7-1-4", "mm7_version": "6.8.0",
             "transaction_id": "...", "message_id": null, "linked_id": null,
             "service_code": null, "applic_id": null, "reply_applic_id": null,
             "aux_applic_info": null, "priority": null, "date": null,
             "mms_relay_server_id": null, "reply_charging_id": null, "leniencies": [],
             "missing": []},
     "carrier_id": "310-260" | null, "headers": {"X-...": "..."}}

Every part of the content is kept (types from the bytes, safe file names), in presentation
order; ``text`` joins the text/plain parts. The SMIL itself is not relayed: its slides are.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mm7.content.builder import from_part
from mm7.content.model import Presentation
from mm7.core.model import Address, DeliverReq
from mm7.service.relay.routing import MoFacts, first_word
from mm7.service.store.records import MediaPart
from mm7.transport.server import InboundContext

__all__ = ["MoContent", "mo_content"]

#: vendor elements some MMSCs add to DeliverReq, read for duplicates and routing
_MESSAGE_ID_ELEMENTS = ("MessageID", "MessageId")
_SERVICE_CODE_ELEMENTS = ("ServiceCode",)


@dataclass(frozen=True, slots=True)
class MoContent:
    """An MO taken apart: the event JSON (no id, no media yet), its parts and routing facts."""

    event: dict[str, Any]
    parts: tuple[MediaPart, ...]
    facts: MoFacts
    transaction_id: str | None
    mm7_message_id: str | None
    #: what a retry repeats and another MO with a recycled TransactionID does not
    fingerprint: str


def _vendor(message: DeliverReq, names: tuple[str, ...]) -> str | None:
    for element, text in message.extensions:
        if element.rsplit("}", 1)[-1] in names and text.strip():
            return text.strip()
    return None


def _addresses(values: tuple[Address, ...]) -> list[str]:
    return [a.value for a in values if not a.display_only]


def _decode(data: bytes, charset: str | None) -> str:
    """``data`` as text in ``charset``; UTF-8 (replacing what is not) when no codec decodes it.

    The label comes from the MMSC: one no codec knows ("unknown-8bit"), a bytes codec ("hex")
    or one refusing "replace" ("idna") must not make the MO unstorable.
    """
    try:
        return data.decode(charset or "utf-8", "replace")
    except (LookupError, UnicodeError):
        return data.decode("utf-8", "replace")


def _text_of(presentation: Presentation) -> str | None:
    texts: list[str] = []
    for item in presentation.items:
        if item.media_type == "text/plain":
            texts.append(_decode(item.data, item.charset))
    return "\n".join(texts) if texts else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def mo_content(ctx: InboundContext[DeliverReq], link: str, received_at: datetime) -> MoContent:
    """Take the DeliverReq of ``ctx`` apart into what is stored and relayed."""
    message = ctx.message
    presentation = from_part(message.content) if message.content is not None else None
    items = presentation.items if presentation is not None else ()
    text = _text_of(presentation) if presentation is not None else None
    recipients = message.recipients
    to = _addresses(recipients.to) if recipients is not None else []
    cc = _addresses(recipients.cc) if recipients is not None else []
    bcc = _addresses(recipients.bcc) if recipients is not None else []
    mm7_message_id = _vendor(message, _MESSAGE_ID_ELEMENTS)
    service_code = _vendor(message, _SERVICE_CODE_ELEMENTS)
    version = ctx.version
    event: dict[str, Any] = {
        "type": "mo",
        "link": link,
        "received_at": _iso(received_at),
        # an MO without Sender (the schema requires one) is relayed with "from": null
        "from": message.sender.value if message.sender is not None else None,
        "to": to,
        "cc": cc,
        "bcc": bcc,
        "subject": message.subject,
        "text": text,
        "keyword": first_word(text),
        "opt_out": None,
        "slides": [s.as_json() for s in (presentation.slides if presentation else ())],
        "mm7": {
            "namespace": message.namespace,
            "version": version.token if version is not None else None,
            "mm7_version": message.mm7_version,
            "transaction_id": message.transaction_id or None,
            "message_id": mm7_message_id,
            "linked_id": message.linked_id,
            "service_code": service_code,
            "applic_id": message.applic_id,
            "reply_applic_id": message.reply_applic_id,
            "aux_applic_info": message.aux_applic_info,
            "priority": message.priority.value if message.priority is not None else None,
            "date": _iso(message.timestamp),
            "mms_relay_server_id": message.mms_relay_server_id,
            "reply_charging_id": message.reply_charging_id,
            "leniencies": [str(x) for x in ctx.leniencies],
            # schema-required elements the MMSC left out (leniency required-element-missing)
            "missing": list(ctx.decoded.missing),
        },
        "carrier_id": ctx.carrier_id,
        "headers": {k: v for k, v in ctx.headers.items() if k.lower().startswith("x-")},
    }
    # hashed once: the endpoint's duplicate detection hashed the same bodies
    digests = [ctx.digest_of(item.data) for item in items]
    parts = tuple(
        MediaPart(
            content_type=item.media_type + (f"; charset={item.charset}" if item.charset else ""),
            data=item.data,
            content_id=item.content_id,
            content_location=item.content_location,
            digest=digest,  # hashed once, here: the store does not hash them again
        )
        for item, digest in zip(items, digests, strict=True)
    )
    facts = MoFacts(
        link=link,
        recipients=to + cc + bcc,
        text=text,
        service_code=service_code,
        applic_id=message.applic_id,
        reply_applic_id=message.reply_applic_id,
    )
    # Date and Subject are optional: the content's digests make a new message from the same
    # handset under a recycled TransactionID differ from a retry even without them
    fingerprint = hashlib.sha256(
        "\x1f".join(
            (message.sender.value if message.sender is not None else "",
             _iso(message.timestamp) or "", message.subject or "",
             *digests)
        ).encode("utf-8", "surrogatepass")
    ).hexdigest()[:32]  # fmt: skip
    return MoContent(
        event, parts, facts, message.transaction_id or None, mm7_message_id, fingerprint
    )
