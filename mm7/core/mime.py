"""MIME / SOAP-with-Attachments codec for MM7: parse and emit multipart HTTP bodies, sans I/O.

Parsing is lenient in the ways real MMSCs and VASPs need (see ``Leniency``) and strict about bounds
(``Limits``). Bodies are split with ``bytes.find`` on the delimiter, never line by line, so binary
media costs one copy. Malformed input raises ``ParseError`` (MM7 status 2007), never anything else.
"""

from __future__ import annotations

import binascii
import secrets
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote

from mm7.core.errors import EmitError, LimitExceededError, ParseError
from mm7.core.leniency import Leniency
from mm7.core.limits import DEFAULT_LIMITS, Limits

__all__ = [
    "ContentType",
    "Part",
    "SwA",
    "build_multipart",
    "decode_body",
    "encode_body",
    "find_content",
    "make_multipart",
    "make_part",
    "parse_content_type",
    "parse_entity",
    "parse_swa",
    "serialize_part",
]

_XML_TYPES = frozenset(
    {"text/xml", "application/xml", "application/soap+xml", "application/xop+xml"}
)
_SOAP_ROOT_TYPES = frozenset({"text/xml", "application/xop+xml"})  # acceptable type= values
_SMIL_TYPES = frozenset({"application/smil", "application/smil+xml"})
_IDENTITY_CTES = frozenset({"7bit", "8bit", "binary"})
_MANAGED_HEADERS = frozenset(
    {"content-type", "content-transfer-encoding", "content-id", "content-location"}
)
# RFC 2045 tspecials plus space: a parameter value holding any of these must be quoted.
_TSPECIALS = frozenset('()<>@,;:\\"/[]?= \t')
_TOKEN_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_BCHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? ")
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")
_TOKEN_STR = _TOKEN_BYTES.decode("ascii")
_SNIFF = 1024  # bytes looked at to tell bare XML from a multipart body
# Splits base64 text into 76-character lines 64 lines at a time, in C rather than by slicing.
_B64_BLOCK = struct.Struct("76s" * 64)


def _note(leniencies: list[Leniency] | None, item: Leniency) -> None:
    """Record a leniency once, keeping first-seen order."""
    if leniencies is not None and item not in leniencies:
        leniencies.append(item)


# --------------------------------------------------------------------------- Content-Type


@dataclass(frozen=True, slots=True, eq=False)
class ContentType:
    """A parsed Content-Type. Equality ignores ``boundary``, which is wire framing, not content."""

    mime_type: str
    params: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        mime_type = self.mime_type.strip().lower()
        if mime_type != self.mime_type:
            object.__setattr__(self, "mime_type", mime_type)
        for k in self.params:
            if k != k.lower():
                object.__setattr__(self, "params", {k.lower(): v for k, v in self.params.items()})
                break

    def param(self, name: str) -> str | None:
        """The value of parameter ``name`` (case-insensitive), or None."""
        return self.params.get(name.lower())

    def header_value(self) -> str:
        """Serialise as ``type/subtype; k=v; ...``, quoting values that need it (and boundary,
        which some MMSCs accept only quoted)."""
        if not self.params:
            return self.mime_type
        pieces = [self.mime_type]
        for k, v in self.params.items():
            pieces.append(f"{k}={_quote(v, k == 'boundary')}")
        return "; ".join(pieces)

    def _content_params(self) -> dict[str, str]:
        return {k: v for k, v in self.params.items() if k != "boundary"}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ContentType):
            return NotImplemented
        return (
            self.mime_type == other.mime_type and self._content_params() == other._content_params()
        )

    def __hash__(self) -> int:
        return hash((self.mime_type, frozenset(self._content_params().items())))

    def __repr__(self) -> str:
        return f"ContentType({self.header_value()!r})"


