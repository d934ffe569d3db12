"""Carrier content profiles: what one MMSC accepts, as data (conf/profiles/<name>.toml).

A profile says how big a message may be *as that MMSC counts it*, which media types and image
resolutions it takes, whether every message needs SMIL, and what to do when content does not fit.
``fit_to_profile`` (mm7.content.fit) reads it; nothing here touches media bytes.

What ``max_message_bytes`` counts (``count``):

* ``"content"`` (default): the serialised MM content entity, i.e. the part the MM7 ``<Content
  href="cid:...">`` names: its own MIME header block, every child's header block, every
  boundary line and every body *after* Content-Transfer-Encoding. This is what MMSCs call the
  message size (MM1 delivery size), and what 3GPP's MessageSize refers to.
* ``"swa"``: the whole SOAP-with-Attachments HTTP body: the above plus the SOAP part (headers and
  envelope) and the outer boundaries. Some aggregators limit the HTTP body instead. The envelope
  is not known while fitting, so ``soap_allowance_bytes`` stands for it unless the caller passes
  the real envelope size.

Bodies are counted in the transfer encoding the link uses: ``transfer_encoding`` for media
(``binary`` adds nothing, ``base64`` adds a third plus line breaks); text and SMIL parts are
counted as 8bit. A ``Dialect`` passed to the fitter overrides this with its own per-type choice.
"""

from __future__ import annotations

import codecs
import dataclasses
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mm7.core.errors import MM7Error
from mm7.core.shipped import shipped

__all__ = [
    "COUNTS",
    "ON_NO_FIT",
    "ON_TYPE_MISMATCH",
    "TOO_BIG",
    "PROFILE_DIRS",
    "Profile",
    "ProfileError",
    "available_profiles",
    "load_profile",
    "parse_size",
]

#: what max_message_bytes applies to (see the module docstring)
COUNTS = ("content", "swa")
#: a declared type that disagrees with the bytes: fix the label, or refuse the part
ON_TYPE_MISMATCH = ("correct", "refuse")
#: when nothing makes the message fit: raise FitError, or fall back to a text + link message
ON_NO_FIT = ("refuse", "link")
#: the profile file's key for ``Profile.on_no_fit``
TOO_BIG = "too_big"
#: transfer encodings the size can be counted in (as mm7.core.dialect.TRANSFER_ENCODINGS)
TRANSFER_ENCODINGS = ("binary", "8bit", "7bit", "base64", "quoted-printable")

#: where load_profile looks for <name>.toml: the working directory's conf/profiles (a
#: deployment's own, which override the shipped ones by name), then those shipped with mm7
PROFILE_DIRS: tuple[Path, ...] = (
    Path("conf") / "profiles",
    shipped("profiles"),
)

_MEDIA_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]+/(\*|[a-z0-9!#$&^_.+-]+)|\*/\*")
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]i?[bB]|[bB])?\s*")
_UNITS = {"b": 1, "kb": 1000, "kib": 1024, "mb": 1_000_000, "mib": 1024 * 1024}


