"""The content model shared by the builder, the SMIL writer/reader and the fitter."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "Layout",
    "MediaItem",
    "Presentation",
    "Slide",
]


class Layout(StrEnum):
    """Root-layout orientation and where the text region sits relative to the image region."""

    PORTRAIT_TEXT_BELOW = "portrait"
    PORTRAIT_TEXT_ABOVE = "portrait-text-above"
    LANDSCAPE_TEXT_RIGHT = "landscape"
    LANDSCAPE_TEXT_LEFT = "landscape-text-left"


@dataclass(frozen=True, slots=True)
class MediaItem:
    """One media object of a presentation, with its real type (from the bytes)."""

    data: bytes
    #: the real media type, detected from the bytes ("image/jpeg", "text/plain", ...)
    media_type: str
    #: stable Content-ID (no angle brackets) and a safe file-like Content-Location
    content_id: str
    content_location: str
    #: for text parts: the charset the bytes are in
    charset: str | None = None
    #: the SHA-256 (hex) of ``data`` when it was computed already (for the Content-ID), so
    #: that storing the item does not hash the bytes again; None: not known
    sha256: str | None = field(default=None, compare=False)

    @property
    def kind(self) -> str:
        """image, video, audio, text, or other (vCard/vCalendar/anything else)."""
        media_type = self.media_type.lower()  # media types are case-insensitive (text/x-vCard)
        major = media_type.split("/", 1)[0]
        if media_type in ("text/x-vcard", "text/x-vcalendar", "text/vcard", "text/calendar"):
            return "other"
        return major if major in ("image", "video", "audio", "text") else "other"


@dataclass(frozen=True, slots=True)
class Slide:
    """What is shown together (a SMIL <par>), referencing items by Content-ID."""

    duration_ms: int = 5000
    visual: str | None = None  # an image or a video
    text: str | None = None
    audio: str | None = None
    #: other items attached to this slide (vCard ...), referenced with <ref>
    refs: tuple[str, ...] = ()

    def as_json(self) -> dict[str, object]:
        """The slide as the API stores it and the relay sends it (Content-IDs, not indexes)."""
        return {
            "duration_ms": self.duration_ms,
            "visual": self.visual,
            "text": self.text,
            "audio": self.audio,
            "refs": list(self.refs),
        }


@dataclass(frozen=True, slots=True)
class Presentation:
    """Items in order plus the slides that present them; ``smil`` is set when the caller gave
    one."""

    items: tuple[MediaItem, ...]
    slides: tuple[Slide, ...] = ()
    layout: Layout = Layout.PORTRAIT_TEXT_BELOW
    smil: bytes | None = field(default=None, compare=False)

    def item(self, content_id: str) -> MediaItem:
        for it in self.items:
            if it.content_id == content_id:
                return it
        raise KeyError(content_id)
