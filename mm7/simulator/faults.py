"""Fault injection: what the simulated MMSC does wrong, per request (a one-shot queue) or as a
rate, plus standing limits (TPS, request size) and authentication (Basic, Digest, a client
certificate).

Configured from JSON (the control API) or TOML (``--config``)::

    {"once": [{"kind": "http", "http_status": 503}],
     "rates": [{"kind": "latency", "delay": 0.5, "rate": 0.1}],
     "tps": 5, "max_bytes": 300000, "basic_auth": {"user": "vasp", "password": "pw"},
     "digest_auth": {"user": "vasp", "password": "pw", "realm": "mmsc"}, "client_cert": true}

Kinds: ``latency`` (wait ``delay`` seconds, then answer normally), ``http`` (a bare HTTP
``http_status``, no SOAP), ``reset`` (TCP reset before answering), ``truncate`` (the real answer
cut in half under its full Content-Length), ``malformed-xml`` (HTTP 200 with broken XML),
``status`` (answer MM7 status ``code`` with ``details``, in the persona's error shape),
``unauthorized`` (HTTP 401 + 4001 with fresh challenges, Digest ``stale=true``, even to a request
with the right credentials: an MMSC that forgot its nonces or sessions; a client that knows the
password answers the new challenge), ``accept`` (answered normally: a place in the one-shot
queue). Any fault may name an ``operation`` (``SubmitReq``...): only such a request takes it,
the others pass it by.

Authentication: with ``basic_auth`` and/or ``digest_auth`` a request without the right
credentials is answered HTTP 401 with MM7 status 4001 and a challenge per scheme (Digest first:
aiohttp and most clients answer the first one); ``client_cert`` true refuses (HTTP 403, 4001)
any request whose TLS connection carries no verified client certificate, which is how mutual TLS
is switched on and off at run time when the simulator serves HTTPS with an optional client CA
(with a required one, the TLS handshake itself refuses; see ``SimulatorConfig``). A persona's
``[auth]`` is the injector's ``baseline``: it stays in force across resets.
"""

from __future__ import annotations

import base64
import binascii
import collections
import hmac
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from mm7.core.errors import MM7Error
from mm7.simulator.digest import DigestCheck, DigestCredentials, DigestVerifier


class FaultConfigError(MM7Error):
    """A fault description that names an unknown kind or key, or an impossible value."""


class FaultKind(StrEnum):
    LATENCY = "latency"
    HTTP = "http"
    RESET = "reset"
    TRUNCATE = "truncate"
    MALFORMED_XML = "malformed-xml"
    STATUS = "status"
    UNAUTHORIZED = "unauthorized"
    #: answered normally: holds a place in the one-shot queue ("3 x 4006, then 1000")
    ACCEPT = "accept"


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """One misbehaviour for one request."""

    kind: FaultKind
    #: latency: seconds to wait before answering
    delay: float = 0.0
    #: http: the HTTP status answered
    http_status: int = 500
    #: status: the MM7 status code answered, and its Details
    code: int = 3000
    details: str | None = None
    #: only a request of this operation (SubmitReq...) takes it; None: any request
    operation: str | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> FaultSpec:
        known = {"kind", "delay", "http_status", "code", "details", "rate", "operation"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FaultConfigError(f"fault: unknown key(s) {', '.join(unknown)}")
        try:
            kind = FaultKind(str(data.get("kind")))
        except ValueError:
            raise FaultConfigError(
                f"fault: kind {data.get('kind')!r} is not one of {', '.join(FaultKind)}"
            ) from None
        try:
            spec = cls(
                kind=kind,
                delay=float(data.get("delay", 0.0)),
                http_status=int(data.get("http_status", 500)),
                code=int(data.get("code", 3000)),
                details=None if data.get("details") is None else str(data["details"]),
                operation=None if data.get("operation") is None else str(data["operation"]),
            )
        except (TypeError, ValueError) as exc:
            raise FaultConfigError(f"fault {kind}: {exc}") from None
        if spec.delay < 0 or not 100 <= spec.http_status <= 599 or not 1000 <= spec.code <= 9999:
            raise FaultConfigError(f"fault {kind}: delay >= 0, http_status 100-599, code 1000-9999")
        return spec

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind.value}
        if self.operation is not None:
            out["operation"] = self.operation
        if self.kind is FaultKind.LATENCY:
            out["delay"] = self.delay
        elif self.kind is FaultKind.HTTP:
            out["http_status"] = self.http_status
        elif self.kind is FaultKind.STATUS:
            out["code"] = self.code
            if self.details is not None:
                out["details"] = self.details
        return out


