"""Build the SubmitReq for one leased recipient from a stored message.

The API stores a message as opaque ``fields`` JSON plus its media parts in order (content-addressed
in the store). Here, and only here, the dispatcher turns them back into MM7:

    fields = read_fields(item.fields)                       # the ONE reader of the fields JSON
    content = await build_content(store, fields, item.parts, settings)   # fitted, to_part'ed
    request = build_submit(item, fields, content, settings)  # one recipient, stable TransactionID

``build_content`` is per message (the dispatcher caches it across the message's recipients);
fitting can resize images, so it runs in a worker thread. When the link's profile says
``too_big = "link"`` and nothing fits, the content is the message's text and its hosted page's
URL (``fallback_url``, from ``mm7.service.hosting``). ``stored_presentation`` reads a message
back as the application made it, for the hosted page. Any problem with the content (a part
missing from the store, slides naming unknown items, a FitError) raises ``BuildError``: the same
bytes would fail again, so the dispatcher fails the recipient permanently with that reason.

The fields JSON read (``read_fields``), as the API (``api.app``) stores it (shape ``"v": 1``; every
key optional, null meaning absent)::

    from              str   SenderAddress (else the link's sender_address)
    subject           str
    text              str   the API also stores it as a text part; a text item is added from
                            this field only when the message has no text/plain part (messages
                            enqueued by other producers)
    delivery_report   bool  DeliveryReport
    read_reply        bool  ReadReply
    priority          str   "Low" | "Normal" | "High" (any case)
    expiry            str   ExpiryDate as MM7 writes it: an ISO 8601 date-time or an xsd duration
                            ("P1D"); the store's absolute expires_at wins when set
    earliest_delivery str   same forms; not sent: the store holds the message until not_before
    service_code      str   ServiceCode (else the link's service_code)
    linked_id         str   LinkedID
    presentation      obj   {"layout": Layout value, "slides": [{"duration_ms", "visual", "text",
                            "audio", "refs"}] naming parts by Content-ID, "smil": str | null}
    slides, smil            also read at the top level (older producers); presentation wins

Ignored: ``v``, ``source``, ``api_key``, ``to`` (the recipient rows are authoritative),
``callback_url`` (the store's column is used).

Parts (``PartRecord``) give the media in presentation item order: their bytes come from
``Store.get_media_many`` by sha256; a part without a Content-ID or Content-Location gets a stable
generated one; a part of type application/smil is taken as the SMIL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mm7.content.builder import build_presentation, to_part
from mm7.content.fit import Change, FitError, fit_to_profile
from mm7.content.model import Layout, MediaItem, Presentation, Slide
from mm7.content.parts import (
    ContentError,
    canonical_type,
    content_id_for,
    make_item,
    safe_location,
    text_source,
    unique_location,
)
from mm7.core.errors import MM7Error
from mm7.core.mime import Part, parse_content_type
from mm7.core.model import Address, MessageClass, Priority, Recipients, SubmitReq
from mm7.core.values import RelativeOrAbsolute, parse_relative_or_absolute
from mm7.service.config.settings import LinkSettings
from mm7.service.errors import BuildError
from mm7.service.store.base import Store
from mm7.service.store.records import JSONObject, PartRecord, WorkItem

__all__ = [
    "BuildError",
    "BuiltContent",
    "MessageFields",
    "build_content",
    "build_submit",
    "message_items",
    "read_fields",
    "sender_of",
    "stored_presentation",
]

_SMIL_TYPES = frozenset({"application/smil", "application/smil+xml", "application/x-smil"})
_PRIORITIES = {"normal": Priority.NORMAL, "high": Priority.HIGH, "low": Priority.LOW}


@dataclass(frozen=True, slots=True)
class MessageFields:
    """What the dispatcher uses of a message's ``fields`` JSON, typed."""

    sender: str | None = None
    subject: str | None = None
    text: str | None = None
    delivery_report: bool | None = None
    read_reply: bool | None = None
    priority: Priority | None = None
    expiry: RelativeOrAbsolute | None = None
    earliest_delivery: RelativeOrAbsolute | None = None
    service_code: str | None = None
    linked_id: str | None = None
    slides: tuple[Slide, ...] | None = None
    smil: bytes | None = None
    layout: Layout = Layout.PORTRAIT_TEXT_BELOW
    #: from ``fields["sendmms"]`` (Mbuni's mclass, vasid, allow-adaptations, distribution)
    message_class: MessageClass | None = None
    vas_id: str | None = None
    allow_adaptations: bool | None = None
    distribution: bool | None = None


