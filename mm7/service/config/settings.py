"""The gateway's configuration as frozen dataclasses: what ``load_config`` (``loader``) returns.

``GatewayConfig`` holds one ``*Settings`` value per table of gateway.toml. The transport objects
are built while loading (``LinkConfig``, ``Peer``, ``InboundConfig``), so what they refuse is
refused at start too, and ``GatewayConfig.link_configs()`` / ``.inbound_config()`` hand them out.
``GatewayConfig.route(recipient)`` picks the link for a recipient by prefix rules.
"""

from __future__ import annotations

import base64
import dataclasses
import hmac
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias
from urllib.parse import urlsplit

from mm7.content.profile import Profile
from mm7.transport.link import (
    LinkConfig,
    Secret,
)
from mm7.transport.listener import ListenerLimits
from mm7.transport.server import InboundConfig, Peer

__all__ = [
    "ApiKey",
    "API_ROLES",
    "ApiRole",
    "ApiSettings",
    "ClusterSettings",
    "NUMBER_CHECKS",
    "NumberCheck",
    "FetchSettings",
    "GatewayConfig",
    "InboundSettings",
    "InboundTLS",
    "LinkSettings",
    "Listen",
    "LoggingSettings",
    "MetricsSettings",
    "PeerSettings",
    "RelayHook",
    "RelayRoute",
    "RelaySettings",
    "RetrySettings",
    "RouteMatch",
    "SIGNATURE_SCHEMES",
    "SenderRates",
    "SignatureScheme",
    "StoreSettings",
    "WHSEC_PREFIX",
    "whsec_key",
]

#: what an API key may see and do (``ApiKey.role``)
ApiRole: TypeAlias = Literal["sending", "admin"]
API_ROLES: tuple[ApiRole, ...] = ("sending", "admin")
#: how strictly recipients' numbers are checked at intake (``mm7.service.api.numbers``)
NumberCheck: TypeAlias = Literal["valid", "possible"]
NUMBER_CHECKS: tuple[NumberCheck, ...] = ("valid", "possible")

#: opt-out words (an MO whose whole text is one of them), compared upper-cased
DEFAULT_STOP_WORDS = ("STOP", "UNSUBSCRIBE", "CANCEL", "END", "QUIT")
DEFAULT_START_WORDS = ("START", "UNSTOP")
#: where the inbound MM7 endpoint and the sending API listen without ``listen`` (loopback only)
DEFAULT_INBOUND_LISTEN = "127.0.0.1:9000"
DEFAULT_API_LISTEN = "127.0.0.1:8000"
_ROUTE_DIGITS = re.compile(r"[\s\-.()]")


@dataclass(frozen=True, slots=True)
class Listen:
    """A listening address: host and port (port 0: any free port)."""

    #: an IP address (IPv6 without brackets) or a host name
    host: str
    #: TCP port; 0: any free port
    port: int

    @property
    def is_loopback(self) -> bool:
        """Whether only this machine can connect (127.0.0.0/8, ::1, localhost)."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """How a link's dispatcher retries transient failures: exponential backoff with jitter."""

    #: seconds: the first retry waits up to this long; each further one up to twice as long
    initial_backoff: float = 1.0
    #: seconds: the cap on one retry's wait
    max_backoff: float = 300.0
    #: give up (fail the recipient) this many seconds after submission when it has no expiry
    max_age: float = 86400.0


@dataclass(frozen=True, slots=True)
class SenderRates:
    """A link's own limits per sending address (``sender_tps``): carriers limit each number
    (a 10DLC long code about 1 MMS a second, toll-free 3, short codes 40 and more)."""

    #: (sender address as sent, SubmitReqs per second), in the order configured
    rates: tuple[tuple[str, float], ...] = ()
    #: SubmitReqs per second of a sender not listed (also of messages without any sender);
    #: None: only the listed senders are limited
    default: float | None = None

    def rate_for(self, sender: str) -> float | None:
        """The rate of ``sender`` (its address as sent; "" for none), or None: no limit."""
        for address, rate in self.rates:
            if address == sender:
                return rate
        return self.default

    def __bool__(self) -> bool:
        return bool(self.rates) or self.default is not None