class ProfileError(MM7Error):
    """A profile file or value that cannot be used; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class Profile:
    """One carrier's content limits. Field comments say what each one changes."""

    name: str
    #: the largest message the MMSC takes, in bytes, counted as ``count`` says
    max_message_bytes: int
    #: media types the MMSC takes: exact ("image/jpeg") or wildcards ("image/*", "*/*");
    #: compared case-insensitively, parameters ignored. The SMIL part is always allowed.
    allowed_types: tuple[str, ...] = (
        "text/plain",
        "image/jpeg",
        "image/gif",
        "image/png",
        "audio/amr",
        "video/3gpp",
    )
    #: the largest image the MMSC takes, in either orientation (a 1200x1600 portrait photo fits
    #: a 1600x1200 profile: handsets rotate, and carriers state the long and short side)
    max_image_width: int = 640
    max_image_height: int = 480
    #: every message must carry a SMIL presentation (some aggregators refuse SubmitReq without)
    smil_required: bool = False
    #: MIME parts in the content entity, the SMIL part included
    max_parts: int = 20
    #: what "content" or "swa" (see the module docstring) max_message_bytes applies to
    count: str = "content"
    #: bytes assumed for the SOAP part and outer framing when count="swa" and the fitter is not
    #: told the envelope's real size
    soap_allowance_bytes: int = 2048
    #: the Content-Transfer-Encoding the link sends media in; sizes are counted after it
    transfer_encoding: str = "binary"
    #: a part whose declared type disagrees with its bytes: "correct" the label or "refuse"
    on_type_mismatch: str = "correct"
    #: charset text parts are sent in (text in another charset is re-encoded)
    text_charset: str = "utf-8"
    #: when nothing makes the message fit: "refuse" (FitError) or "link" (text + hosted link);
    #: written ``too_big`` in a profile file (``on_no_fit``, its first name, is read too)
    on_no_fit: str = "refuse"
    #: decompression-bomb limit: images are never decoded to more pixels than this (JPEGs over
    #: it are decoded at 1/2, 1/4 or 1/8 scale when that is enough, others are refused)
    max_decode_pixels: int = 16_000_000
    #: free text for people (which carrier, where the numbers come from)
    description: str = dataclasses.field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.name:
            raise ProfileError("name: must not be empty")
        for key in (
            "max_message_bytes",
            "max_image_width",
            "max_image_height",
            "max_parts",
            "max_decode_pixels",
        ):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ProfileError(f"{key}: expected a positive integer, got {value!r}")
        if (
            isinstance(self.soap_allowance_bytes, bool)
            or not isinstance(self.soap_allowance_bytes, int)
            or self.soap_allowance_bytes < 0
        ):
            raise ProfileError(
                f"soap_allowance_bytes: expected an integer >= 0, got {self.soap_allowance_bytes!r}"
            )
        _choice("count", self.count, COUNTS)
        _choice("on_type_mismatch", self.on_type_mismatch, ON_TYPE_MISMATCH)
        _choice("on_no_fit", self.on_no_fit, ON_NO_FIT)
        _choice("transfer_encoding", self.transfer_encoding, TRANSFER_ENCODINGS)
        if not isinstance(self.smil_required, bool):
            raise ProfileError(f"smil_required: expected true/false, got {self.smil_required!r}")
        try:
            codecs.lookup(self.text_charset)
        except (LookupError, TypeError):
            raise ProfileError(
                f"text_charset: {self.text_charset!r} is not a charset Python knows"
            ) from None
        types = tuple(str(t).strip().lower() for t in self.allowed_types)
        if not types:
            raise ProfileError("allowed_types: must name at least one media type")
        for t in types:
            if not _MEDIA_TYPE.fullmatch(t):
                raise ProfileError(
                    f"allowed_types: {t!r} is not a media type (type/subtype, type/* or */*)"
                )
        object.__setattr__(self, "allowed_types", types)

    def allows(self, media_type: str) -> bool:
        """True when the MMSC takes ``media_type`` (parameters ignored, case-insensitive)."""
        mt = media_type.split(";", 1)[0].strip().lower()
        if mt in ("application/smil", "application/smil+xml"):
            return True
        major = mt.split("/", 1)[0]
        for pattern in self.allowed_types:
            if pattern == mt or pattern == "*/*" or pattern == f"{major}/*":
                return True
        return False

    def image_box(self, width: int, height: int) -> tuple[int, int]:
        """The largest (w, h) box an image of this orientation may fill (see max_image_width)."""
        long_side = max(self.max_image_width, self.max_image_height)
        short_side = min(self.max_image_width, self.max_image_height)
        return (long_side, short_side) if width >= height else (short_side, long_side)

    def fits_box(self, width: int, height: int) -> bool:
        """True when an image of ``width`` x ``height`` is within the resolution limit."""
        box_w, box_h = self.image_box(width, height)
        return width <= box_w and height <= box_h

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, name: str | None = None) -> Profile:
        """Build a profile from configuration keys (the field names); unknown keys fail by name.

        ``max_message_bytes`` may be an integer or a string with a unit ("300 KB" = 300,000 bytes,
        "300 KiB" = 307,200). ``name`` is the default when the mapping has no ``name`` key.
        ``too_big`` is the files' name of ``on_no_fit`` (given both, they must agree).
        """
        known = {f.name for f in dataclasses.fields(cls)} | {TOO_BIG}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ProfileError(
                f"unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
            )
        values = dict(data)
        _too_big(values)
        if name is not None:
            values.setdefault("name", name)
        if "name" not in values:
            raise ProfileError("name: missing")
        if "max_message_bytes" not in values:
            raise ProfileError("max_message_bytes: missing")
        values["max_message_bytes"] = parse_size(values["max_message_bytes"], "max_message_bytes")
        for key, want in _TYPES.items():
            if key in values and not _is(values[key], want):
                raise ProfileError(f"{key}: expected {_WANT_TEXT[want]}, got {values[key]!r}")
        if "allowed_types" in values:
            values["allowed_types"] = tuple(values["allowed_types"])
        return cls(**values)


