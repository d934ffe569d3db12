"""Outbound authentication for a link: HTTP Basic, Digest (aiohttp's DigestAuthMiddleware),
Bearer, and mutual TLS with certificate checks.

TLS always verifies the server, hostname included: a client that trusts any certificate (as
instantcom's does) sends messages and credentials to whoever answers. Our client certificate is
loaded with ``cryptography`` first: an expired or not-yet-valid one is refused with a clear
error, one about to expire is warned about, so an operator hears of it before the carrier hangs
up on us.
"""

from __future__ import annotations

import base64
import datetime as dt
import ssl
from dataclasses import dataclass
from pathlib import Path

import structlog
from aiohttp import DigestAuthMiddleware
from aiohttp.client_middlewares import ClientMiddlewareType
from cryptography import x509
from cryptography.x509.oid import NameOID

from mm7.transport.errors import LinkConfigError
from mm7.transport.link import BasicAuth, BearerAuth, ClientAuth, DigestAuth, TLSConfig

__all__ = ["AuthSetup", "CertificateInfo", "auth_setup", "check_certificate", "make_ssl_context"]

log = structlog.get_logger("mm7.transport.auth")


@dataclass(frozen=True, slots=True)
class AuthSetup:
    """What the client session needs for one link's HTTP authentication.

    ``headers`` holds a secret (Basic, Bearer): it goes on the wire and, masked, in the wire log.
    """

    middlewares: tuple[ClientMiddlewareType, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    scheme: str = "none"


def auth_setup(auth: ClientAuth | None) -> AuthSetup:
    """Turn a link's auth setting into session arguments."""
    if auth is None:
        return AuthSetup()
    if isinstance(auth, BasicAuth):
        # our own header (not the session's auth=) so the wire log shows "Basic ***"
        creds = f"{auth.username}:{auth.password.reveal()}".encode()
        value = "Basic " + base64.b64encode(creds).decode("ascii")
        return AuthSetup(headers=(("Authorization", value),), scheme="basic")
    if isinstance(auth, DigestAuth):
        middleware = DigestAuthMiddleware(auth.username, auth.password.reveal(), preemptive=True)
        return AuthSetup(middlewares=(middleware,), scheme="digest")
    if isinstance(auth, BearerAuth):
        return AuthSetup(
            headers=(("Authorization", f"Bearer {auth.token.reveal()}"),), scheme="bearer"
        )
    raise LinkConfigError(f"unsupported auth setting {type(auth).__name__}")


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """What we checked of a certificate: who it names and when it stops being valid."""

    path: Path
    subject: str
    not_before: dt.datetime
    not_after: dt.datetime
    days_left: float


def check_certificate(
    path: Path,
    *,
    link: str,
    warning_days: int = 30,
    now: dt.datetime | None = None,
) -> CertificateInfo:
    """Load the (first) certificate of a PEM or DER file; refuse it expired or not yet valid,
    warn through structlog when it expires within ``warning_days``."""
    now = now or dt.datetime.now(dt.UTC)
    where = f"link {link!r}: client certificate {path}"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LinkConfigError(f"{where}: cannot read it ({exc.strerror})") from None
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
            cert = certs[0]
        else:
            cert = x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise LinkConfigError(f"{where}: not a PEM or DER certificate ({exc})") from None
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    subject = str(names[0].value) if names else cert.subject.rfc4514_string()
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now >= not_after:
        raise LinkConfigError(
            f"{where} (CN={subject}) expired on {not_after:%Y-%m-%d %H:%M} UTC: renew it"
        )
    if now < not_before:
        raise LinkConfigError(
            f"{where} (CN={subject}) is not valid before {not_before:%Y-%m-%d %H:%M} UTC"
        )
    days_left = (not_after - now).total_seconds() / 86400
    info = CertificateInfo(path, subject, not_before, not_after, days_left)
    if days_left <= warning_days:
        log.warning(
            "mm7.tls.client_cert_expiring",
            link=link,
            subject=subject,
            path=str(path),
            not_after=not_after.isoformat(),
            days_left=round(days_left, 1),
        )
    return info


def make_ssl_context(
    tls: TLSConfig | None, *, link: str, now: dt.datetime | None = None
) -> ssl.SSLContext | None:
    """The SSL context for an https link: verification and hostname checks on, TLS >= 1.2, our
    certificate and key loaded when mutual TLS is configured. None: no TLS settings (aiohttp then
    verifies against the system store)."""
    if tls is None:
        return None
    where = f"link {link!r}"
    try:
        ctx = ssl.create_default_context(
            cafile=str(tls.ca_file) if tls.ca_file is not None else None
        )
    except (OSError, ssl.SSLError) as exc:
        raise LinkConfigError(f"{where}: cannot load CA bundle {tls.ca_file}: {exc}") from None
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.cert_file is not None:
        check_certificate(tls.cert_file, link=link, warning_days=tls.expiry_warning_days, now=now)
        password = tls.key_password.reveal() if tls.key_password is not None else None
        try:
            ctx.load_cert_chain(
                str(tls.cert_file),
                str(tls.key_file) if tls.key_file is not None else None,
                password=password,
            )
        except (OSError, ssl.SSLError):
            # the library's message may quote the file; never the password
            raise LinkConfigError(
                f"{where}: cannot load client certificate {tls.cert_file} with key "
                f"{tls.key_file or '(in the certificate file)'}: the key does not match, is "
                "encrypted with another password, or cannot be read"
            ) from None
    return ctx