@dataclass(frozen=True, slots=True)
class BuiltContent:
    """A message's content entity as it goes on this link, and what fitting changed."""

    content: Part | None
    changes: tuple[Change, ...] = ()
    #: the hosted page's URL when the content is the text + link fallback; None otherwise
    link_fallback: str | None = None

    def describe_changes(self) -> list[str]:
        return [c.describe() for c in self.changes]


def read_fields(fields: JSONObject) -> MessageFields:
    """The one reader of the API's ``fields`` JSON (module docstring); BuildError when a value
    has the wrong type, naming the key."""
    presentation = fields.get("presentation")
    if presentation is None:
        presentation = {}
    if not isinstance(presentation, Mapping):
        raise BuildError("fields.presentation: expected an object")
    slides_raw = presentation.get("slides", fields.get("slides"))
    smil = _opt_str(presentation, "smil", "presentation.") or _opt_str(fields, "smil")
    layout_raw = _opt_str(presentation, "layout", "presentation.")
    try:
        layout = Layout(layout_raw) if layout_raw else Layout.PORTRAIT_TEXT_BELOW
    except ValueError:
        raise BuildError(f"fields.presentation.layout: unknown layout {layout_raw!r}") from None
    sendmms = fields.get("sendmms") or {}
    if not isinstance(sendmms, Mapping):
        raise BuildError("fields.sendmms: expected an object")
    mclass = _opt_str(sendmms, "message_class", "sendmms.")
    try:
        message_class = MessageClass(mclass) if mclass else None
    except ValueError:
        raise BuildError(f"fields.sendmms.message_class: unknown class {mclass!r}") from None
    return MessageFields(
        sender=_opt_str(fields, "from"),
        subject=_opt_str(fields, "subject"),
        text=_opt_str(fields, "text"),
        delivery_report=_opt_bool(fields, "delivery_report"),
        read_reply=_opt_bool(fields, "read_reply"),
        priority=_priority(fields),
        expiry=_opt_time(fields, "expiry"),
        earliest_delivery=_opt_time(fields, "earliest_delivery"),
        service_code=_opt_str(fields, "service_code"),
        linked_id=_opt_str(fields, "linked_id"),
        slides=_slides(slides_raw) if slides_raw is not None else None,
        smil=smil.encode("utf-8") if smil else None,
        layout=layout,
        message_class=message_class,
        vas_id=_opt_str(sendmms, "vas_id", "sendmms."),
        allow_adaptations=_opt_bool(sendmms, "allow_adaptations"),
        distribution=_opt_bool(sendmms, "distribution"),
    )


async def build_content(
    store: Store,
    fields: MessageFields,
    parts: Sequence[PartRecord],
    settings: LinkSettings,
    *,
    fallback_url: str | None = None,
) -> BuiltContent:
    """The content entity of a message for ``settings``' link: parts (and text) made into a
    presentation, fitted to the link's profile when it has one, then ``to_part``. None when the
    message has neither parts nor text (a subject-only SubmitReq).

    ``fallback_url``: the message's hosted page (``mm7.service.hosting``); when the profile says
    ``too_big = "link"`` and nothing makes the message fit, the content is its text and this
    URL instead (``BuiltContent.link_fallback``)."""
    items, smil, _ = await message_items(store, fields, parts)
    if not items:
        return BuiltContent(None)
    if settings.profile is None:
        # no fitting: assembling the MIME is quick, a thread hop would cost more than it saves
        return _fit_and_build(items, fields, smil, settings, fallback_url)
    return await asyncio.to_thread(_fit_and_build, items, fields, smil, settings, fallback_url)