@dataclass(frozen=True, slots=True)
class AuthRefusal:
    """Why a request is not let in: the HTTP status, the challenges to send, the Details."""

    http_status: int
    challenges: tuple[str, ...]
    details: str


_DIGEST_REASONS = {
    DigestCheck.MISSING: "authentication required",
    DigestCheck.MALFORMED: "Digest: the Authorization header lacks a required parameter",
    DigestCheck.WRONG: "Digest: wrong user name, realm, URI or password",
    DigestCheck.UNKNOWN_NONCE: "Digest: a nonce this MMSC did not issue",
    DigestCheck.STALE: "Digest: the nonce has expired",
    DigestCheck.REPLAY: "Digest: the nonce count was already used with this nonce",
}


class FaultInjector:
    """The faults in force. ``rng`` and ``clock`` are injectable so tests are deterministic;
    ``baseline`` (as ``configure`` takes it) is applied now and again on every reset."""

    def __init__(
        self,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] | None = None,
        baseline: Mapping[str, Any] | None = None,
    ) -> None:
        import time

        self.rng = rng or random.Random()
        self.clock = clock or time.monotonic
        self.baseline: Mapping[str, Any] = baseline or {}
        self.once: collections.deque[FaultSpec] = collections.deque()
        self.rates: list[tuple[FaultSpec, float]] = []
        #: requests per second accepted; more within one second are answered 4006
        self.tps: float | None = None
        #: request bodies above this many bytes are answered 2004
        self.max_bytes: int | None = None
        #: Basic credentials required (401 + 4001 otherwise)
        self.basic_auth: tuple[str, str] | None = None
        #: Digest credentials required (401 + 4001 otherwise), with the nonces issued
        self.digest: DigestVerifier | None = None
        #: a verified TLS client certificate required (403 + 4001 otherwise)
        self.client_cert = False
        self._arrivals: collections.deque[float] = collections.deque()
        self.configure(self.baseline)

    def reset(self) -> None:
        """No faults, no limits: only the baseline (the persona's authentication) again."""
        self.once.clear()
        self.rates.clear()
        self.tps = None
        self.max_bytes = None
        self.basic_auth = None
        self.digest = None
        self.client_cert = False
        self._arrivals.clear()
        self.configure(self.baseline)

    def set_baseline(self, baseline: Mapping[str, Any]) -> None:
        """A new baseline (another persona's authentication): its keys replace the
        authentication in force; the faults and limits set since stay."""
        FaultInjector(baseline=baseline)  # checked first: a bad one changes nothing
        self.basic_auth = None
        self.digest = None
        self.client_cert = False
        self.baseline = baseline
        self.configure(baseline)

    def configure(self, data: Mapping[str, Any]) -> None:
        """Add one-shot faults and replace the rates/limits that ``data`` names."""
        known = {"once", "rates", "tps", "max_bytes", "basic_auth", "digest_auth", "client_cert"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FaultConfigError(f"faults: unknown key(s) {', '.join(unknown)}")
        once = [FaultSpec.from_mapping(x) for x in _list(data.get("once", []), "once")]
        rates: list[tuple[FaultSpec, float]] = []
        for item in _list(data.get("rates", []), "rates"):
            rate = item.get("rate") if isinstance(item, Mapping) else None
            if not isinstance(rate, int | float) or not 0 <= rate <= 1:
                raise FaultConfigError("rates: each needs a rate between 0 and 1")
            rates.append((FaultSpec.from_mapping(item), float(rate)))
        self.once.extend(once)
        if "rates" in data:
            self.rates = rates
        if "tps" in data:
            tps = data["tps"]
            if tps is not None and (not isinstance(tps, int | float) or tps <= 0):
                raise FaultConfigError("tps: a positive number (or null for no limit)")
            self.tps = None if tps is None else float(tps)
        if "max_bytes" in data:
            size = data["max_bytes"]
            if size is not None and (not isinstance(size, int) or size <= 0):
                raise FaultConfigError("max_bytes: a positive integer (or null for no limit)")
            self.max_bytes = size
        if "basic_auth" in data:
            auth = data["basic_auth"]
            if auth is None:
                self.basic_auth = None
            elif isinstance(auth, Mapping) and {"user", "password"} <= set(auth):
                self.basic_auth = (str(auth["user"]), str(auth["password"]))
            else:
                raise FaultConfigError("basic_auth: {user, password} (or null)")
        if "digest_auth" in data:
            digest = data["digest_auth"]
            if digest is None:
                self.digest = None
            elif (
                isinstance(digest, Mapping)
                and {"user", "password"} <= set(digest)
                and set(digest) <= {"user", "password", "realm", "nonce_lifetime"}
            ):
                try:
                    lifetime = float(digest.get("nonce_lifetime", 300.0))
                except (TypeError, ValueError):
                    lifetime = -1.0
                if lifetime <= 0:
                    raise FaultConfigError("digest_auth.nonce_lifetime: seconds, > 0")
                credentials = DigestCredentials(
                    str(digest["user"]),
                    str(digest["password"]),
                    str(digest.get("realm", "mm7-simulator")),
                )
                self.digest = DigestVerifier(credentials, lifetime=lifetime, clock=self.clock)
            else:
                raise FaultConfigError(
                    "digest_auth: {user, password, realm?, nonce_lifetime?} (or null)"
                )
        if "client_cert" in data:
            if not isinstance(data["client_cert"], bool):
                raise FaultConfigError("client_cert: true or false")
            self.client_cert = data["client_cert"]

    def to_json(self) -> dict[str, Any]:
        """What is in force (the password is never shown)."""
        return {
            "once": [f.to_json() for f in self.once],
            "rates": [{**f.to_json(), "rate": r} for f, r in self.rates],
            "tps": self.tps,
            "max_bytes": self.max_bytes,
            "basic_auth": None if self.basic_auth is None else {"user": self.basic_auth[0]},
            "digest_auth": None
            if self.digest is None
            else {
                "user": self.digest.credentials.user,
                "realm": self.digest.credentials.realm,
                "nonce_lifetime": self.digest.lifetime,
            },
            "client_cert": self.client_cert,
        }

    @property
    def shared(self) -> bool:
        """Whether something in force has state one process must keep for all requests: the
        one-shot queue (each fault taken once), the TPS window, Digest nonces. With workers
        (``mm7.simulator.cluster``) such requests are decided by the parent."""
        return bool(self.once) or self.tps is not None or self.digest is not None

    def stateless(self) -> dict[str, Any]:
        """What in force any process can apply alone, as ``configure`` takes it (secrets
        included: for a worker's copy, never for display): rates, size limit, Basic, client
        certificate."""
        basic = self.basic_auth
        return {
            "rates": [{**f.to_json(), "rate": r} for f, r in self.rates],
            "max_bytes": self.max_bytes,
            "basic_auth": None if basic is None else {"user": basic[0], "password": basic[1]},
            "client_cert": self.client_cert,
        }

    def mirror(self, stateless: Mapping[str, Any]) -> None:
        """Become a copy of another injector's ``stateless()``: nothing else in force, no
        baseline of its own (the other's baseline is in what it sent)."""
        copy = FaultInjector(rng=self.rng, clock=self.clock)
        copy.configure(stateless)  # checked first: a bad one changes nothing
        self.baseline = {}
        self.reset()
        self.configure(stateless)

    def queue(self, specs: list[FaultSpec]) -> None:
        """Add one-shot faults as they are (a scenario's answers)."""
        self.once.extend(specs)

    def queued(self, spec: FaultSpec) -> bool:
        """Whether this very ``spec`` is still waiting in the one-shot queue."""
        return any(item is spec for item in self.once)

    def withdraw(self, spec: FaultSpec) -> None:
        """Take every copy of this very ``spec`` out of the one-shot queue."""
        kept = [item for item in self.once if item is not spec]
        self.once.clear()
        self.once.extend(kept)

    def next_fault(self, operation: Callable[[], str | None] | None = None) -> FaultSpec | None:
        """The fault for the request at hand: the first one-shot it matches, else one drawn
        from the rates. ``operation`` tells the request's operation; asked only when a fault
        is aimed at one (it may decode the body)."""
        asked: list[str | None] = []

        def matches(spec: FaultSpec) -> bool:
            if spec.operation is None:
                return True
            if not asked:
                asked.append(operation() if operation is not None else None)
            return asked[0] == spec.operation

        for index, spec in enumerate(self.once):
            if matches(spec):
                del self.once[index]
                return spec
        for spec, rate in self.rates:
            if rate > 0 and matches(spec) and self.rng.random() < rate:
                return spec
        return None

    def over_tps(self) -> bool:
        """Whether one more request now exceeds the TPS limit (accepted ones are counted)."""
        if self.tps is None:
            return False
        now = self.clock()
        while self._arrivals and now - self._arrivals[0] >= 1.0:
            self._arrivals.popleft()
        if len(self._arrivals) >= self.tps:
            return True
        self._arrivals.append(now)
        return False

    def check_auth(
        self, authorization: str | None, method: str, uri: str, *, client_cert: bool
    ) -> AuthRefusal | None:
        """None when the request may go on; else how to refuse it. ``uri``: the request-target
        as sent (path and query), which a Digest answer must name."""
        if self.client_cert and not client_cert:
            details = "a client certificate from the configured CA is required (mutual TLS)"
            return AuthRefusal(403, (), details)
        if self.basic_auth is None and self.digest is None:
            return None
        if self.basic_auth is not None and self._basic_ok(authorization):
            return None
        reason = "authentication required"
        challenges: list[str] = []
        if self.digest is not None:
            result = self.digest.check(authorization, method, uri)
            if result is DigestCheck.OK:
                return None
            if authorization and authorization.lower().startswith("digest"):
                reason = _DIGEST_REASONS[result]
            challenges.append(self.digest.challenge(stale=result is DigestCheck.STALE))
        if self.basic_auth is not None:
            if authorization and authorization.startswith("Basic "):
                reason = "Basic: wrong user name or password"
            challenges.append('Basic realm="mm7-simulator"')
        return AuthRefusal(401, tuple(challenges), reason)

    def injected_refusal(self) -> AuthRefusal:
        """The 401 of an ``unauthorized`` fault: a challenge per configured scheme (Digest with
        ``stale=true``), a Basic one when none is configured."""
        challenges: list[str] = []
        if self.digest is not None:
            challenges.append(self.digest.challenge(stale=True))
        if self.basic_auth is not None or self.digest is None:
            challenges.append('Basic realm="mm7-simulator"')
        return AuthRefusal(401, tuple(challenges), "authentication required (session expired)")

    def _basic_ok(self, header: str | None) -> bool:
        """Whether an Authorization header carries the required Basic credentials."""
        if self.basic_auth is None or not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        want_user, want_password = self.basic_auth
        return hmac.compare_digest(user.encode(), want_user.encode()) and hmac.compare_digest(
            password.encode(), want_password.encode()
        )


def _list(value: Any, key: str) -> list[Any]:
    if not isinstance(value, list):
        raise FaultConfigError(f"{key}: expected a list")
    return value
