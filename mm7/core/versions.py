"""The one table of MM7 schema versions: namespace, allowed MM7Version values, and how types vary.

Every other part of the core (element tables, the XSD generator, the codec, the tests) reads this
table, so adding a version or correcting a fact happens here once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import total_ordering

__all__ = [
    "ALL",
    "LATEST",
    "NAMESPACE_BASE",
    "SOAP_ENV_NS",
    "VERSIONS",
    "Version",
    "get_version",
    "only",
    "since",
    "until",
    "version_for_namespace",
]

NAMESPACE_BASE = "http://www.3gpp.org/ftp/Specs/archive/23_series/23.140/schema/"
SOAP_ENV_NS = "http://schemas.xmlsoap.org/soap/envelope/"


@total_ordering
@dataclass(frozen=True, slots=True)
class Version:
    """One published MM7 schema, e.g. REL-6-MM7-1-4; ordered by (release, revision)."""

    release: int
    revision: int
    mm7_versions: tuple[str, ...]  # the versionType enumeration, newest first (schema order)
    #: "REL-6-MM7-1-4" and the namespace URI, computed once (read on every element written)
    token: str = field(init=False, compare=False)
    namespace: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        token = f"REL-{self.release}-MM7-1-{self.revision}"
        object.__setattr__(self, "token", token)
        object.__setattr__(self, "namespace", NAMESPACE_BASE + token)

    @property
    def default_mm7_version(self) -> str:
        """The MM7Version we emit when the caller does not choose: the newest the schema allows."""
        return self.mm7_versions[0]

    @property
    def key(self) -> tuple[int, int]:
        return (self.release, self.revision)

    @property
    def nmtoken_identifiers(self) -> bool:
        """REL-5-MM7-1-0/1-1 type Number, ShortCode, MessageID, VASPID... as xs:NMTOKEN (no '+')."""
        return self.key < (5, 2)

    @property
    def typed_sender_address(self) -> bool:
        """SenderAddress is plain xs:string up to REL-5-MM7-1-1, an address choice after."""
        return self.key >= (5, 2)

    @property
    def transaction_id_has_soap_attrs(self) -> bool:
        """From REL-5-MM7-1-2 TransactionID allows env:mustUnderstand (earlier: bare NMTOKEN)."""
        return self.key >= (5, 2)

    @property
    def has_extended_operations(self) -> bool:
        return self.key >= (6, 4)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self.key < other.key

    def __str__(self) -> str:
        return self.token


_V5_3 = ("5.3.0",)
VERSIONS: tuple[Version, ...] = (
    Version(5, 0, _V5_3),
    Version(5, 1, _V5_3),
    Version(5, 2, _V5_3),
    Version(5, 3, ("5.6.0", "5.5.0", "5.3.0")),
    Version(5, 4, ("5.8.0", "5.6.0", "5.5.0", "5.3.0")),
    Version(6, 0, ("6.3.0", "5.6.0", "5.5.0", "5.3.0")),
    Version(6, 1, ("6.4.0", "6.3.0", "5.8.0", "5.6.0", "5.5.0", "5.3.0")),
    Version(6, 2, ("6.5.0", "6.4.0", "6.3.0", "5.10.0", "5.8.0", "5.6.0", "5.5.0", "5.3.0")),
    Version(
        6, 3, ("6.6.0", "6.5.0", "6.4.0", "6.3.0", "5.10.0", "5.8.0", "5.6.0", "5.5.0", "5.3.0")
    ),
    Version(
        6,
        4,
        ("6.8.0", "6.6.0", "6.5.0", "6.4.0", "6.3.0", "5.10.0", "5.8.0", "5.6.0", "5.5.0", "5.3.0"),
    ),
)
LATEST = VERSIONS[-1]
_BY_TOKEN = {v.token: v for v in VERSIONS}
_BY_NAMESPACE = {v.namespace: v for v in VERSIONS}


def get_version(token: str) -> Version:
    """Look a version up by token ('REL-6-MM7-1-4') or namespace URI; KeyError names the choices."""
    token = token.strip()
    found = _BY_TOKEN.get(token) or _BY_NAMESPACE.get(token) or _BY_NAMESPACE.get(token.rstrip("/"))
    if found is None:
        raise KeyError(f"unknown MM7 schema version {token!r}; known: {', '.join(_BY_TOKEN)}")
    return found


def version_for_namespace(namespace: str | None) -> Version | None:
    """The version whose namespace URI this is, tolerating a trailing slash; None when unknown."""
    if not namespace:
        return None
    return _BY_NAMESPACE.get(namespace) or _BY_NAMESPACE.get(namespace.rstrip("/"))


def since(token: str) -> frozenset[str]:
    """The tokens of every version from ``token`` on."""
    start = get_version(token)
    return frozenset(v.token for v in VERSIONS if v >= start)


def until(token: str) -> frozenset[str]:
    """The tokens of every version up to and including ``token``."""
    end = get_version(token)
    return frozenset(v.token for v in VERSIONS if v <= end)


def only(*tokens: str) -> frozenset[str]:
    return frozenset(get_version(t).token for t in tokens)


ALL: frozenset[str] = frozenset(v.token for v in VERSIONS)