@dataclass(frozen=True, slots=True)
class LinkSettings:
    """One MMSC link: the transport's ``LinkConfig`` plus what the service adds around it."""

    #: the link's name (``[links.NAME]``), as messages, peers and routes refer to it
    name: str
    #: URL, dialect, auth, TLS, rate and timeouts: what the client needs to talk to the MMSC
    link: LinkConfig
    #: what content must fit before it is sent on this link; None: sent as given
    profile: Profile | None = None
    #: recipient number prefixes routed to this link ("+1202", "4477"); '+' is ignored
    prefixes: tuple[str, ...] = ()
    #: recipients no prefix matches go here
    default: bool = False
    #: VASPID of the SubmitReqs sent on this link (the MMSC's name for us); None: not sent
    vasp_id: str | None = None
    #: VASID of the SubmitReqs sent on this link (our service's name); None: not sent
    vas_id: str | None = None
    #: SenderAddress when the application gives none
    sender_address: str | None = None
    #: the region (ISO 3166-1 alpha-2, "US") whose national numbers ("(201) 555-0123") the
    #: recipients routed to this link may be written in; an API key's own region comes first
    default_region: str | None = None
    #: ServiceCode (charging) when the application gives none
    service_code: str | None = None
    #: how transient failures on this link are retried
    retry: RetrySettings = RetrySettings()
    #: SubmitReqs per second per sender address, beside the link's own ``tps`` (empty: none)
    sender_tps: SenderRates = SenderRates()
    #: "sms": a recipient whose MMS fails for good gets an SMS with the text and the hosted
    #: page's link (``mm7.service.fallback``); "none": not. A message's "fallback" overrides it
    fallback: str = "none"
    #: the ``[sms_links.NAME]`` the fallback SMS goes through (needed by "sms", for the link or
    #: for a message asking for it); None: this link's messages cannot fall back to SMS
    fallback_sms_link: str | None = None
    #: the fallback SMS's length in characters, the page's link included (the text is trimmed)
    fallback_text_max: int = 160


@dataclass(frozen=True, slots=True)
class PeerSettings:
    """An MMSC calling the inbound endpoint, and the link its reports belong to."""

    #: the peer's name (``[inbound.peers.NAME]``)
    name: str
    #: the link whose messages this peer's delivery reports are correlated with
    link: str
    #: how the endpoint recognises this peer and answers it
    peer: Peer
    #: every link this peer's reports may belong to (``links = [...]``: an MMSC reached through
    #: several VASP accounts); empty: ``link`` alone
    links: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class InboundTLS:
    """TLS on the inbound listener (``mm7.transport.inbound_auth.server_ssl_context``)."""

    #: the listener's certificate (PEM, with its chain)
    cert_file: Path
    #: the certificate's private key (PEM)
    key_file: Path
    #: CA bundle verifying client certificates (mutual TLS); None: none asked for
    client_ca: Path | None = None
    #: with ``client_ca``: refuse a TLS handshake without a client certificate
    require_client_cert: bool = True