def _quote(value: str, always: bool = False) -> str:
    """Quote a parameter value when it is empty or holds tspecials, controls or non-ASCII."""
    plain = bool(value) and value.isascii() and value.isprintable()
    if plain and not always and _TSPECIALS.isdisjoint(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


_TEXT_PLAIN = ContentType("text/plain", {})


def parse_content_type(value: str, leniencies: list[Leniency] | None = None) -> ContentType:
    """Parse a Content-Type value leniently; never raises. Missing or empty means text/plain.

    Tolerates any parameter-name case (PARAM_CASE), quoted or unquoted values, spaces around
    ``=``, folded values (HEADER_FOLDED), stray or trailing ``;`` and unquoted boundaries holding
    characters that need quoting (BOUNDARY_UNQUOTED).
    """
    cached = _CT_CACHE.get(value)
    if cached is not None:
        ct, noted = cached
        for item in noted:
            _note(leniencies, item)
        return ct
    found: list[Leniency] = []
    mime_type, params = _parse_content_type(value, found)
    ct = ContentType(mime_type, params)
    if not mime_type.startswith("multipart/"):  # boundaries make multipart values unique
        if len(_CT_CACHE) >= _CT_CACHE_MAX:
            _CT_CACHE.clear()
        _CT_CACHE[value] = (ct, tuple(found))
    for item in found:
        _note(leniencies, item)
    return ct


# Parsed non-multipart Content-Type values (part types repeat from message to message), shared:
# a ContentType is immutable and its params are read-only.
_CT_CACHE: dict[str, tuple[ContentType, tuple[Leniency, ...]]] = {}
_CT_CACHE_MAX = 512


def _parse_content_type(value: str, lens: list[Leniency]) -> tuple[str, dict[str, str]]:
    if "\r" in value or "\n" in value:
        _note(lens, Leniency.HEADER_FOLDED)
        value = value.replace("\r", "").replace("\n", "")
    semi = value.find(";")
    mime_type = (value if semi < 0 else value[:semi]).strip().strip('"').lower() or "text/plain"
    params: dict[str, str] = {}
    if semi < 0:
        return mime_type, params
    rest = value[semi + 1 :]
    pieces = rest.split('"')
    # Fast path: no escapes and no ';' inside quotes, so every ';' separates parameters.
    if "\\" not in rest and len(pieces) % 2 == 1 and ";" not in "".join(pieces[1::2]):
        for item in rest.split(";"):
            name, eq, val = item.partition("=")
            name = name.strip()
            val = val.strip()
            quoted = val.startswith('"')
            if quoted:
                if len(val) < 2 or val.count('"') != 2 or not val.endswith('"'):
                    break  # text around the quotes: leave it to the full scanner
                val = val[1:-1]
            if eq and name:
                _add_param(params, name, val, quoted, lens)
        else:
            return mime_type, params
        params.clear()
    _parse_params(value, semi + 1, params, lens)
    return mime_type, params


def _parse_params(s: str, i: int, params: dict[str, str], lens: list[Leniency] | None) -> None:
    """Read ``; name=value`` pairs from ``s[i:]`` into ``params``; first occurrence wins."""
    n = len(s)
    while i < n:
        while i < n and s[i] in " \t;":
            i += 1
        if i >= n:
            return
        eq = s.find("=", i)
        semi = s.find(";", i)
        if eq < 0 or 0 <= semi < eq:  # a name without a value: skip it
            i = n if semi < 0 else semi + 1
            continue
        name = s[i:eq].strip()
        j = eq + 1
        while j < n and s[j] in " \t":
            j += 1
        quoted = j < n and s[j] == '"'
        if quoted:
            value, i = _read_quoted(s, j + 1)
            semi = s.find(";", i)
            i = n if semi < 0 else semi + 1
        else:
            semi = s.find(";", j)
            end = n if semi < 0 else semi
            value = s[j:end].strip()
            i = end + 1
        if name:
            _add_param(params, name, value, quoted, lens)


def _add_param(
    params: dict[str, str], name: str, value: str, quoted: bool, lens: list[Leniency] | None
) -> None:
    key = name.lower()
    if key != name:
        _note(lens, Leniency.PARAM_CASE)
    if key == "boundary" and not quoted and value != _quote(value):
        _note(lens, Leniency.BOUNDARY_UNQUOTED)
    params.setdefault(key, value)


def _read_quoted(s: str, i: int) -> tuple[str, int]:
    """Read a quoted-string body starting after its opening quote; unterminated runs to the end."""
    pieces: list[str] = []
    n = len(s)
    while True:
        q = s.find('"', i)
        b = s.find("\\", i)
        if b >= 0 and (q < 0 or b < q):
            pieces.append(s[i:b])
            pieces.append(s[b + 1 : b + 2])
            i = b + 2
            continue
        if q < 0:
            pieces.append(s[i:])
            return "".join(pieces), n
        pieces.append(s[i:q])
        return "".join(pieces), q + 1


# --------------------------------------------------------------------------- Part


@dataclass(frozen=True, slots=True)
class Part:
    """One MIME entity. ``body`` is DECODED bytes (after Content-Transfer-Encoding); a multipart
    part has children and an empty body. Equality ignores wire-only details (raw headers, boundary,
    CTE).
    """

    content_type: ContentType
    body: bytes = b""
    content_id: str | None = None
    content_location: str | None = None
    children: tuple[Part, ...] = ()
    transfer_encoding: str | None = field(default=None, compare=False)
    headers: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def header(self, name: str) -> str | None:
        """The first of the other headers named ``name`` (case-insensitive), or None."""
        key = name.lower()
        for n, v in self.headers:
            if n.lower() == key:
                return v
        return None

    @property
    def is_multipart(self) -> bool:
        """True for multipart/* entities."""
        return self.content_type.mime_type.startswith("multipart/")

    @property
    def charset(self) -> str | None:
        """The charset parameter of the Content-Type, if any."""
        return self.content_type.param("charset")


def _normalise_cid(value: str | None) -> str | None:
    if value is None:
        return None
    v = value.strip()
    if v.startswith("<") and v.endswith(">"):
        v = v[1:-1].strip()
    return v or None


def make_part(
    body: bytes,
    content_type: str | ContentType,
    *,
    content_id: str | None = None,
    content_location: str | None = None,
    transfer_encoding: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
) -> Part:
    """Build a leaf part for emission. ``content_id`` may be given with or without ``<>``."""
    ct = content_type if isinstance(content_type, ContentType) else parse_content_type(content_type)
    for name, _ in headers:
        if name.lower() in _MANAGED_HEADERS:
            raise EmitError(f"header {name!r} is set through its own argument, not headers=")
    return Part(
        content_type=ct,
        body=bytes(body),
        content_id=_normalise_cid(content_id),
        content_location=content_location.strip() if content_location else None,
        transfer_encoding=transfer_encoding.strip().lower() if transfer_encoding else None,
        headers=tuple(headers),
    )


def make_multipart(
    children: Sequence[Part],
    subtype: str = "related",
    *,
    params: Mapping[str, str] | None = None,
    content_id: str | None = None,
    content_location: str | None = None,
) -> Part:
    """Build a multipart/<subtype> part (params e.g. type="application/smil", start="<s>")."""
    return Part(
        content_type=ContentType(f"multipart/{subtype}", dict(params or {})),
        children=tuple(children),
        content_id=_normalise_cid(content_id),
        content_location=content_location.strip() if content_location else None,
    )


# --------------------------------------------------------------------------- transfer encodings


def encode_body(data: bytes, transfer_encoding: str | None) -> bytes:
    """Apply a Content-Transfer-Encoding. Identity and unknown encodings pass bytes through."""
    te = transfer_encoding.strip().lower() if transfer_encoding else None
    if te == "base64":
        if not data:
            return b""
        enc = binascii.b2a_base64(data, newline=False)
        n = len(enc)
        full = n - n % _B64_BLOCK.size
        lines: list[bytes] = []
        for offset in range(0, full, _B64_BLOCK.size):
            lines.extend(_B64_BLOCK.unpack_from(enc, offset))
        lines.extend([enc[i : i + 76] for i in range(full, n, 76)])
        return b"\r\n".join(lines)
    if te == "quoted-printable":
        # Binary mode encodes every CR and LF, so the only line breaks left are soft ones and the
        # round trip is exact for any bytes; text with consistent CRLF keeps readable lines.
        text = b"\r" not in data.replace(b"\r\n", b"") and b"\n" not in data.replace(b"\r\n", b"")
        enc = binascii.b2a_qp(data, quotetabs=False, istext=text, header=False)
        return enc.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return data


def decode_body(data: bytes, transfer_encoding: str | None, leniencies: list[Leniency]) -> bytes:
    """Undo a Content-Transfer-Encoding, tolerating case (CTE_CASE) and unknown names (CTE_UNKNOWN).

    base64 ignores line breaks and characters outside its alphabet (RFC 2045); missing padding
    or data after padding is repaired (BASE64_MALFORMED); only an impossible length raises.
    """
    if transfer_encoding is None:
        return data
    declared = transfer_encoding.strip().strip('"')
    te = declared.lower()
    if te != declared:
        _note(leniencies, Leniency.CTE_CASE)
    if te in _IDENTITY_CTES or not te:
        return data
    if te == "base64":
        return _decode_base64(data, leniencies)
    if te == "quoted-printable":
        return binascii.a2b_qp(data)
    _note(leniencies, Leniency.CTE_UNKNOWN)
    return data


def _decode_base64(data: bytes, leniencies: list[Leniency]) -> bytes:
    # RFC 2045: characters outside the alphabet (line breaks included) are ignored, which the
    # non-strict decoder does. It also stops at the first padding, so data after it is repaired.
    pad = data.find(b"=")
    if pad < 0 or not data[pad:].strip(b"= \t\r\n"):
        try:
            return binascii.a2b_base64(data)
        except binascii.Error:
            pass
    _note(leniencies, Leniency.BASE64_MALFORMED)
    compact = data.translate(None, data.translate(None, _B64_ALPHABET + b"="))
    # Some encoders pad every line; decode each padded run on its own.
    out: list[bytes] = []
    for run in compact.split(b"="):
        if len(run) % 4 == 1:
            raise ParseError(
                f"base64 run of {len(run)} characters cannot be completed by padding",
                where="base64 body",
            )
        if run:
            out.append(binascii.a2b_base64(run + b"=" * (-len(run) % 4)))
    return b"".join(out)


# --------------------------------------------------------------------------- emission


def serialize_part(
    part: Part, *, bracket_content_id: bool = True, boundary: str | None = None
) -> bytes:
    """Serialise one entity: its header block, a blank line and its encoded body.

    A multipart part gets ``boundary`` if given, else its own boundary param, else a random one.
    """
    out: list[bytes] = []
    _emit_entity(part, out, [], bracket_content_id, boundary)
    return b"".join(out)


def build_multipart(
    parts: Sequence[Part],
    *,
    subtype: str = "related",
    params: Mapping[str, str] | None = None,
    boundary: str | None = None,
    bracket_content_id: bool = True,
    transfer_encoding_for: Callable[[str], str | None] | None = None,
) -> tuple[str, bytes]:
    """Build an SwA HTTP body: (Content-Type value with boundary first, then params, body bytes).

    ``transfer_encoding_for(media_type)`` picks the CTE of leaf parts that do not set their own
    (a dialect's choice), without copying the parts.
    """
    ct = ContentType(f"multipart/{subtype}", dict(params or {}))
    out: list[bytes] = []
    chosen = _emit_children(
        parts,
        out,
        [],
        bracket_content_id,
        boundary,
        explicit=bool(boundary),
        cte_for=transfer_encoding_for,
    )
    return _multipart_header_value(ct, chosen), b"".join(out)


def _multipart_header_value(ct: ContentType, boundary: str) -> str:
    """The Content-Type value of a multipart entity: boundary first, then its other params."""
    value = f'{ct.mime_type}; boundary="{boundary}"'
    for k, v in ct.params.items():
        if k != "boundary":
            value += f"; {k}={_quote(v)}"
    return value


def _emit_entity(
    part: Part,
    out: list[bytes],
    bodies: list[bytes],
    bracket: bool,
    boundary: str | None,
    cte_for: Callable[[str], str | None] | None = None,
) -> None:
    """Append ``part`` (headers, blank line, body) to ``out``; leaf bodies also go to ``bodies``."""
    slot = len(out)
    out.append(b"")  # header block, filled in once the body is out
    te = part.transfer_encoding
    ct = part.content_type
    if ct.mime_type.startswith("multipart/") and (part.children or not part.body):
        if te and te.lower() not in _IDENTITY_CTES:
            raise EmitError(f"a multipart entity cannot use Content-Transfer-Encoding {te!r}")
        reuse = boundary or ct.params.get("boundary")
        chosen = _emit_children(
            part.children, out, bodies, bracket, reuse, explicit=bool(boundary), cte_for=cte_for
        )
        head = "Content-Type: " + _multipart_header_value(ct, chosen)
    else:
        if te is None and cte_for is not None:
            te = cte_for(ct.mime_type)
        encoded = encode_body(part.body, te) if te else part.body
        out.append(encoded)
        bodies.append(encoded)
        head = "Content-Type: " + ct.header_value()
    lines = [head]
    if te:
        lines.append("Content-Transfer-Encoding: " + te)
    if part.content_id is not None:
        lines.append(
            f"Content-ID: <{part.content_id}>" if bracket else "Content-ID: " + part.content_id
        )
    if part.content_location is not None:
        lines.append("Content-Location: " + part.content_location)
    for name, value in part.headers:
        low = name.lower()
        if low in _MANAGED_HEADERS:
            continue
        if low == "content-length":  # say the length actually sent, not a stale one
            value = str(sum(len(piece) for piece in out[slot + 1 :]))
        if not name or name.strip(_TOKEN_STR):
            raise EmitError(f"header name {name!r} is not a token")
        lines.append(f"{name}: {value}")
    block = "\r\n".join(lines)
    if block.count("\n") != len(lines) - 1 or block.count("\r") != len(lines) - 1:
        raise EmitError(f"a header of the {ct.mime_type} part holds a line break: {lines!r}")
    out[slot] = (block + "\r\n\r\n").encode("utf-8")


def _new_boundary() -> str:
    return "mm7-" + secrets.token_hex(12)


def _valid_boundary(boundary: str) -> bool:
    """RFC 2046: 1 to 70 bchars, not ending in a space."""
    return 0 < len(boundary) <= 70 and not boundary.endswith(" ") and _BCHARS.issuperset(boundary)


def _emit_children(
    children: Sequence[Part],
    out: list[bytes],
    bodies: list[bytes],
    bracket: bool,
    boundary: str | None,
    *,
    explicit: bool,
    cte_for: Callable[[str], str | None] | None = None,
) -> str:
    """Append a multipart body to ``out``; returns the boundary used.

    A fresh random boundary (96 bits) cannot occur in the bodies, so only a given or reused one is
    searched for: a given one that occurs is an EmitError, a reused one is replaced.
    """
    if boundary is not None and not _valid_boundary(boundary):
        if explicit:
            raise EmitError(f"boundary {boundary!r} is not a valid RFC 2046 boundary")
        boundary = None
    out_mark, bodies_mark = len(out), len(bodies)
    chosen = boundary or _new_boundary()
    while True:
        delim = b"--" + chosen.encode("ascii")
        for i, child in enumerate(children):
            out.append((b"\r\n" + delim + b"\r\n") if i else (delim + b"\r\n"))
            _emit_entity(child, out, bodies, bracket, None, cte_for)
        out.append((b"\r\n" + delim + b"--\r\n") if children else (delim + b"--\r\n"))
        if boundary is None or not any(delim in body for body in bodies[bodies_mark:]):
            return chosen
        if explicit:
            raise EmitError(f"boundary {chosen!r} occurs inside a part body")
        del out[out_mark:]
        del bodies[bodies_mark:]
        boundary = None
        chosen = _new_boundary()


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True, slots=True)
class SwA:
    """The HTTP body of an MM7 message, split into its SOAP envelope and the other parts."""

    soap: bytes
    soap_charset: str | None
    parts: tuple[Part, ...]
    leniencies: tuple[Leniency, ...]