def parse_size(value: object, key: str = "size") -> int:
    """A byte count from an integer or "300 KB" / "3.5 MB" / "300 KiB" / "500000 B".

    KB and MB are decimal (1000), KiB and MiB binary (1024): carrier documents say "KB" for both,
    so a profile states which it means.
    """
    if isinstance(value, bool):
        raise ProfileError(f"{key}: expected a byte count, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        m = _SIZE.fullmatch(value)
        if m:
            unit = (m.group(2) or "b").lower()
            return int(float(m.group(1)) * _UNITS[unit])
    raise ProfileError(
        f"{key}: expected a byte count (an integer, or a string like '300 KB' or '300 KiB'), "
        f"got {value!r}"
    )


def available_profiles(dirs: Iterable[Path] = PROFILE_DIRS) -> list[str]:
    """Names of the profiles found in ``dirs`` (sorted, without duplicates)."""
    names: set[str] = set()
    for d in dirs:
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.toml"))
    return sorted(names)


def load_profile(name_or_path: str | Path, *, dirs: Sequence[Path] = PROFILE_DIRS) -> Profile:
    """Read a profile: a path to a TOML file, or a name looked up as <dir>/<name>.toml in ``dirs``.

    Every error is a ProfileError that names the file and, for a bad value, the key.
    """
    path = _find(name_or_path, dirs)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ProfileError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from None
    try:
        return Profile.from_mapping(data, name=path.stem)
    except ProfileError as exc:
        raise ProfileError(f"{path}: {exc}") from None
    except TypeError as exc:  # pragma: no cover - from_mapping checks keys and types first
        raise ProfileError(f"{path}: {exc}") from None


def _find(name_or_path: str | Path, dirs: Sequence[Path]) -> Path:
    """The file a profile name or path refers to (ProfileError listing what exists if none)."""
    text = str(name_or_path)
    looks_like_path = (
        isinstance(name_or_path, Path) or "/" in text or "\\" in text or text.endswith(".toml")
    )
    if looks_like_path:
        path = Path(text)
        if not path.is_file():
            raise ProfileError(f"{path}: no such profile file")
        return path
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", text):
        raise ProfileError(f"{text!r} is neither a profile name nor a path to a .toml file")
    for d in dirs:
        candidate = d / f"{text}.toml"
        if candidate.is_file():
            return candidate
    known = available_profiles(dirs)
    raise ProfileError(
        f"no profile named {text!r} in {', '.join(str(d) for d in dirs)} "
        f"(available: {', '.join(known) or 'none'})"
    )


def _too_big(values: dict[str, Any]) -> None:
    """``too_big`` in ``values`` moved to ``on_no_fit`` (checked under its own name)."""
    if TOO_BIG not in values:
        return
    value = values.pop(TOO_BIG)
    _choice(TOO_BIG, value, ON_NO_FIT)
    if "on_no_fit" in values and values["on_no_fit"] != value:
        raise ProfileError(
            f"{TOO_BIG}: {value!r} contradicts on_no_fit = {values['on_no_fit']!r} (on_no_fit "
            f"is the older name of {TOO_BIG}: give one of the two)"
        )
    values["on_no_fit"] = value


def _choice(key: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ProfileError(f"{key}: {value!r} is not one of {', '.join(choices)}")


def _is(value: object, want: type) -> bool:
    if want is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if want is list:
        return isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
    return isinstance(value, want)


#: configuration types checked before the dataclass sees them (so "false" is not taken as True)
_TYPES: dict[str, type] = {
    "name": str,
    "description": str,
    "allowed_types": list,
    "max_image_width": int,
    "max_image_height": int,
    "smil_required": bool,
    "max_parts": int,
    "count": str,
    "soap_allowance_bytes": int,
    "transfer_encoding": str,
    "on_type_mismatch": str,
    "text_charset": str,
    "on_no_fit": str,
    "max_decode_pixels": int,
}
_WANT_TEXT = {
    str: "a string",
    int: "an integer",
    bool: "true/false",
    list: "a list of strings",
}
