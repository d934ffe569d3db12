"""Why an https peer may drop the connection: with TLS 1.3 a server that wants a client
certificate and got none closes the connection after the handshake, which the client sees as a
disconnect, not as a TLS error. Both commands add this hint to such a problem."""

from __future__ import annotations

from mm7.transport.link import TLSConfig

__all__ = ["no_certificate_hint"]


def no_certificate_hint(url: str, tls: TLSConfig | None, *, dropped: bool) -> str:
    """The hint to append to a problem (" (...)"), or "" when it does not apply: only when the
    connection was ``dropped``, the URL is https and no client certificate was presented."""
    https = url.lower().startswith("https://")
    presented = tls is not None and tls.mutual
    if not (dropped and https and not presented):
        return ""
    return (
        " (an endpoint that requires a client certificate closes the connection so: "
        "give --tls-cert and --tls-key)"
    )