class _State:
    """Running totals for one parse, checked against the limits as parts are found."""

    __slots__ = ("limits", "lens", "parts", "decoded")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.lens: list[Leniency] = []
        self.parts = 0
        self.decoded = 0

    def count_decoded(self, n: int, where: str) -> None:
        self.decoded += n
        if self.decoded > self.limits.max_decoded_bytes:
            raise LimitExceededError(
                f"decoded bodies total {self.decoded} bytes, over "
                f"max_decoded_bytes={self.limits.max_decoded_bytes}",
                where=where,
            )

    def snapshot(self) -> tuple[int, int, int]:
        return self.parts, self.decoded, len(self.lens)

    def restore(self, snap: tuple[int, int, int]) -> None:
        self.parts, self.decoded, n = snap
        del self.lens[n:]


def _check_total(body: bytes, limits: Limits) -> None:
    if len(body) > limits.max_total_bytes:
        raise LimitExceededError(
            f"body is {len(body)} bytes, over max_total_bytes={limits.max_total_bytes}",
            where="HTTP body",
        )


def _sniff(body: bytes) -> bytes:
    """The start of ``body`` without byte-order mark and leading whitespace."""
    head = body[:_SNIFF]
    for bom in _BOMS:
        if head.startswith(bom):
            head = head[len(bom) :]
            break
    return head.lstrip(b" \t\r\n\x00")


