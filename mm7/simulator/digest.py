"""HTTP Digest authentication, server side (RFC 7616, the RFC 2617 MD5 subset MMSCs use).

The simulator challenges with::

    WWW-Authenticate: Digest realm="mm7-simulator", nonce="...", opaque="...", qop="auth",
                      algorithm=MD5

and checks the answer: the user name and realm, a nonce it issued (and has not forgotten or let
expire), ``qop=auth`` with ``nc`` and ``cnonce``, the request URI, and the response hash
``MD5(HA1:nonce:nc:cnonce:qop:HA2)`` with ``HA1 = MD5(user:realm:password)`` and
``HA2 = MD5(method:uri)``. A nonce count seen before for the same nonce is a replay and refused.
An expired nonce is answered with ``stale=true`` so a client that knows the password retries.

aiohttp has no server-side Digest; this is the small verifier the simulator needs, not a general
library (no MD5-sess, no SHA-256, no auth-int).
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = ["DigestCheck", "DigestCredentials", "DigestVerifier", "parse_auth_params"]

#: nonces remembered at once (oldest forgotten first)
MAX_NONCES = 1024
#: nonce counts remembered per nonce (replay detection)
MAX_COUNTS = 4096


class DigestCheck(StrEnum):
    """The outcome of checking one Authorization header."""

    OK = "ok"
    MISSING = "missing"  # no Authorization: Digest header
    MALFORMED = "malformed"  # parameters missing or unreadable
    WRONG = "wrong"  # user, realm, URI or response hash wrong
    UNKNOWN_NONCE = "unknown-nonce"  # a nonce we never issued (or forgot)
    STALE = "stale"  # our nonce, expired: the client may retry with a fresh one
    REPLAY = "replay"  # a nonce count already used with this nonce


@dataclass(frozen=True, slots=True)
class DigestCredentials:
    """The user and password a VASP must prove it knows, and the realm they belong to."""

    user: str
    password: str = field(repr=False)
    realm: str = "mm7-simulator"


@dataclass(slots=True)
class _Nonce:
    issued: float
    counts: set[int] = field(default_factory=set)


class DigestVerifier:
    """Issues challenges and verifies answers for one set of credentials."""

    def __init__(
        self,
        credentials: DigestCredentials,
        *,
        lifetime: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.credentials = credentials
        self.lifetime = lifetime
        self.clock = clock
        self.opaque = secrets.token_hex(8)
        self._nonces: collections.OrderedDict[str, _Nonce] = collections.OrderedDict()

    def challenge(self, *, stale: bool = False) -> str:
        """A WWW-Authenticate value with a fresh nonce."""
        nonce = secrets.token_hex(16)
        self._nonces[nonce] = _Nonce(self.clock())
        while len(self._nonces) > MAX_NONCES:
            self._nonces.popitem(last=False)
        realm = _quote(self.credentials.realm)
        value = (
            f'Digest realm="{realm}", nonce="{nonce}", opaque="{self.opaque}", '
            f'qop="auth", algorithm=MD5'
        )
        return value + (", stale=true" if stale else "")

    def check(self, authorization: str | None, method: str, uri: str) -> DigestCheck:
        """Whether ``authorization`` answers one of our challenges for ``method`` ``uri``."""
        if not authorization:
            return DigestCheck.MISSING
        scheme, _, rest = authorization.strip().partition(" ")
        if scheme.lower() != "digest":
            return DigestCheck.MISSING
        params = parse_auth_params(rest)
        if params is None:
            return DigestCheck.MALFORMED
        needed = ("username", "realm", "nonce", "uri", "response", "qop", "nc", "cnonce")
        if any(not params.get(k) for k in needed):
            return DigestCheck.MALFORMED
        if params.get("algorithm", "MD5").upper() != "MD5" or params["qop"] != "auth":
            return DigestCheck.WRONG
        try:
            count = int(params["nc"], 16)
        except ValueError:
            return DigestCheck.MALFORMED
        creds = self.credentials
        if params["uri"] != uri:
            return DigestCheck.WRONG
        ha1 = _md5(f"{creds.user}:{creds.realm}:{creds.password}")
        ha2 = _md5(f"{method}:{params['uri']}")
        want = _md5(
            f"{ha1}:{params['nonce']}:{params['nc']}:{params['cnonce']}:{params['qop']}:{ha2}"
        )
        # every comparison is made, so the time taken does not say which one failed
        user_ok = hmac.compare_digest(params["username"].encode(), creds.user.encode())
        realm_ok = hmac.compare_digest(params["realm"].encode(), creds.realm.encode())
        hash_ok = hmac.compare_digest(params["response"].lower().encode(), want.encode())
        if not (user_ok & realm_ok & hash_ok):
            return DigestCheck.WRONG
        nonce = self._nonces.get(params["nonce"])
        if nonce is None:
            return DigestCheck.UNKNOWN_NONCE
        if self.clock() - nonce.issued > self.lifetime:
            del self._nonces[params["nonce"]]
            return DigestCheck.STALE
        if count in nonce.counts:
            return DigestCheck.REPLAY
        nonce.counts.add(count)
        if len(nonce.counts) > MAX_COUNTS:
            del self._nonces[params["nonce"]]  # used enough: the next request is challenged
        return DigestCheck.OK


def parse_auth_params(text: str) -> dict[str, str] | None:
    """``key=value, key="quoted \\" value"`` into a dict (keys lower-cased); None if unreadable."""
    out: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t,":
            i += 1
        if i >= n:
            break
        eq = text.find("=", i)
        if eq < 0:
            return None
        key = text[i:eq].strip().lower()
        if not key or any(c in key for c in ' \t,"'):
            return None
        i = eq + 1
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == '"':
            i += 1
            value: list[str] = []
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(text[i])
                i += 1
            if i >= n:
                return None  # unterminated quoted string
            i += 1
            out[key] = "".join(value)
        else:
            end = text.find(",", i)
            end = n if end < 0 else end
            out[key] = text[i:end].strip()
            i = end
    return out


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
