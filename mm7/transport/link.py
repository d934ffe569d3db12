"""One MMSC link's configuration: where to send, how to write, how to authenticate, how fast.

Pure data: the client (``mm7.transport.client``) and ``client_auth`` give it behaviour. Secrets are
``Secret`` values whose str/repr are masked, so a config printed, logged or put in an exception
shows ``***``; loading them from the environment is the gateway's job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from mm7.core.dialect import STRICT_3GPP, Dialect
from mm7.core.limits import DEFAULT_LIMITS, Limits
from mm7.transport.classify import Overrides
from mm7.transport.errors import LinkConfigError

__all__ = [
    "MASK",
    "BasicAuth",
    "BearerAuth",
    "ClientAuth",
    "DigestAuth",
    "LinkConfig",
    "Secret",
    "TLSConfig",
]

MASK = "***"


class Secret:
    """A credential: ``reveal()`` gives the value; str, repr and format show ``***``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret wants a str")
        self._value = value

    def reveal(self) -> str:
        """The value itself: only for the code that puts it on the wire."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __bool__(self) -> bool:
        return bool(self._value)


def _secret(value: Secret | str) -> Secret:
    return value if isinstance(value, Secret) else Secret(value)


@dataclass(frozen=True, slots=True)
class BasicAuth:
    """HTTP Basic, sent on every request (MMSCs rarely challenge first)."""

    username: str
    password: Secret

    def __post_init__(self) -> None:
        object.__setattr__(self, "password", _secret(self.password))
        if ":" in self.username:
            raise LinkConfigError("basic auth: a ':' is not allowed in the username (RFC 7617)")


@dataclass(frozen=True, slots=True)
class DigestAuth:
    """HTTP Digest (RFC 7616) through aiohttp's DigestAuthMiddleware: answers the challenge."""

    username: str
    password: Secret

    def __post_init__(self) -> None:
        object.__setattr__(self, "password", _secret(self.password))
        if ":" in self.username:
            raise LinkConfigError("digest auth: a ':' is not allowed in the username")


@dataclass(frozen=True, slots=True)
class BearerAuth:
    """``Authorization: Bearer <token>`` (Telnyx-style gateways)."""

    token: Secret

    def __post_init__(self) -> None:
        object.__setattr__(self, "token", _secret(self.token))
        if any(c in self.token.reveal() for c in "\r\n "):
            raise LinkConfigError("bearer auth: the token must not contain spaces or newlines")


ClientAuth = BasicAuth | DigestAuth | BearerAuth


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """Server verification (always on, hostname included) and, for mutual TLS, our certificate.

    ``ca_file`` None trusts the system store. ``server_hostname`` names the host the server's
    certificate must match when it differs from the URL's (connecting by IP): verification is
    never switched off.
    """

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    key_password: Secret | None = None
    server_hostname: str | None = None
    #: warn (structlog) when our certificate expires within this many days
    expiry_warning_days: int = 30

    def __post_init__(self) -> None:
        for name in ("ca_file", "cert_file", "key_file"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        if self.key_password is not None:
            object.__setattr__(self, "key_password", _secret(self.key_password))
        if self.key_file is not None and self.cert_file is None:
            raise LinkConfigError("tls: key_file given without cert_file")
        if self.expiry_warning_days < 0:
            raise LinkConfigError("tls: expiry_warning_days must be >= 0")

    @property
    def mutual(self) -> bool:
        """Whether we present a client certificate."""
        return self.cert_file is not None


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """Everything the client needs to talk to one MMSC. Validated on construction."""

    name: str
    url: str
    dialect: Dialect = STRICT_3GPP
    auth: ClientAuth | None = None
    tls: TLSConfig | None = None
    #: whole exchange (connect, send, wait, read) and connection set-up, seconds
    request_timeout: float = 30.0
    connect_timeout: float = 10.0
    #: requests per second (token bucket) and how many may go back to back; None: no limit
    tps: float | None = None
    burst: int = 1
    #: requests in flight at once on this link (also the connection pool size)
    max_in_flight: int = 10
    #: recipients per SubmitReq the MMSC accepts; None: no limit (fan-out splits above it)
    max_recipients: int | None = None
    #: per-link changes to the classification table (carrier codes)
    classification: Overrides = field(default_factory=Overrides)
    #: circuit breaker: open after this many consecutive transient failures; 0 disables it
    breaker_threshold: int = 5
    #: seconds the breaker stays open before one probe request is let through
    breaker_cooldown: float = 30.0
    #: log every request and response, redacted (headers, SOAP part; media elided)
    wire_log: bool = False
    #: bounds on the responses we parse
    limits: Limits = DEFAULT_LIMITS
    #: seconds an idle keep-alive connection stays in the pool
    keepalive_timeout: float = 30.0
    user_agent: str = "mm7-python"

    def __post_init__(self) -> None:
        if not self.name:
            raise LinkConfigError("link: name must not be empty")
        parts = urlsplit(self.url)
        where = f"link {self.name!r}"
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise LinkConfigError(f"{where}: url must be http:// or https:// with a host")
        if parts.username is not None or parts.password is not None:
            # never echo the URL: it holds the secret we are refusing
            raise LinkConfigError(
                f"{where}: credentials in the url are refused (they end up in logs); "
                "use auth= with a Secret"
            )
        if self.tls is not None and parts.scheme != "https":
            raise LinkConfigError(f"{where}: tls settings need an https:// url")
        for name in ("request_timeout", "connect_timeout", "keepalive_timeout"):
            if not getattr(self, name) > 0:
                raise LinkConfigError(f"{where}: {name} must be > 0")
        if self.tps is not None and not self.tps > 0:
            raise LinkConfigError(f"{where}: tps must be > 0 (or None for no limit)")
        if self.burst < 1:
            raise LinkConfigError(f"{where}: burst must be >= 1")
        if self.max_in_flight < 1:
            raise LinkConfigError(f"{where}: max_in_flight must be >= 1")
        if self.max_recipients is not None and self.max_recipients < 1:
            raise LinkConfigError(f"{where}: max_recipients must be >= 1 (or None)")
        if self.breaker_threshold < 0 or self.breaker_cooldown < 0:
            raise LinkConfigError(f"{where}: breaker settings must be >= 0")

    @property
    def is_tls(self) -> bool:
        return urlsplit(self.url).scheme == "https"