def parse_swa(body: bytes, content_type: str | None, limits: Limits = DEFAULT_LIMITS) -> SwA:
    """Split an MM7 HTTP body into the SOAP envelope and the remaining top-level parts.

    Accepts bare XML (Cancel, reports, responses) and multipart bodies with the deviations named
    in ``Leniency``; raises ParseError when no envelope is found, LimitExceededError over bounds.
    """
    _check_total(body, limits)
    st = _State(limits)
    ct = parse_content_type(content_type, st.lens) if content_type is not None else None
    head = _sniff(body)
    if not head:
        raise ParseError(
            "empty body: expected a SOAP envelope or a multipart body", where="HTTP body"
        )
    where = "MIME multipart body"
    if ct is not None and ct.mime_type.startswith("multipart/"):
        boundary = ct.param("boundary")
        if head.startswith(b"<") and (
            not boundary or _first_delimiter(body, 0, len(body), _delim(boundary)) is None
        ):
            _note(st.lens, Leniency.MULTIPART_BUT_BARE_XML)
            return SwA(body, ct.param("charset"), (), tuple(st.lens))
        parts = _parse_multipart(body, 0, len(body), boundary, where, "", 1, st)
    elif head.startswith(b"--"):
        _note(st.lens, Leniency.HEADERLESS_BODY)
        parts = _parse_multipart(body, 0, len(body), None, where, "", 1, st, headerless=True)
        ct = None
    elif head.startswith(b"<"):
        if ct is None or ct.mime_type not in ("text/xml", "application/xml"):
            _note(st.lens, Leniency.BARE_XML_NO_MULTIPART)
        return SwA(body, ct.param("charset") if ct else None, (), tuple(st.lens))
    else:
        declared = ct.mime_type if ct else "no Content-Type"
        raise ParseError(
            f"expected a SOAP envelope ('<') or a multipart body ('--'), got {declared} "
            f"starting {head[:16]!r}",
            where="HTTP body",
        )
    if not parts:
        raise ParseError("multipart body holds no parts: expected a SOAP part", where="HTTP body")
    soap_index = _resolve_start(parts, ct, st.lens)
    soap = parts[soap_index]
    rest = parts[:soap_index] + parts[soap_index + 1 :]
    return SwA(soap.body, soap.charset, tuple(rest), tuple(st.lens))


