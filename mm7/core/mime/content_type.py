"""Content-Type values: the ``ContentType`` value and its lenient parser.

Part types repeat from message to message, so parsed non-multipart values are cached.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mm7.core.leniency import Leniency
from mm7.core.mime.common import note

__all__ = ["ContentType", "parse_content_type"]

# RFC 2045 tspecials plus space: a parameter value holding any of these must be quoted.
_TSPECIALS = frozenset('()<>@,;:\\"/[]?= \t')


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
            pieces.append(f"{k}={quote_param(v, k == 'boundary')}")
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


def quote_param(value: str, always: bool = False) -> str:
    """Quote a parameter value when it is empty or holds tspecials, controls or non-ASCII."""
    plain = bool(value) and value.isascii() and value.isprintable()
    if plain and not always and _TSPECIALS.isdisjoint(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


TEXT_PLAIN = ContentType("text/plain", {})


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
            note(leniencies, item)
        return ct
    found: list[Leniency] = []
    mime_type, params = _parse_content_type(value, found)
    ct = ContentType(mime_type, params)
    if not mime_type.startswith("multipart/"):  # boundaries make multipart values unique
        if len(_CT_CACHE) >= _CT_CACHE_MAX:
            _CT_CACHE.clear()
        _CT_CACHE[value] = (ct, tuple(found))
    for item in found:
        note(leniencies, item)
    return ct


# Parsed non-multipart Content-Type values (part types repeat from message to message), shared:
# a ContentType is immutable and its params are read-only.
_CT_CACHE: dict[str, tuple[ContentType, tuple[Leniency, ...]]] = {}
_CT_CACHE_MAX = 512


def _parse_content_type(value: str, lens: list[Leniency]) -> tuple[str, dict[str, str]]:
    if "\r" in value or "\n" in value:
        note(lens, Leniency.HEADER_FOLDED)
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
        note(lens, Leniency.PARAM_CASE)
    if key == "boundary" and not quoted and value != quote_param(value):
        note(lens, Leniency.BOUNDARY_UNQUOTED)
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
