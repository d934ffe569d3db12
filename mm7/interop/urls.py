"""The one check of a peer's URL, made before anything is sent to it."""

from __future__ import annotations

from urllib.parse import urlsplit

from mm7.interop.errors import InteropError

__all__ = ["check_peer", "check_url"]


def check_url(url: str, *, tls: bool = False) -> str:
    """``url`` when it is http(s) with a host and no credentials (they belong in
    --user/--password-env, not in URLs that end up in reports); ``tls``: TLS options were given,
    so it must be https."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InteropError(f"URL: expected http:// or https:// with a host, got {url!r}")
    if parts.username is not None or parts.password is not None:
        raise InteropError("URL: credentials in the URL are refused; use --user/--password-env")
    if tls and parts.scheme != "https":
        raise InteropError("TLS options need an https:// URL")
    return url


def check_peer(url: str, *, tls: bool, timeout: float) -> None:
    """The checks of a peer given on the command line: its URL (``check_url``) and a positive
    ``--timeout``."""
    check_url(url, tls=tls)
    if not timeout > 0:
        raise InteropError(f"--timeout: expected a positive number of seconds, got {timeout}")