def _resolve_start(parts: list[Part], ct: ContentType | None, lens: list[Leniency]) -> int:
    """Index of the SOAP part: the ``start`` param, else the first XML part, else the first part."""
    related = ct is not None and ct.mime_type == "multipart/related"
    if ct is not None and not related:
        _note(lens, Leniency.MULTIPART_NOT_RELATED)
    if related and ct is not None:
        type_ = ct.param("type")
        if type_ is None:
            _note(lens, Leniency.TYPE_MISSING)
        elif type_.strip().lower() not in _SOAP_ROOT_TYPES:
            _note(lens, Leniency.TYPE_WRONG)
    start = ct.param("start") if ct is not None else None
    if start is not None:
        s = start.strip()
        bracketed = s.startswith("<") and s.endswith(">")
        key = _normalise_cid(s)
        for i, p in enumerate(parts):
            if key is not None and p.content_id == key and not p.is_multipart:
                if not bracketed:
                    _note(lens, Leniency.START_UNBRACKETED)
                return i
        _note(lens, Leniency.START_UNRESOLVED)
    elif related:
        _note(lens, Leniency.START_MISSING)
    for i, p in enumerate(parts):
        if p.content_type.mime_type in _XML_TYPES:
            return i
    for i, p in enumerate(parts):
        if not p.is_multipart:
            return i
    raise ParseError("every top-level part is multipart: expected a SOAP part", where="HTTP body")


