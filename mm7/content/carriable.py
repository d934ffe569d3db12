"""Whether a carrier profile can ever carry an item: the decision the API takes at intake, so
that a message whose content the link can never send is refused before it is accepted.

An item can be carried when the profile takes its type, or when the fitter (``mm7.content.fit``)
can turn it into a type the profile takes on this machine: an image Pillow decodes becomes a
JPEG, PNG or GIF; audio and video are transcoded with ffmpeg when it is installed and has an
encoder for a type the profile takes. Size is not judged here: a part too big for the profile
may still be shrunk, and that is the fitter's work when the message is sent.
"""

from __future__ import annotations

from mm7.content.fit import FFMPEG, transcode_targets
from mm7.content.images import OUTPUT_TYPES, decodable
from mm7.content.model import MediaItem
from mm7.content.profile import Profile
from mm7.core.sniff import OCTET_STREAM, sniff

__all__ = ["never_carried"]


def never_carried(item: MediaItem, profile: Profile, *, ffmpeg: str | None = FFMPEG) -> str | None:
    """Why ``profile`` can never carry ``item`` (its detected type, the profile and what is
    missing), or None when it can, perhaps once converted or shrunk."""
    media_type = item.media_type.split(";", 1)[0].strip().lower()
    if profile.allows(media_type):
        return None
    kind = item.kind
    if kind == "image":
        targets = tuple(t for t in OUTPUT_TYPES if profile.allows(t))
        if decodable(media_type) and targets:
            return None
        why = (
            f"mm7 cannot decode {media_type} to convert it"
            if targets
            else f"the profile takes none of {', '.join(OUTPUT_TYPES)} to convert it to"
        )
    elif kind in ("audio", "video"):
        if transcode_targets(kind, profile, ffmpeg):
            return None
        why = (
            f"there is no ffmpeg on this machine to transcode the {kind}"
            if ffmpeg is None
            else f"ffmpeg at {ffmpeg} has no encoder for {_a(kind)} type the profile takes"
        )
    else:
        why = "nothing converts it to a type the profile takes"
    return (
        f"{_detected(item, media_type)}, which profile {profile.name!r} does not take (it takes "
        f"{', '.join(profile.allowed_types)}), and {why}"
    )


def _a(kind: str) -> str:
    return f"an {kind}" if kind == "audio" else f"a {kind}"


def _detected(item: MediaItem, media_type: str) -> str:
    """How the type was found: from the bytes, or from the label when they are unknown."""
    sniffed = sniff(item.data).lower()
    if sniffed == OCTET_STREAM and media_type != OCTET_STREAM:
        return f"{media_type} (as declared: the bytes are of no format mm7 recognises)"
    if media_type == OCTET_STREAM:
        return f"the bytes are {OCTET_STREAM} (of no format mm7 recognises)"
    return f"the bytes are {media_type}"