async def message_items(
    store: Store, fields: MessageFields, parts: Sequence[PartRecord]
) -> tuple[list[MediaItem], bytes | None, dict[str, int]]:
    """A stored message's media items in order, its SMIL (a stored part or the field) and, by
    Content-ID, the position of the part each item came from (a text made from the ``text``
    field has none)."""
    items: list[MediaItem] = []
    positions: dict[str, int] = {}
    smil = fields.smil
    taken: set[str] = set()
    blobs = await store.get_media_many([p.sha256 for p in parts]) if parts else {}
    for index, record in enumerate(sorted(parts, key=lambda p: p.position), start=1):
        blob = blobs.get(record.sha256)
        if blob is None:
            raise BuildError(f"part {index}: media {record.sha256[:12]}... is not in the store")
        media_type = canonical_type(record.content_type)
        if media_type in _SMIL_TYPES:
            smil = smil or blob.data
            continue
        charset = parse_content_type(record.content_type).param("charset")
        if charset is None and media_type.startswith("text/"):
            charset = "utf-8"
        cid = record.content_id or content_id_for(media_type, index, blob.data)
        cid = cid.strip().removeprefix("<").removesuffix(">")
        location = record.content_location or safe_location(None, media_type, f"part{index}")
        location = unique_location(location, index, taken)
        items.append(MediaItem(blob.data, media_type, cid, location, charset))
        positions[cid] = record.position
    if fields.text and not any(it.media_type == "text/plain" for it in items):
        try:
            text_item = make_item(text_source(fields.text), len(items) + 1)
        except ContentError as exc:
            raise BuildError(f"text: {exc}") from None
        items.append(text_item)
    return items, smil, positions


async def stored_presentation(
    store: Store, fields: JSONObject, parts: tuple[PartRecord, ...]
) -> tuple[Presentation, Mapping[str, int]]:
    """A stored message's presentation as the application made it (not fitted to any profile:
    what its hosted page shows) and each item's part position by Content-ID; BuildError when
    the stored message cannot be read back."""
    read = read_fields(fields)
    items, smil, positions = await message_items(store, read, parts)
    if not items:
        return Presentation(()), positions
    try:
        presentation = build_presentation(items, slides=read.slides, smil=smil, layout=read.layout)
    except MM7Error as exc:
        raise BuildError(f"content: {exc}") from None
    return presentation, positions


def _fit_and_build(
    items: list[MediaItem],
    fields: MessageFields,
    smil: bytes | None,
    settings: LinkSettings,
    fallback_url: str | None,
) -> BuiltContent:
    try:
        presentation: Presentation = build_presentation(
            items, slides=fields.slides, smil=smil, layout=fields.layout
        )
        changes: tuple[Change, ...] = ()
        link: str | None = None
        if settings.profile is not None:
            fitted = fit_to_profile(
                presentation,
                settings.profile,
                to_part=to_part,
                dialect=settings.link.dialect,
                fallback_url=fallback_url,
            )
            presentation, changes = fitted.presentation, fitted.changes
            link = fallback_url if fitted.fallback else None
        return BuiltContent(to_part(presentation), changes, link)
    except FitError as exc:
        if exc.link_fallback_advised:
            raise BuildError(
                f"content does not fit profile {exc.profile!r} and the profile says too_big = "
                '"link", but hosting is off ([hosting] enabled = false): no link to send'
            ) from None
        raise BuildError(f"content does not fit profile {exc.profile!r}: {exc}") from None
    except MM7Error as exc:  # ContentError, SmilError, MIME errors
        raise BuildError(f"content: {exc}") from None