@dataclass(frozen=True, slots=True)
class InboundSettings:
    """The inbound MM7 endpoint: where it listens and the ``InboundConfig`` it serves."""

    #: where the endpoint listens
    listen: Listen
    #: path, peers, size bounds and HTTP choices, as the transport's server takes them
    config: InboundConfig
    #: the MMSCs that may call, each with the link its reports belong to
    peers: tuple[PeerSettings, ...]
    #: None: plain HTTP (a TLS-terminating proxy in front, or loopback only)
    tls: InboundTLS | None = None
    #: header, body and keep-alive timeouts and the connection limit of the listener
    limits: ListenerLimits = ListenerLimits()


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key applications present as ``Authorization: Bearer <key>``.

    Its role decides what it may see: a sending key (the default) only what it sent, an admin
    key also what belongs to no key (MOs, the suppression list) and other keys' relay events.
    """

    #: the key's name: in logs, on the messages it sent, never the key itself
    name: str
    #: the key (it also signs the status callbacks of the messages sent with it)
    key: Secret
    #: generated for this run because its variable was unset (``generate_if_unset``, loopback)
    generated: bool = False
    #: the environment variable it was read from (or that would have held it)
    env: str | None = None
    #: this key's URLs (media, callback_url, dlr-url, rr-url) may reach loopback and private
    #: addresses (``[api.fetch] allow_private`` allows it for every key)
    allow_private: bool = False
    #: "sending": its own messages, their relay events and its own replies only; "admin": also
    #: every relay event (MOs included), the relay operations and the suppression list
    role: ApiRole = "sending"
    #: the region national numbers this key sends to are in (before the link's); None: the link's
    default_region: str | None = None
    #: "valid" or "possible" for this key's recipients; None: ``[api] number_check``
    number_check: NumberCheck | None = None
    #: recipients a second this key may send (a token bucket holding one second's worth, over
    #: every instance on the store; a larger message waits for a full bucket); None: no quota
    max_per_second: int | None = None
    #: recipients this key may send per UTC day (over every instance, across restarts); None:
    #: no quota
    max_per_day: int | None = None

    @property
    def admin(self) -> bool:
        """Whether this key may run the relay operations and read the suppression list."""
        return self.role == "admin"


@dataclass(frozen=True, slots=True)
class FetchSettings:
    """Bounds on fetching media from URLs given to the sending API."""

    #: bytes: the largest medium fetched (refused from Content-Length, else while reading)
    max_bytes: int = 5_000_000
    #: seconds for the whole fetch, redirects included
    timeout: float = 30.0
    #: URL schemes fetched from ("https", "http")
    schemes: tuple[str, ...] = ("https", "http")
    #: every key's URLs (media, callback_url, dlr-url, rr-url) may reach loopback, private and
    #: link-local addresses (off: SSRF protection; ``allow_private`` on a key allows one key)
    allow_private: bool = False


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """The sending API for applications."""

    #: where the API listens
    listen: Listen
    #: the keys accepted (at least one)
    keys: tuple[ApiKey, ...]
    #: bytes: the largest request body, and of all its media once fetched from URLs (413)
    max_request_bytes: int = 10_000_000
    #: bounds on media given as URLs
    fetch: FetchSettings = FetchSettings()
    #: recipients queued on a link above which new messages for it are refused with 503 and
    #: Retry-After (back-pressure: latency stays bounded instead of the queue growing); None:
    #: no bound
    max_backlog: int | None = None
    #: header, body and keep-alive timeouts and the connection limit of the listener (and of
    #: ``[metrics] listen``'s)
    limits: ListenerLimits = ListenerLimits()
    #: recipients' numbers must be "valid" (libphonenumber knows the range as assigned) or only
    #: "possible" (a length the country's numbers can have: for test ranges and new ranges
    #: libphonenumber's metadata does not know yet); a key's ``number_check`` comes first
    number_check: NumberCheck = "valid"

    def key_secret(self, name: str) -> Secret | None:
        """The secret of the API key named ``name`` (it signs that key's status callbacks)."""
        for key in self.keys:
            if key.name == name:
                return key.key
        return None

    def allows_private(self, name: str | None) -> bool:
        """Whether URLs given with the key named ``name`` may reach private addresses."""
        if self.fetch.allow_private:
            return True
        return any(key.name == name and key.allow_private for key in self.keys)

    def check_key(self, presented: str) -> ApiKey | None:
        """The key ``presented`` matches (constant-time comparison over every key), or None."""
        found: ApiKey | None = None
        for key in self.keys:
            if hmac.compare_digest(key.key.reveal().encode(), presented.encode()):
                found = key
        return found


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """Where the gateway keeps its state: one SQLite file, or a PostgreSQL database that several
    instances share."""

    #: "sqlite" (one host, the embedded default) or "postgresql" (needs mm7[postgresql])
    backend: Literal["sqlite", "postgresql"] = "sqlite"
    #: the SQLite database file (relative: to the working directory)
    path: Path = Path("var/mm7.sqlite")
    #: PostgreSQL connection URL, postgresql://user:password@host:port/database (a secret: it
    #: usually holds a password)
    dsn: Secret | None = None
    #: finished messages, MOs, delivery reports and unused media are deleted after this
    retain: float = 30 * 86400.0


#: which signature headers a hook's requests carry (``RelayHook.signature``)
SignatureScheme: TypeAlias = Literal["mm7", "standard", "both"]
SIGNATURE_SCHEMES: tuple[SignatureScheme, ...] = ("mm7", "standard", "both")
#: the prefix Standard Webhooks gives a symmetric secret: ``whsec_`` then the key in base64
WHSEC_PREFIX = "whsec_"
#: the shortest key (bytes) Standard Webhooks allows for HMAC-SHA256 signatures
WHSEC_MIN_BYTES = 24
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def whsec_key(secret: str) -> bytes:
    """The HMAC key a Standard Webhooks secret stands for: ``whsec_<base64>`` decoded.

    The receiving libraries (``standardwebhooks.Webhook(secret)`` and its siblings in other
    languages) take the secret in this form and decode it the same way, so the application is
    given the very string the gateway is configured with. Raises ValueError, naming what is
    wrong but never showing the secret, for a secret without the prefix, with characters
    outside the standard base64 alphabet (the libraries would silently skip them and derive
    another key) or shorter than ``WHSEC_MIN_BYTES`` once decoded.
    """
    if not secret.startswith(WHSEC_PREFIX):
        raise ValueError(
            "the Standard Webhooks signature needs a secret of the form whsec_<base64 of 24 "
            "or more random bytes> (this one does not start with whsec_); make one with: "
            'python3 -c "import base64,secrets; '
            "print('whsec_' + base64.b64encode(secrets.token_bytes(32)).decode())\""
        )
    encoded = secret[len(WHSEC_PREFIX) :]
    if not _BASE64.fullmatch(encoded):
        raise ValueError("the part after whsec_ is not base64 (A-Z a-z 0-9 + / and = padding)")
    stripped = encoded.rstrip("=")
    key = base64.b64decode(stripped + "=" * (-len(stripped) % 4))
    if len(key) < WHSEC_MIN_BYTES:
        raise ValueError(
            f"the key after whsec_ is {len(key)} bytes; Standard Webhooks needs at least "
            f"{WHSEC_MIN_BYTES}"
        )
    return key


@dataclass(frozen=True, slots=True)
class RelayHook:
    """An application's HTTP hook: where relayed messages are POSTed, signed with ``secret``."""

    #: the hook's name (``[relay.hooks.NAME]``), as routes refer to it
    name: str
    #: where events are POSTed (http or https, no credentials in it)
    url: str
    #: the HMAC key: its UTF-8 bytes for ``X-MM7-Signature``; for the Standard Webhooks headers
    #: a ``whsec_<base64>`` secret, whose decoded bytes are the key (``whsec_key``)
    secret: Secret
    #: requests in flight to this hook at once
    concurrency: int = 4
    #: keep the order of messages per sender (one in flight per sender)
    ordered: bool = False
    #: seconds for one POST, the whole exchange
    timeout: float = 10.0
    #: the signature headers: "mm7" (``X-MM7-Signature``), "standard" (Standard Webhooks:
    #: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``) or "both"
    signature: SignatureScheme = "mm7"


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """What an MO must have for a route to apply; every non-empty criterion must match."""

    #: recipient number prefixes ("+1202"; '+' ignored)
    recipient_prefixes: tuple[str, ...] = ()
    #: a recipient is exactly one of them (the short codes the MO was sent to)
    short_codes: tuple[str, ...] = ()
    #: the MO's ServiceCode (a vendor element some MMSCs add)
    service_codes: tuple[str, ...] = ()
    #: ApplicID or ReplyApplicID
    applic_ids: tuple[str, ...] = ()
    #: the first word of the text, compared upper-cased (stored upper-case)
    keywords: tuple[str, ...] = ()
    #: names of the links the MO arrived on
    links: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not any(dataclasses.astuple(self))


@dataclass(frozen=True, slots=True)
class RelayRoute:
    """A routing rule: matching MOs go to ``hook``; status reports to ``status_hook``."""

    #: the route's name ("default" for ``[relay.default_route]``), stored with each MO
    name: str
    #: the hook matching MOs go to
    hook: str
    #: what an MO must have (empty for the default route)
    match: RouteMatch = RouteMatch()
    #: the hook for status events of messages without a callback_url (on the route's links)
    status_hook: str | None = None
    #: media as signed gateway URLs, or inline base64
    media: Literal["url", "inline"] = "url"


@dataclass(frozen=True, slots=True)
class RelaySettings:
    """Hooks, routes (in order) and opt-out words for the relay to applications (issue 7)."""

    #: the applications' hooks
    hooks: tuple[RelayHook, ...] = ()
    #: routing rules, in order: the first that matches an MO wins
    routes: tuple[RelayRoute, ...] = ()
    #: where MOs no route matches go; None: stored as unrouted
    default_route: RelayRoute | None = None
    #: an MO whose whole text is one of these (case-insensitive) suppresses its sender
    stop_words: tuple[str, ...] = DEFAULT_STOP_WORDS
    #: an MO whose whole text is one of these (case-insensitive) lifts its sender's suppression
    start_words: tuple[str, ...] = DEFAULT_START_WORDS
    #: seconds after its first attempt at which a failing event becomes a dead letter
    max_age: float = 172800.0
    #: seconds: the first retry waits up to this long; each further one up to twice as long
    initial_backoff: float = 2.0
    #: seconds: the cap on one retry's wait
    max_backoff: float = 600.0
    #: seconds a signed media URL stays valid
    media_url_ttl: float = 86400.0
    #: delivered, skipped and dropped events are deleted this long after their last change
    retain: float = 7 * 86400.0
    #: base URL applications reach the gateway's media URLs at; None: the API's listen address
    media_url_base: str | None = None
    #: the HMAC key signing media URLs; None: a random key the store makes once and keeps
    media_url_secret: Secret | None = None

    def hook(self, name: str) -> RelayHook:
        for hook in self.hooks:
            if hook.name == name:
                return hook
        raise KeyError(name)


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    #: the lowest level logged: debug, info, warning, error or critical
    level: str = "info"
    #: JSON lines (production); false: structlog's console renderer
    json: bool = True


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    #: serve Prometheus metrics
    enabled: bool = True
    #: the HTTP path they are served at
    path: str = "/metrics"
    #: a separate listener for metrics; None: served by the API's listener
    listen: Listen | None = None
    #: a bearer token scrapes must present (Authorization: Bearer ...); None: none asked
    token: Secret | None = None


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """This instance among others on one shared store (``mm7.service.cluster``)."""

    #: the name it holds leases under, unique among running processes; None: <hostname>-<pid>
    instance: str | None = None
    #: seconds a named lease (a link, the relay, retention) is held without renewal: another
    #: instance takes over within this long (plus a tenth) when the holder dies
    lease_ttl: float = 10.0


@dataclass(frozen=True, slots=True)
class HostingSettings:
    """Hosted media: each MT message's content as a web page behind a signed, expiring link
    (``mm7.service.hosting``), sent instead of the MMS when it cannot fit (``too_big``)."""

    #: serve the pages (/m/<token>); a link whose profile says too_big = "link" needs it
    enabled: bool = False
    #: the public URL recipients' phones reach the pages at; None: [relay] media_url_base,
    #: else the API's listen address
    url_base: str | None = None
    #: seconds from a message's acceptance until its page's link expires
    ttl: float = 30 * 86400.0
    #: the HMAC key signing the links; None: a random key the store makes once and keeps
    secret: Secret | None = None


@dataclass(frozen=True, slots=True)
class FallbackSettings:
    """``[fallback]``: how the SMS fallback worker retries an SMS its link could not take now
    (``SmsUnavailable``: down, throttled past its timeout), and how long a submitted SMS waits
    for its delivery receipts."""

    #: seconds after the fallback was queued when retrying stops (the row is failed)
    max_age: float = 3600.0
    #: the retry backoff (exponential, full jitter) between these
    initial_backoff: float = 5.0
    max_backoff: float = 300.0
    #: SMS sends in flight at once
    concurrency: int = 10
    #: seconds after its ``submitted`` commit when an SMS still without a final receipt is
    #: ``expired`` (48 h); 0: never (it stays ``submitted`` until retention deletes it)
    receipt_timeout: float = 172800.0


@dataclass(frozen=True, slots=True)
class SmppSettings:
    """``[[sms_links]]`` type = "smpp": a transceiver bind to one SMSC (``mm7.service.sms``),
    the SMS side of the upcoming fallback; ``password`` is a secret (never logged)."""

    name: str
    host: str
    port: int
    system_id: str
    password: Secret | None = None
    system_type: str = ""
    #: the sender when a send names none; its TON/NPI, and the recipients'
    source_addr: str = ""
    source_ton: int = 0
    source_npi: int = 0
    dest_ton: int = 1
    dest_npi: int = 1
    #: submits per second on this bind (each part of a long text counts)
    tps: float = 10.0
    #: outstanding submit_sm without a response
    window: int = 10
    #: ask for delivery receipts (registered_delivery = 1)
    receipts: bool = True
    #: seconds before resubmitting a throttled (0x58) or queue-full (0x14) part
    throttle_delay: float = 1.0
    #: seconds a send may wait for a bind or for throttling to end
    send_timeout: float = 30.0
    #: rebinding backoff (exponential, full jitter) between these
    reconnect_initial: float = 0.5
    reconnect_max: float = 30.0


@dataclass(frozen=True, slots=True)
class HttpSmsSettings:
    """``[[sms_links]]`` type = "http": a Kannel sendsms-style gateway; ``url`` is a template
    with {to} {from} {text} {coding} {charset} {dlr_url} {username} {password}, URL-encoded."""

    name: str
    url: str
    #: basic auth, unless the url template carries {password} itself
    username: str = ""
    password: Secret | None = None
    source_addr: str = ""
    #: the public base of this gateway's dlr endpoint; unset: no receipts asked for
    dlr_url_base: str = ""
    tps: float = 10.0
    timeout: float = 10.0


SmsLinkSettings: TypeAlias = SmppSettings | HttpSmsSettings


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """The whole gateway configuration, validated; built by ``load_config``."""

    #: the file it was read from (error messages name it)
    source: Path
    #: the MMSC links, in file order (at least one)
    links: tuple[LinkSettings, ...]
    #: the inbound MM7 endpoint (delivery reports, read replies, MOs)
    inbound: InboundSettings
    #: the sending API for applications
    api: ApiSettings
    #: where state is kept
    store: StoreSettings = StoreSettings()
    #: MOs and status events to applications' hooks
    relay: RelaySettings = RelaySettings()
    #: structlog output
    logging: LoggingSettings = LoggingSettings()
    #: Prometheus metrics
    metrics: MetricsSettings = MetricsSettings()
    #: several instances on one store
    cluster: ClusterSettings = ClusterSettings()
    #: messages' content as web pages (the text + link fallback)
    hosting: HostingSettings = HostingSettings()
    #: SMS links (SMPP or HTTP) for the upcoming SMS fallback; none by default
    sms_links: tuple[SmsLinkSettings, ...] = ()
    #: the SMS fallback worker's retries
    fallback: FallbackSettings = FallbackSettings()

    def link(self, name: str) -> LinkSettings:
        """The link called ``name`` (KeyError lists the names)."""
        for link in self.links:
            if link.name == name:
                return link
        raise KeyError(f"unknown link {name!r}; links: {', '.join(self.link_names)}")

    @property
    def link_names(self) -> tuple[str, ...]:
        return tuple(link.name for link in self.links)

    def link_configs(self) -> dict[str, LinkConfig]:
        """Each link's transport configuration, by name (in file order)."""
        return {link.name: link.link for link in self.links}

    def inbound_config(self) -> InboundConfig:
        """The inbound endpoint's configuration (path, peers, limits)."""
        return self.inbound.config

    @property
    def default_link(self) -> LinkSettings | None:
        """Where recipients without a matching prefix go: the ``default`` link, or the only one."""
        for link in self.links:
            if link.default:
                return link
        return self.links[0] if len(self.links) == 1 else None

    def route(self, recipient: str) -> LinkSettings | None:
        """The link for ``recipient``: the longest matching prefix, else the default link.

        Numbers are compared without '+', spaces, dashes, dots and parentheses ("+1 202-555-0100"
        matches prefix "1202"); an address that is not a number (e-mail) goes to the default.
        """
        number = _ROUTE_DIGITS.sub("", recipient).removeprefix("+")
        best: tuple[int, LinkSettings] | None = None
        if number.isdigit():
            for link in self.links:
                for prefix in link.prefixes:
                    bare = prefix.removeprefix("+")
                    if number.startswith(bare) and (best is None or len(bare) > best[0]):
                        best = (len(bare), link)
        return best[1] if best is not None else self.default_link

    def peer_link(self, peer: str) -> str:
        """The link a peer's reports belong to (KeyError for an unknown peer)."""
        for settings in self.inbound.peers:
            if settings.name == peer:
                return settings.link
        raise KeyError(peer)

    def peer_links(self, peer: str) -> tuple[str, ...]:
        """Every link a peer's reports are correlated across, its own link first: the peer's
        ``links``, then every other link submitting to the same MMSC (the same scheme, host
        and port), since one MMSC reports for all the VASP accounts it serves through one
        peer. KeyError for an unknown peer."""
        for settings in self.inbound.peers:
            if settings.name == peer:
                own = settings.links or (settings.link,)
                origins = {_origin(self.link(name).link.url) for name in own}
                same = (ln.name for ln in self.links if _origin(ln.link.url) in origins)
                return tuple(dict.fromkeys((*own, *same)))
        raise KeyError(peer)

    def own_addresses(self, link: str) -> frozenset[str]:
        """The link's own addresses (its sender address / short code), as a report's Sender
        normally holds them: how a report with Sender and Recipient swapped is recognised."""
        settings = self.link(link)
        return frozenset({settings.sender_address} if settings.sender_address else ())


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a link URL: links sharing it submit to the same MMSC."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return (parts.scheme.lower(), (parts.hostname or "").lower(), port)
