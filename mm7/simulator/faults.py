"""Fault injection: what the simulated MMSC does wrong, per request (a one-shot queue) or as a
rate, plus standing limits (TPS, request size, Basic authentication).

Configured from JSON (the control API) or TOML (``--config``)::

    {"once": [{"kind": "http", "http_status": 503}],
     "rates": [{"kind": "latency", "delay": 0.5, "rate": 0.1}],
     "tps": 5, "max_bytes": 300000, "basic_auth": {"user": "vasp", "password": "pw"}}

Kinds: ``latency`` (wait ``delay`` seconds, then answer normally), ``http`` (a bare HTTP
``http_status``, no SOAP), ``reset`` (TCP reset before answering), ``truncate`` (the real answer
cut in half under its full Content-Length), ``malformed-xml`` (HTTP 200 with broken XML),
``status`` (answer MM7 status ``code`` with ``details``, in the persona's error shape).
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


class FaultConfigError(MM7Error):
    """A fault description that names an unknown kind or key, or an impossible value."""


class FaultKind(StrEnum):
    LATENCY = "latency"
    HTTP = "http"
    RESET = "reset"
    TRUNCATE = "truncate"
    MALFORMED_XML = "malformed-xml"
    STATUS = "status"


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

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> FaultSpec:
        known = {"kind", "delay", "http_status", "code", "details", "rate"}
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
            )
        except (TypeError, ValueError) as exc:
            raise FaultConfigError(f"fault {kind}: {exc}") from None
        if spec.delay < 0 or not 100 <= spec.http_status <= 599 or not 1000 <= spec.code <= 9999:
            raise FaultConfigError(f"fault {kind}: delay >= 0, http_status 100-599, code 1000-9999")
        return spec

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind.value}
        if self.kind is FaultKind.LATENCY:
            out["delay"] = self.delay
        elif self.kind is FaultKind.HTTP:
            out["http_status"] = self.http_status
        elif self.kind is FaultKind.STATUS:
            out["code"] = self.code
            if self.details is not None:
                out["details"] = self.details
        return out


class FaultInjector:
    """The faults in force. ``rng`` and ``clock`` are injectable so tests are deterministic."""

    def __init__(
        self, *, rng: random.Random | None = None, clock: Callable[[], float] | None = None
    ) -> None:
        import time

        self.rng = rng or random.Random()
        self.clock = clock or time.monotonic
        self.once: collections.deque[FaultSpec] = collections.deque()
        self.rates: list[tuple[FaultSpec, float]] = []
        #: requests per second accepted; more within one second are answered 4006
        self.tps: float | None = None
        #: request bodies above this many bytes are answered 2004
        self.max_bytes: int | None = None
        #: Basic credentials required (401 + 4001 otherwise)
        self.basic_auth: tuple[str, str] | None = None
        self._arrivals: collections.deque[float] = collections.deque()

    def reset(self) -> None:
        """No faults, no limits."""
        self.once.clear()
        self.rates.clear()
        self.tps = None
        self.max_bytes = None
        self.basic_auth = None
        self._arrivals.clear()

    def configure(self, data: Mapping[str, Any]) -> None:
        """Add one-shot faults and replace the rates/limits that ``data`` names."""
        known = {"once", "rates", "tps", "max_bytes", "basic_auth"}
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

    def to_json(self) -> dict[str, Any]:
        """What is in force (the password is never shown)."""
        return {
            "once": [f.to_json() for f in self.once],
            "rates": [{**f.to_json(), "rate": r} for f, r in self.rates],
            "tps": self.tps,
            "max_bytes": self.max_bytes,
            "basic_auth": None if self.basic_auth is None else {"user": self.basic_auth[0]},
        }

    def next_fault(self) -> FaultSpec | None:
        """The fault for the request at hand: the next one-shot, else one drawn from the rates."""
        if self.once:
            return self.once.popleft()
        for spec, rate in self.rates:
            if rate > 0 and self.rng.random() < rate:
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

    def authorized(self, header: str | None) -> bool:
        """Whether an Authorization header satisfies the Basic requirement (if any)."""
        if self.basic_auth is None:
            return True
        if not header or not header.startswith("Basic "):
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