def sender_of(fields: JSONObject, settings: LinkSettings) -> str:
    """The SenderAddress a SubmitReq of this message carries, as sent (``Address.guess`` drops
    the blanks around it): the message's ``from``, else the link's ``sender_address``; "" when
    neither is set. The key of the link's ``sender_tps``."""
    given = fields.get("from")
    sender = given if isinstance(given, str) and given else settings.sender_address
    return sender.strip() if sender else ""


def build_submit(
    item: WorkItem,
    fields: MessageFields,
    content: BuiltContent,
    settings: LinkSettings,
) -> SubmitReq:
    """The SubmitReq for one leased recipient.

    One recipient per request, To, with the recipient's stable TransactionID (the MMSC's
    duplicate key on an at-least-once resend). EarliestDeliveryTime is not sent: the store does
    not hand the recipient out before it. ExpiryDate is the message's expiry when it has one.
    """
    sender = fields.sender or settings.sender_address
    expiry = item.expires_at or fields.expiry
    try:
        return SubmitReq(
            transaction_id=item.transaction_id,
            vasp_id=settings.vasp_id,
            vas_id=fields.vas_id or settings.vas_id,
            sender_address=Address.guess(sender) if sender else None,
            recipients=Recipients(to=(Address.guess(item.address),)),
            service_code=fields.service_code or settings.service_code,
            linked_id=fields.linked_id,
            expiry_date=expiry,
            delivery_report=fields.delivery_report,
            read_reply=fields.read_reply,
            priority=fields.priority,
            subject=fields.subject,
            message_class=fields.message_class,
            distribution_indicator=fields.distribution,
            allow_adaptations=fields.allow_adaptations,
            content=content.content,
        )
    except (ValueError, MM7Error) as exc:
        raise BuildError(f"cannot build the SubmitReq: {exc}") from None


# --------------------------------------------------------------------------- small readers


def _opt_str(fields: Mapping[str, Any], key: str, where: str = "") -> str | None:
    value = fields.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BuildError(f"fields.{where}{key}: expected a string, got {type(value).__name__}")
    return value


def _opt_bool(fields: JSONObject, key: str) -> bool | None:
    value = fields.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise BuildError(f"fields.{key}: expected true or false, got {value!r}")
    return value


def _opt_time(fields: JSONObject, key: str) -> RelativeOrAbsolute | None:
    text = _opt_str(fields, key)
    if text is None:
        return None
    try:
        when = parse_relative_or_absolute(text)
    except (ValueError, MM7Error):
        raise BuildError(
            f"fields.{key}: expected an ISO 8601 date-time or an xsd duration, got {text!r}"
        ) from None
    if isinstance(when, datetime) and when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when


def _priority(fields: JSONObject) -> Priority | None:
    text = _opt_str(fields, "priority")
    if text is None:
        return None
    try:
        return _PRIORITIES[text.strip().lower()]
    except KeyError:
        raise BuildError(f"fields.priority: expected normal, high or low, got {text!r}") from None


def _slides(raw: Any) -> tuple[Slide, ...]:
    if not isinstance(raw, list):
        raise BuildError("fields.slides: expected a list of slides")
    out: list[Slide] = []
    for number, entry in enumerate(raw, start=1):
        if not isinstance(entry, Mapping):
            raise BuildError(f"fields.slides[{number}]: expected an object")
        refs = entry.get("refs") or ()
        duration = entry.get("duration_ms", 5000)
        if not isinstance(duration, int) or isinstance(duration, bool):
            raise BuildError(f"fields.slides[{number}].duration_ms: expected an integer")
        values = {k: entry.get(k) for k in ("visual", "text", "audio")}
        for key, value in values.items():
            if value is not None and not isinstance(value, str):
                raise BuildError(f"fields.slides[{number}].{key}: expected a Content-ID")
        if not isinstance(refs, list | tuple) or not all(isinstance(r, str) for r in refs):
            raise BuildError(f"fields.slides[{number}].refs: expected a list of Content-IDs")
        out.append(
            Slide(
                duration,
                visual=values["visual"],
                text=values["text"],
                audio=values["audio"],
                refs=tuple(refs),
            )
        )
    return tuple(out)
