"""Who is calling the inbound endpoint: HTTP Basic, IP allow-list and mutual TLS, per peer.

An MMSC (the peer) is recognised by the checks its ``PeerAuth`` configures; every configured check
must pass (a peer with Basic and an allow-list needs the right password *and* an allowed address).
Several peers may share one endpoint: the first whose checks all pass is the caller. A request
no peer accepts is refused with MM7 status 4001; HTTP 401 with a ``WWW-Authenticate: Basic``
challenge when a password would have let it in, HTTP 403 otherwise (address or certificate).

aiohttp 3.14 has no server-side Basic-auth middleware (``DigestAuthMiddleware`` is a client
middleware, and the ``BasicAuth`` helper is deprecated for removal in 4.0), so ``auth_middleware``
and the header parser are written here. Passwords are compared in constant time and never logged;
neither is the Authorization header.

Mutual TLS happens in the TLS layer: ``server_ssl_context`` builds a server context that requires
(or, with ``require_client_cert=False``, requests) a client certificate and verifies it against
the given CA bundle. ``ClientCertRule`` then says which verified certificates a peer accepts (by
subject or common name, by subject alternative name (DNS and URI entries), and optionally by
issuing CA when one listener trusts several CAs), and the subject of the certificate reaches
handlers in ``PeerIdentity.cert_subject``. A certificate whose subject carries several common
names that disagree is refused by every certificate rule: which of them names the caller would
depend on who reads it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from os import PathLike
from typing import Protocol

import structlog
from aiohttp import hdrs, web
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

__all__ = [
    "PEER_IDENTITY",
    "AuthFailure",
    "BasicCredentials",
    "ClientCertRule",
    "NamedAuth",
    "Network",
    "PeerAuth",
    "PeerIdentity",
    "Presented",
    "Refusal",
    "RefusalRenderer",
    "address_allowed",
    "auth_middleware",
    "authenticate",
    "cert_subject",
    "check",
    "normalise_san",
    "decode_basic",
    "identify",
    "log_refusal",
    "parse_address",
    "peer_certificate",
    "plain_refusal",
    "server_ssl_context",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
StrPath = str | PathLike[str]

log = structlog.get_logger("mm7.transport.inbound_auth")


@dataclass(frozen=True, slots=True)
class BasicCredentials:
    """The user name and password a peer must send with HTTP Basic (RFC 7617, UTF-8)."""

    username: str
    password: str = field(repr=False)

    def matches(self, username: bytes, password: bytes) -> bool:
        """Whether the decoded credentials are these; constant time over both fields."""
        user_ok = hmac.compare_digest(username, self.username.encode("utf-8"))
        pass_ok = hmac.compare_digest(password, self.password.encode("utf-8"))
        return user_ok & pass_ok


def normalise_san(entry: str) -> str:
    """A rule's subject alternative name as matched: ``DNS:name`` or ``URI:uri``.

    The type prefix is case-insensitive; a DNS name is lowercased and loses a trailing dot (DNS
    names compare case-insensitively), and may start with a ``*.`` wildcard label standing for
    exactly one label (``DNS:*.carrier.example`` matches ``mmsc1.carrier.example``, neither
    ``carrier.example`` nor ``a.b.carrier.example``) under a name of at least two labels. A URI is
    kept exactly as written and compared exactly (``URI:spiffe://carrier/mmsc1``).

    Raises ValueError saying what is wrong with ``entry``.
    """
    kind, colon, value = entry.partition(":")
    kind = kind.strip().upper()
    value = value.strip()
    if not colon or kind not in ("DNS", "URI"):
        raise ValueError(f"expected DNS:name or URI:uri, got {entry!r}")
    if not value:
        raise ValueError(f"{kind}: needs a value")
    if kind == "URI":
        if any(ch.isspace() for ch in value) or ":" not in value:
            raise ValueError(f"not an absolute URI: {value!r}")
        return f"URI:{value}"
    name = value.lower().removesuffix(".")
    if not name.isascii():
        raise ValueError(f"DNS names are written in ASCII (xn-- for IDNs), got {value!r}")
    labels = name.split(".")
    wildcard = labels[0] == "*"
    rest = labels[1:] if wildcard else labels
    if wildcard and len(rest) < 2:
        raise ValueError(f"a wildcard needs at least two labels after '*.', got {value!r}")
    if any(not label or "*" in label for label in rest) or ("*" in labels[0] and not wildcard):
        raise ValueError(f"not a DNS name (a wildcard is only a whole leftmost '*'): {value!r}")
    return f"DNS:{name}"


@dataclass(frozen=True, slots=True)
class ClientCertRule:
    """Mutual TLS for a peer: a client certificate must have been presented and verified.

    The TLS layer (``server_ssl_context``) verifies the chain against its CA bundle; this rule
    narrows which verified certificates the peer accepts. ``subjects``: RFC 4514 subject strings
    (``CN=mmsc1,O=Carrier``) or bare common names. ``sans``: subject alternative names as
    ``normalise_san`` writes them (``DNS:mmsc1.carrier.example``, ``URI:spiffe://carrier/mmsc1``),
    matched against the DNS and URI entries of the certificate's SAN extension. A certificate is
    the peer's when its subject or one of its SANs is listed; both empty accepts any verified
    certificate. ``issuers``: CA certificates one of which must have signed the client certificate
    directly; empty leaves that to the TLS layer (useful when one listener trusts several
    carriers' CAs).
    """

    subjects: frozenset[str] = frozenset()
    issuers: tuple[x509.Certificate, ...] = ()
    sans: frozenset[str] = frozenset()

    @classmethod
    def from_files(
        cls,
        subjects: Iterable[str] = (),
        issuers: Iterable[StrPath] = (),
        sans: Iterable[str] = (),
    ) -> ClientCertRule:
        """A rule whose issuing CAs are read from PEM files; ``sans`` go through
        ``normalise_san`` (ValueError names a bad one)."""
        names = frozenset(normalise_san(entry) for entry in sans)
        cas: list[x509.Certificate] = []
        for path in issuers:
            with open(path, "rb") as fh:
                cas.extend(x509.load_pem_x509_certificates(fh.read()))
        return cls(frozenset(subjects), tuple(cas), names)

    def names_match(self, cert: x509.Certificate) -> bool:
        """Whether ``cert``'s subject, a common name or a SAN is listed (or nothing is)."""
        if not self.subjects and not self.sans:
            return True
        if self.subjects and (
            cert_subject(cert) in self.subjects or _common_names(cert) & self.subjects
        ):
            return True
        return bool(self.sans) and any(
            _san_matches(pattern, name) for name in _certificate_sans(cert) for pattern in self.sans
        )


@dataclass(frozen=True, slots=True)
class PeerAuth:
    """The checks one peer must pass; all configured ones must pass. No checks: anyone."""

    basic: BasicCredentials | None = None
    #: source addresses allowed (CIDR, IPv4 and IPv6); empty: any address
    networks: tuple[Network, ...] = ()
    client_cert: ClientCertRule | None = None
    #: realm of the WWW-Authenticate challenge
    realm: str = "MM7"

    @classmethod
    def of(
        cls,
        *,
        basic: tuple[str, str] | None = None,
        allow: Iterable[str] = (),
        client_cert: ClientCertRule | None = None,
        realm: str = "MM7",
    ) -> PeerAuth:
        """Build from plain values: ``basic=(user, password)``, ``allow=["10.0.0.0/8", "::1"]``.

        Raises ValueError naming a network that is not valid CIDR.
        """
        networks = tuple(ipaddress.ip_network(n.strip(), strict=False) for n in allow)
        creds = BasicCredentials(*basic) if basic is not None else None
        return cls(creds, networks, client_cert, realm)

    @property
    def is_open(self) -> bool:
        """True when nothing is checked: every caller is this peer."""
        return self.basic is None and not self.networks and self.client_cert is None


class AuthFailure(StrEnum):
    """Why one peer's checks refused a request (logged; never sent to the caller)."""

    BASIC_MISSING = "basic-missing"  # no (readable) Authorization: Basic header
    BASIC_WRONG = "basic-wrong"  # user name or password wrong
    ADDRESS_NOT_ALLOWED = "address-not-allowed"  # source address outside the allow-list
    CERT_MISSING = "cert-missing"  # no verified client certificate (no TLS, or none sent)
    CERT_SUBJECT = "cert-subject"  # neither subject, common name nor SAN in the peer's lists
    CERT_CN_CONFLICT = "cert-cn-conflict"  # several common names in the subject that disagree
    CERT_ISSUER = "cert-issuer"  # certificate not issued by one of the peer's CAs


@dataclass(frozen=True, slots=True)
class Presented:
    """What a request presented: source address, Authorization header, client certificate.

    Built from an aiohttp request with ``from_request``; kept separate so the checks are plain
    functions of data.
    """

    remote: str | None = None
    authorization: str | None = field(default=None, repr=False)
    #: DER of the client certificate the TLS layer verified; None without TLS or certificate
    peer_cert_der: bytes | None = None

    @classmethod
    def from_request(cls, request: web.BaseRequest) -> Presented:
        return cls(
            request.remote,
            request.headers.get(hdrs.AUTHORIZATION),
            peer_certificate(request),
        )


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    """The authenticated caller, as handlers see it (no secret in here)."""

    name: str
    remote: str | None = None
    #: the Basic user name, when the peer authenticates with Basic
    username: str | None = None
    #: RFC 4514 subject of the verified client certificate, when one was presented
    cert_subject: str | None = None
    #: SHA-256 of the client certificate (DER), hex
    cert_sha256: str | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """No peer accepted the request: the HTTP status and challenge to answer with, and why."""

    http_status: int
    #: WWW-Authenticate value (HTTP 401 only)
    challenge: str | None
    #: (peer name, failure) for each peer tried, for the log
    reasons: tuple[tuple[str, AuthFailure], ...]
    #: RFC 4514 subject of the client certificate presented, if any (for the log)
    cert_subject: str | None = None


class NamedAuth(Protocol):
    """Anything with a peer name and its ``PeerAuth`` (server.Peer is one)."""

    @property
    def name(self) -> str: ...

    @property
    def auth(self) -> PeerAuth: ...


def peer_certificate(request: web.BaseRequest) -> bytes | None:
    """DER of the client certificate of the request's TLS connection, if one was verified."""
    transport = request.transport
    if transport is None:
        return None
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return der if isinstance(der, bytes) and der else None


def parse_address(remote: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The source address as an IP address; IPv4-mapped IPv6 (::ffff:a.b.c.d) as IPv4."""
    if not remote:
        return None
    try:
        addr = ipaddress.ip_address(remote)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def address_allowed(remote: str | None, networks: Sequence[Network]) -> bool:
    """Whether ``remote`` lies in one of ``networks`` (an unknown address never does)."""
    addr = parse_address(remote)
    if addr is None:
        return False
    return any(addr.version == net.version and addr in net for net in networks)


def decode_basic(authorization: str | None) -> tuple[bytes, bytes] | None:
    """(user, password) bytes of an ``Authorization: Basic`` header; None if absent or unreadable.

    Parsed here rather than with ``aiohttp.BasicAuth.decode``: aiohttp 3.14 deprecates the
    BasicAuth class for removal in 4.0. Bytes, not text, so UTF-8 credentials compare exactly.
    """
    if not authorization:
        return None
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(encoded.strip().encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):  # binascii.Error is a ValueError
        return None
    user, colon, password = raw.partition(b":")
    if not colon:
        return None
    return user, password


def cert_subject(cert: x509.Certificate) -> str:
    """The RFC 4514 subject string of ``cert`` (``CN=mmsc1,O=Carrier``)."""
    return cert.subject.rfc4514_string()


def _common_names(cert: x509.Certificate) -> set[str]:
    return {str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)}


def _certificate_sans(cert: x509.Certificate) -> list[str]:
    """The DNS and URI entries of ``cert``'s SAN extension as ``DNS:name`` / ``URI:uri``.

    A DNS name is lowercased without a trailing dot; one holding a ``*`` is left out (a client
    certificate's wildcard would name every host, so it names no peer). An extension that
    cannot be parsed gives no names: the certificate can then only match by subject.
    """
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    except ValueError:  # malformed or duplicated extensions
        return []
    names = [
        f"DNS:{dns.lower().removesuffix('.')}"
        for dns in ext.value.get_values_for_type(x509.DNSName)
        if "*" not in dns
    ]
    names.extend(
        f"URI:{uri}" for uri in ext.value.get_values_for_type(x509.UniformResourceIdentifier)
    )
    return names


def _san_matches(pattern: str, name: str) -> bool:
    """Whether a certificate SAN ``name`` matches a rule's ``pattern`` (both normalised)."""
    if pattern.startswith("DNS:*.") and name.startswith("DNS:"):
        suffix = pattern[len("DNS:*") :]  # ".carrier.example"
        head = name[len("DNS:") :].removesuffix(suffix)
        return name.endswith(suffix) and bool(head) and "." not in head
    return pattern == name


def _subject_of(der: bytes | None) -> str | None:
    if der is None:
        return None
    try:
        return cert_subject(x509.load_der_x509_certificate(der))
    except ValueError:
        return None


def _issued_by(cert: x509.Certificate, issuers: Sequence[x509.Certificate]) -> bool:
    for ca in issuers:
        try:
            cert.verify_directly_issued_by(ca)
        except (InvalidSignature, ValueError, TypeError):
            continue
        return True
    return False


def check(auth: PeerAuth, presented: Presented) -> AuthFailure | None:
    """The first check of ``auth`` that ``presented`` fails, or None when all pass.

    Order: address (cheapest), certificate, then password, so that a 401 challenge is only
    answered to a caller that a password would actually let in.
    """
    if auth.networks and not address_allowed(presented.remote, auth.networks):
        return AuthFailure.ADDRESS_NOT_ALLOWED
    rule = auth.client_cert
    if rule is not None:
        if presented.peer_cert_der is None:
            return AuthFailure.CERT_MISSING
        cert = x509.load_der_x509_certificate(presented.peer_cert_der)
        if len(_common_names(cert)) > 1:
            return AuthFailure.CERT_CN_CONFLICT
        if not rule.names_match(cert):
            return AuthFailure.CERT_SUBJECT
        if rule.issuers and not _issued_by(cert, rule.issuers):
            return AuthFailure.CERT_ISSUER
    if auth.basic is not None:
        creds = decode_basic(presented.authorization)
        if creds is None:
            return AuthFailure.BASIC_MISSING
        if not auth.basic.matches(*creds):
            return AuthFailure.BASIC_WRONG
    return None


def identify(name: str, auth: PeerAuth, presented: Presented) -> PeerIdentity:
    """The identity handlers see for a request ``auth`` accepted."""
    username = None
    if auth.basic is not None:
        creds = decode_basic(presented.authorization)
        username = creds[0].decode("utf-8", "replace") if creds else None
    subject = digest = None
    if presented.peer_cert_der is not None:
        subject = cert_subject(x509.load_der_x509_certificate(presented.peer_cert_der))
        digest = hashlib.sha256(presented.peer_cert_der).hexdigest()
    return PeerIdentity(name, presented.remote, username, subject, digest)


def authenticate(peers: Iterable[NamedAuth], presented: Presented) -> PeerIdentity | Refusal:
    """The first peer whose checks all pass, or a Refusal saying how to answer.

    HTTP 401 with a Basic challenge when some peer failed only on its password (the caller could
    get in with the right one); HTTP 403 when every peer failed on address or certificate.
    """
    reasons: list[tuple[str, AuthFailure]] = []
    realm: str | None = None
    for peer in peers:
        failure = check(peer.auth, presented)
        if failure is None:
            return identify(peer.name, peer.auth, presented)
        reasons.append((peer.name, failure))
        if realm is None and failure in (AuthFailure.BASIC_MISSING, AuthFailure.BASIC_WRONG):
            realm = peer.auth.realm
    if realm is not None:
        escaped = realm.replace("\\", "\\\\").replace('"', '\\"')
        return Refusal(
            401,
            f'Basic realm="{escaped}", charset="UTF-8"',
            tuple(reasons),
            _subject_of(presented.peer_cert_der),
        )
    return Refusal(403, None, tuple(reasons), _subject_of(presented.peer_cert_der))


#: where auth_middleware leaves the caller's identity for the handler
PEER_IDENTITY = web.RequestKey("mm7_peer_identity", PeerIdentity)

RefusalRenderer = Callable[[web.Request, Refusal], Awaitable[web.StreamResponse]]


async def plain_refusal(request: web.Request, refusal: Refusal) -> web.StreamResponse:
    """A bare HTTP answer to a refused request (the MM7 endpoint renders a SOAP fault instead)."""
    headers = {hdrs.WWW_AUTHENTICATE: refusal.challenge} if refusal.challenge else None
    return web.Response(status=refusal.http_status, headers=headers, text="unauthorized\n")


def auth_middleware(
    peers: Sequence[NamedAuth],
    *,
    paths: Iterable[str] | None = None,
    on_refused: RefusalRenderer = plain_refusal,
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """An aiohttp middleware that authenticates requests to ``paths`` (None: every path).

    An accepted request carries its ``PeerIdentity`` at ``request[PEER_IDENTITY]``; a refused one
    is answered by ``on_refused`` and never reaches the handler (its body is not read).
    """
    guarded = frozenset(paths) if paths is not None else None

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if guarded is not None and request.path not in guarded:
            return await handler(request)
        outcome = authenticate(peers, Presented.from_request(request))
        if isinstance(outcome, Refusal):
            log_refusal(request, outcome)
            return await on_refused(request, outcome)
        request[PEER_IDENTITY] = outcome
        return await handler(request)

    return middleware


def log_refusal(request: web.BaseRequest, refusal: Refusal) -> None:
    """One warning per refused request: address, reasons and the client certificate's subject
    (public; a certificate holds no secret), never the credentials."""
    log.warning(
        "mm7.auth.refused",
        remote=request.remote,
        path=request.path,
        http_status=refusal.http_status,
        reasons=[f"{name}:{failure}" for name, failure in refusal.reasons],
        cert_subject=refusal.cert_subject,
    )


def server_ssl_context(
    certfile: StrPath,
    keyfile: StrPath,
    *,
    client_ca: StrPath | None = None,
    require_client_cert: bool = True,
) -> ssl.SSLContext:
    """A TLS server context for the inbound endpoint (TLS 1.2 or newer).

    With ``client_ca`` the server asks for a client certificate and verifies it against that CA
    bundle (mutual TLS): ``require_client_cert`` refuses the handshake without one (CERT_REQUIRED);
    False lets certificate-less clients through to the HTTP layer, where a peer with a
    ``ClientCertRule`` refuses them with 4001 while other peers (Basic, allow-list) still work.
    A certificate that does not verify fails the handshake either way.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    if client_ca is not None:
        context.load_verify_locations(cafile=client_ca)
        context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    else:
        context.verify_mode = ssl.CERT_NONE
    return context