def parse_entity(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> tuple[Part, list[Leniency]]:
    """Parse a MIME entity that starts with its own header block (e.g. a saved message file).

    A file that starts with ``--`` is read as a multipart body with no headers (HEADERLESS_BODY)
    and comes back as a multipart/mixed part.
    """
    _check_total(raw, limits)
    st = _State(limits)
    end = len(raw)
    if raw.lstrip(b" \t\r\n")[:2] == b"--":
        _note(st.lens, Leniency.HEADERLESS_BODY)
        children = _parse_multipart(
            raw, 0, end, None, "MIME entity body", "", 1, st, headerless=True
        )
        return Part(ContentType("multipart/mixed", {}), children=tuple(children)), st.lens
    headers, body_start = _parse_headers(raw, 0, end, "MIME entity", st, b"")
    ct, cid, location, te, cte, others = _classify(headers, st.lens)
    if ct.mime_type.startswith("multipart/"):
        children = _parse_multipart(
            raw, body_start, end, ct.param("boundary"), "MIME entity body", "", 1, st
        )
        return Part(ct, b"", cid, location, tuple(children), te, others), st.lens
    try:
        body = decode_body(raw[body_start:], cte, st.lens)
    except ParseError as exc:
        raise ParseError(str(exc), where="MIME entity") from None
    st.count_decoded(len(body), "MIME entity")
    return Part(ct, body, cid, location, (), te, others), st.lens


def _delim(boundary: str) -> bytes:
    return b"--" + boundary.encode("utf-8", "surrogateescape")


# A checked delimiter line: (index after the line, is_close, had_trailing_space, lf_only).
_Delimiter = tuple[int, bool, bool, bool]


def _delimiter_at(buf: bytes, i: int, end: int, dash: bytes) -> _Delimiter | None:
    """Check that ``dash`` at ``i`` starts a delimiter line; None when the line goes on with other
    text (a longer boundary, or data that merely starts with it)."""
    j = i + len(dash)
    close = buf.startswith(b"--", j, end)
    if close:
        j += 2
    k = j
    while k < end and buf[k] in (32, 9):
        k += 1
    space = k > j
    if k >= end:
        return end, close, space, False
    c = buf[k]
    if c == 13 and k + 1 < end and buf[k + 1] == 10:
        return k + 2, close, space, False
    if c == 10:
        return k + 1, close, space, True
    if close:  # "--b--" followed by epilogue text on the same line
        nl = buf.find(b"\n", k, end)
        return (end if nl < 0 else nl + 1), True, space, False
    return None


def _first_delimiter(
    buf: bytes, start: int, end: int, dash: bytes
) -> tuple[int, _Delimiter] | None:
    """The first delimiter line that starts a line in ``buf[start:end]``, with its index."""
    i = start
    while True:
        i = buf.find(dash, i, end)
        if i < 0:
            return None
        if i == start or buf[i - 1] == 10:
            d = _delimiter_at(buf, i, end, dash)
            if d is not None:
                return i, d
        i += 1


def _next_delimiter(
    buf: bytes, frm: int, end: int, dash: bytes, nl_dash: bytes
) -> tuple[int, _Delimiter | None]:
    """The next delimiter line after a line break at or after ``frm``: (index of that LF, line).

    ``nl_dash`` is ``b"\\n" + dash``."""
    k = frm
    while True:
        k = buf.find(nl_dash, k, end)
        if k < 0:
            return -1, None
        d = _delimiter_at(buf, k + 1, end, dash)
        if d is not None:
            return k, d
        k += 1


def _boundary_from_body(buf: bytes, start: int, end: int) -> str | None:
    """The boundary named by the first line that starts with ``--``, if any."""
    i = start
    while i < end and buf[i] in b" \t\r\n":
        i += 1
    if not buf.startswith(b"--", i, end):
        i = buf.find(b"\n--", start, end)
        if i < 0:
            return None
        i += 1
    nl = buf.find(b"\n", i, end)
    line = buf[i + 2 : end if nl < 0 else nl].rstrip(b" \t\r")
    if line.endswith(b"--") and len(line) > 2:  # the first delimiter is already the close one
        line = line[:-2]
    return line.decode("utf-8", "surrogateescape") if line else None


def _body_end(buf: bytes, body_start: int, k: int, lens: list[Leniency]) -> int:
    """End of a body whose delimiter's line break is at ``k``: the CRLF (or LF) belongs to it."""
    if k <= body_start:
        return body_start
    if buf[k - 1] == 13:
        return k - 1
    _note(lens, Leniency.LF_LINE_ENDINGS)
    return k


def _parse_multipart(
    buf: bytes,
    start: int,
    end: int,
    boundary: str | None,
    where: str,
    path: str,
    depth: int,
    st: _State,
    *,
    headerless: bool = False,
    stream: bool = True,
) -> list[Part]:
    """Parse the body of a multipart entity in ``buf[start:end]`` at nesting ``depth``."""
    result = _multipart(
        buf, start, end, boundary, where, path, depth, st, headerless=headerless, stream=stream
    )
    if result is None:  # pragma: no cover - only a parse with a parent gives up
        raise ParseError("multipart body could not be parsed", where=where)
    return result[0]


def _multipart(
    buf: bytes,
    start: int,
    end: int,
    boundary: str | None,
    where: str,
    path: str,
    depth: int,
    st: _State,
    *,
    headerless: bool = False,
    parent: bytes | None = None,
    stream: bool = True,
) -> tuple[list[Part], int] | None:
    """Parse a multipart body at ``start``; returns its parts and the index after its close line.

    With ``parent`` (the enclosing entity's delimiter) the body's end is not known yet: the parse
    streams to this entity's own close delimiter, so the bytes of a nested entity are scanned
    once. It returns None, for the caller to bound the body and parse again, rather than guess
    when the entity does not close cleanly. ``stream`` allows nested entities to stream.
    """
    lens = st.lens
    if depth > st.limits.max_depth:
        raise LimitExceededError(
            f"multipart nesting depth {depth} is over max_depth={st.limits.max_depth}",
            where=where,
        )
    dash = _delim(boundary) if boundary else b""
    found = _first_delimiter(buf, start, end, dash) if dash else None
    if parent is not None and (found is None or buf.find(parent, start - 1, found[0]) >= 0):
        return None
    if found is None:
        guessed = _boundary_from_body(buf, start, end)
        if guessed is not None:
            dash = _delim(guessed)
            found = _first_delimiter(buf, start, end, dash)
        if found is None:
            if not buf[start:end].strip():
                return [], end
            raise ParseError(
                f"expected a delimiter line '--{boundary or '<boundary>'}', found none",
                where=where,
            )
        if not headerless:
            _note(lens, Leniency.BOUNDARY_FROM_BODY)
    first, d = found
    if first > start and buf[start:first].strip():
        _note(lens, Leniency.PREAMBLE)
    prefix = f"{path}." if path else ""
    nl_dash = b"\n" + dash
    max_parts = st.limits.max_parts
    parts: list[Part] = []
    while True:
        after, close, space, lf = d
        if space:
            _note(lens, Leniency.DELIMITER_TRAILING_SPACE)
        if lf:
            _note(lens, Leniency.LF_LINE_ENDINGS)
        if close:
            return parts, after
        s = after
        number = f"{prefix}{len(parts) + 1}"
        pwhere = f"MIME part {number}"
        st.parts += 1
        if st.parts > max_parts:
            raise LimitExceededError(f"more than max_parts={max_parts} MIME parts", where=where)
        headers, body_start = _parse_headers(buf, s, end, pwhere, st, dash)
        ct, cid, location, te, cte, others = _classify(headers, lens)
        if ct.mime_type.startswith("multipart/"):
            inner = ct.param("boundary")
            nested = None
            if stream:
                snap = st.snapshot()
                nested = _multipart(
                    buf,
                    body_start,
                    end,
                    inner,
                    f"{pwhere} body",
                    number,
                    depth + 1,
                    st,
                    parent=nl_dash,
                )
                if nested is None:
                    st.restore(snap)
            if nested is not None:
                children, inner_end = nested
                k, nd = _next_delimiter(buf, inner_end - 1, end, dash, nl_dash)  # only the epilogue
                if nd is None and parent is not None:
                    return None
            else:
                k, nd = _next_delimiter(buf, body_start - 1, end, dash, nl_dash)
                if nd is None and parent is not None:
                    return None
                e = end if nd is None else _body_end(buf, body_start, k, lens)
                children = _parse_multipart(
                    buf,
                    body_start,
                    e,
                    inner,
                    f"{pwhere} body",
                    number,
                    depth + 1,
                    st,
                    stream=False,
                )
            part = Part(ct, b"", cid, location, tuple(children), te, others)
        else:
            k, nd = _next_delimiter(buf, body_start - 1, end, dash, nl_dash)
            if nd is None:
                if parent is not None:
                    return None
                e = end
                if buf.endswith(b"\n", body_start, e):
                    e -= 2 if buf.endswith(b"\r\n", body_start, e) else 1
            else:
                e = _body_end(buf, body_start, k, lens)
            if te is None or (te in _IDENTITY_CTES and te == cte):
                body = buf[body_start:e]
            else:
                try:
                    body = decode_body(buf[body_start:e], cte, lens)
                except ParseError as exc:
                    raise ParseError(str(exc), where=pwhere) from None
            st.count_decoded(len(body), pwhere)
            part = Part(ct, body, cid, location, (), te, others)
        if nd is None:
            _note(lens, Leniency.MISSING_CLOSE_DELIMITER)
            if headers or part.body or part.children or buf[s:end].strip():
                parts.append(part)
            else:
                st.parts -= 1  # only whitespace after the last delimiter: no part there
            return parts, end
        parts.append(part)
        d = nd


def _decode_header(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _parse_headers(
    buf: bytes, start: int, end: int, where: str, st: _State, dash: bytes
) -> tuple[list[tuple[str, str]], int]:
    """Read a header block at ``start``; returns the unfolded headers and where the body starts.

    The block ends at a blank line, at a delimiter line ``dash`` (a part with no body), or
    (NO_BLANK_LINE) at the first line that is not a header.
    """
    limit = st.limits.max_header_bytes
    headers: list[tuple[str, str]] = []
    # Fast path: a CRLF block of plain "Name: value" lines ending in a blank line. A line starting
    # with "--" may be a delimiter (boundaries may hold ':'), which only the slow path checks.
    stop = buf.find(b"\r\n\r\n", start, min(end, start + limit + 4))
    if stop > start and not buf.startswith(b"--", start) and buf.find(b"\n--", start, stop) < 0:
        for text in _decode_header(buf[start:stop]).split("\r\n"):
            key, sep, val = text.partition(":")
            if not sep or not key or key.strip(_TOKEN_STR) or "\n" in text or "\r" in text:
                headers.clear()
                break
            headers.append((key, val.strip()))
        else:
            return headers, stop + 4
    lens = st.lens
    pos = start
    while pos < end:
        if dash and buf.startswith(dash, pos, end) and _delimiter_at(buf, pos, end, dash):
            return headers, pos
        nl = buf.find(b"\n", pos, end)
        line_end = end if nl < 0 else nl
        nxt = end if nl < 0 else nl + 1
        line = buf[pos : min(line_end, pos + limit + 1)]
        lf = nl >= 0 and not line.endswith(b"\r")
        line = line.rstrip(b"\r")
        if not line.strip(b" \t"):
            if lf:
                _note(lens, Leniency.LF_LINE_ENDINGS)
            return headers, nxt
        if line[0] in b" \t":
            if not headers:
                _note(lens, Leniency.NO_BLANK_LINE)
                return headers, pos
            _note(lens, Leniency.HEADER_FOLDED)
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {_decode_header(line.strip())}".strip())
        else:
            colon = line.find(b":")
            name_b = line[:colon].rstrip(b" \t") if colon > 0 else b""
            if not name_b or name_b.translate(None, _TOKEN_BYTES):
                _note(lens, Leniency.NO_BLANK_LINE)
                return headers, pos
            headers.append((name_b.decode("ascii"), _decode_header(line[colon + 1 :].strip())))
        if nxt - start > limit:
            raise LimitExceededError(
                f"header block is over max_header_bytes={limit} ({nxt - start} bytes read)",
                where=f"{where} headers",
            )
        if lf:
            _note(lens, Leniency.LF_LINE_ENDINGS)
        pos = nxt
    return headers, end


def _classify(
    headers: list[tuple[str, str]], lens: list[Leniency]
) -> tuple[
    ContentType, str | None, str | None, str | None, str | None, tuple[tuple[str, str], ...]
]:
    """Pick out (content type, Content-ID, Content-Location, CTE lower-cased, CTE as declared,
    other headers) from a part's headers; the first of each wins."""
    ct: ContentType | None = None
    cte: str | None = None
    cid: str | None = None
    location: str | None = None
    others: list[tuple[str, str]] = []
    for name, value in headers:
        key = name.lower()
        if key == "content-type":
            if ct is None:
                ct = parse_content_type(value, lens)
        elif key == "content-transfer-encoding":
            if cte is None:
                cte = value
        elif key == "content-id":
            if name != "Content-ID":
                _note(lens, Leniency.CONTENT_ID_SPELLING)
            v = value.strip()
            if cid is None and v:
                if not (v.startswith("<") and v.endswith(">")):
                    _note(lens, Leniency.CONTENT_ID_UNBRACKETED)
                cid = _normalise_cid(v)
        elif key == "content-location":
            if location is None:
                location = value.strip() or None
        else:
            others.append((name, value))
    te = (cte.strip().strip('"').lower() or None) if cte else None
    return ct or _TEXT_PLAIN, cid, location, te, cte, tuple(others)


# --------------------------------------------------------------------------- Content reference


def find_content(
    parts: Sequence[Part], href: str | None, leniencies: list[Leniency]
) -> Part | None:
    """The part an MM7 ``Content href`` names, resolving the ways real peers write it.

    href=None (no Content element) yields the only part, or all parts as one synthetic
    multipart/related. A resolved leaf part with non-XML siblings (media flattened into the
    top level) yields one synthetic multipart/related holding it and them (CONTENT_FLATTENED).
    """
    if href is None:
        if not parts:
            return None
        _note(leniencies, Leniency.CONTENT_ELEMENT_MISSING)
        if len(parts) == 1:
            return parts[0]
        _note(leniencies, Leniency.CONTENT_FLATTENED)
        return make_multipart(parts, "related")
    key = href.strip()
    if key[:4].lower() == "cid:":
        rest = key[4:]
        if rest[:1].isspace():
            _note(leniencies, Leniency.HREF_CID_SPACE)
        key = rest.strip()
    else:
        _note(leniencies, Leniency.HREF_NO_CID)
    if key.startswith("<") and key.endswith(">"):
        _note(leniencies, Leniency.HREF_FULL_CONTENT_ID)
        key = key[1:-1].strip()
    found = _match(parts, key)
    if found is None and "%" in key:  # RFC 2392 cid URLs are %-encoded
        found = _match(parts, unquote(key))
    if found is None:
        for p in parts:
            if p.content_location is not None and p.content_location == key:
                _note(leniencies, Leniency.HREF_CONTENT_LOCATION)
                found = p
                break
    if found is None:
        for p in parts:
            if p.content_type.mime_type not in _XML_TYPES:
                _note(leniencies, Leniency.HREF_UNRESOLVED)
                return p
        return None
    media = [p for p in parts if p is found or p.content_type.mime_type not in _XML_TYPES]
    if found.is_multipart or len(media) < 2:
        return found
    _note(leniencies, Leniency.CONTENT_FLATTENED)
    params: dict[str, str] = {}
    if found.content_type.mime_type in _SMIL_TYPES:
        params["type"] = found.content_type.mime_type
        if found.content_id is not None:
            params["start"] = f"<{found.content_id}>"
    return make_multipart(media, "related", params=params)


def _match(parts: Sequence[Part], key: str) -> Part | None:
    for p in parts:
        if p.content_id is not None and p.content_id == key:
            return p
    return None
