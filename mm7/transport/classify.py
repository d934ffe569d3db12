"""The one table deciding what an MM7 exchange's outcome means: success, partial success, a
transient failure (retry with backoff) or a permanent one (fail, report, keep).

Three sections, looked up in this order: the MM7 status code when the response carried one (the
body wins over the HTTP status: a 2002 inside an HTTP 500 is permanent), else the HTTP status,
else the transport outcome (timeout, reset, TLS, ...). Each section is overridable per link,
because carriers give their own codes their own meaning (SKT 2101-2104, 4101 maintenance).

Why each default is what it is:

- 1000/1100 succeed; 1100 is PARTIAL so that fan-out maps it back to recipients.
- 2xxx are client errors: the same bytes sent again fail again -> permanent.
- 3000, 3001 and 4000, 4005, 4006, 4008 say "not now" (server error, not possible yet, general
  or service error, unavailable, over volume/throttled) -> transient.
- 3002-3004 and 4001-4004, 4007 refuse the request itself (rejected, addressing not supported,
  identification, version, operation, validation, denied) -> permanent.
- Unknown codes go by class: 1xxx success, 2xxx permanent, 3xxx/4xxx and anything outside
  1000-4999 (VectorCore's "5000") transient. A wrong "transient" costs a bounded number of
  retries; a wrong "permanent" loses a message.
- HTTP without a usable MM7 body: 408, 425, 429 and every 5xx transient; other 4xx permanent (a
  401/403 repeated can lock the account); a 2xx with a malformed or blank body is permanent: the
  MMSC has most likely accepted the message, and sending it again could deliver it twice.
- Transport: timeouts, refused connections, resets and TLS failures are transient: they say
  nothing about the message, the breaker stops the link hammering a dead peer, and the retry
  budget bounds the rest. A request we cannot even encode is permanent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from mm7.core.errors import MM7Error

__all__ = [
    "HTTP_DEFAULTS",
    "OUTCOME_DEFAULTS",
    "STATUS_DEFAULTS",
    "Classifier",
    "Outcome",
    "Overrides",
    "Verdict",
]


class Verdict(StrEnum):
    """What an outcome means for the caller."""

    SUCCESS = "success"
    PARTIAL = "partial"
    TRANSIENT = "transient"
    PERMANENT = "permanent"

    @property
    def ok(self) -> bool:
        """Success or partial success: the request was accepted."""
        return self in (Verdict.SUCCESS, Verdict.PARTIAL)


class Outcome(StrEnum):
    """How an exchange ended, before its meaning is looked up; errors carry it as ``outcome``."""

    #: a response body carried an MM7 status (also: a Fault with X-MM7-Status-Code)
    MM7_STATUS = "mm7-status"
    #: an HTTP status with no usable MM7 body (bare 503, HTML error page, 401 challenge)
    HTTP_STATUS = "http-status"
    #: a SOAP Fault with no MM7 status: classified by its faultcode
    FAULT_CLIENT = "fault-client"
    FAULT_SERVER = "fault-server"
    FAULT_OTHER = "fault-other"
    #: the request or the response took longer than the link's timeouts
    TIMEOUT = "timeout"
    #: the TCP connection could not be made (refused, DNS, unreachable, connect timeout)
    CONNECT_ERROR = "connect-error"
    #: the connection dropped mid-exchange (reset, disconnected, truncated body)
    CONNECTION_RESET = "connection-reset"
    #: the TLS handshake failed (certificate refused, hostname mismatch, alert from the peer)
    TLS_ERROR = "tls-error"
    #: an answer we cannot use: a 2xx whose body is not MM7 (malformed XML, not SOAP, over the
    #: size limit), a malformed authentication challenge
    MALFORMED = "malformed"
    #: a blank 2xx response the link's dialect does not accept
    BLANK_200 = "blank-200"
    #: a well-formed MM7 response of the wrong kind (a DeliverRsp to a SubmitReq)
    UNEXPECTED_RESPONSE = "unexpected-response"
    #: the request could not be built (EmitError, too many recipients for the link)
    INVALID_REQUEST = "invalid-request"
    #: refused locally: the link's circuit breaker is open (nothing was sent)
    CIRCUIT_OPEN = "circuit-open"


T, P = Verdict.TRANSIENT, Verdict.PERMANENT

#: spec codes; unknown codes fall back to their class (``_by_class``)
STATUS_DEFAULTS: Mapping[int, Verdict] = {
    1000: Verdict.SUCCESS,
    1100: Verdict.PARTIAL,
    **{code: P for code in range(2000, 2010)},
    3000: T,  # Server Error
    3001: T,  # Not Possible (yet)
    3002: P,  # Message rejected
    3003: P,  # Multiple addresses not supported
    3004: P,  # Application Addressing not supported
    4000: T,  # General service error
    4001: P,  # Improper identification
    4002: P,  # Unsupported version
    4003: P,  # Unsupported operation
    4004: P,  # Validation error
    4005: T,  # Service error
    4006: T,  # Service unavailable
    4007: P,  # Service denied
    4008: T,  # Application denied / over registered volume (throttling)
}

#: HTTP statuses seen without a usable MM7 body; others: 2xx -> MALFORMED, 4xx P, 5xx T
HTTP_DEFAULTS: Mapping[int, Verdict] = {408: T, 425: T, 429: T, 501: P, 505: P}

OUTCOME_DEFAULTS: Mapping[Outcome, Verdict] = {
    Outcome.FAULT_CLIENT: P,  # SOAP 1.1: do not resend unchanged
    Outcome.FAULT_SERVER: T,  # SOAP 1.1: may succeed later
    Outcome.FAULT_OTHER: P,  # VersionMismatch, MustUnderstand
    Outcome.TIMEOUT: T,
    Outcome.CONNECT_ERROR: T,
    Outcome.CONNECTION_RESET: T,
    Outcome.TLS_ERROR: T,
    Outcome.MALFORMED: P,
    Outcome.BLANK_200: P,
    Outcome.UNEXPECTED_RESPONSE: P,
    Outcome.INVALID_REQUEST: P,
    Outcome.CIRCUIT_OPEN: T,
}

_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


class OverrideError(MM7Error):
    """A classification override that names an unknown verdict, outcome or a bad code range."""


@dataclass(frozen=True, slots=True)
class Overrides:
    """Per-link changes to the table: MM7 codes, HTTP statuses and outcomes, each to a verdict."""

    status: Mapping[int, Verdict] = field(default_factory=dict)
    http: Mapping[int, Verdict] = field(default_factory=dict)
    outcomes: Mapping[Outcome, Verdict] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Overrides:
        """From configuration: ``{"transient": ["4101"], "permanent": ["2101-2104", 3001],
        "http_transient": [409], "http_permanent": [503], "outcomes": {"tls-error": "permanent"}}``.
        """
        known = {"transient", "permanent", "http_transient", "http_permanent", "outcomes"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise OverrideError(f"unknown classification key(s): {', '.join(unknown)}")
        status: dict[int, Verdict] = {}
        http: dict[int, Verdict] = {}
        for key, verdict, target in (
            ("transient", T, status),
            ("permanent", P, status),
            ("http_transient", T, http),
            ("http_permanent", P, http),
        ):
            for code in _codes(key, data.get(key, ())):
                target[code] = verdict
        outcomes: dict[Outcome, Verdict] = {}
        raw = data.get("outcomes", {})
        if not isinstance(raw, Mapping):
            raise OverrideError(f"outcomes: expected a table, got {raw!r}")
        for name, value in raw.items():
            try:
                outcomes[Outcome(name)] = Verdict(value)
            except ValueError:
                raise OverrideError(
                    f"outcomes: {name!r} = {value!r}: outcomes are "
                    f"{', '.join(Outcome)}; verdicts are {', '.join(Verdict)}"
                ) from None
        return cls(status, http, outcomes)


def _codes(key: str, values: Iterable[Any]) -> list[int]:
    """Codes from ints and "a-b" range strings."""
    if isinstance(values, str | int):
        values = [values]
    out: list[int] = []
    for value in values:
        if isinstance(value, bool):
            raise OverrideError(f"{key}: {value!r} is not a code")
        if isinstance(value, int):
            out.append(value)
            continue
        match = _RANGE.match(str(value))
        if match is None:
            raise OverrideError(f"{key}: {value!r} is not a code or a range like 2101-2104")
        low = int(match.group(1))
        high = int(match.group(2) or low)
        if high < low:
            raise OverrideError(f"{key}: range {value!r} is empty")
        out.extend(range(low, high + 1))
    return out


def _by_class(code: int) -> Verdict:
    if 1000 <= code <= 1999:
        return Verdict.SUCCESS
    if 2000 <= code <= 2999:
        return P
    return T


class Classifier:
    """The table with one link's overrides applied; cheap, immutable, shared by the link."""

    __slots__ = ("_http", "_outcomes", "_status")

    def __init__(self, overrides: Overrides | None = None) -> None:
        o = overrides or Overrides()
        self._status = {**STATUS_DEFAULTS, **o.status}
        self._http = {**HTTP_DEFAULTS, **o.http}
        self._outcomes = {**OUTCOME_DEFAULTS, **o.outcomes}

    def status(self, code: int) -> Verdict:
        """What an MM7 status code means (spec table, then the link's codes, then its class)."""
        found = self._status.get(code)
        return found if found is not None else _by_class(code)

    def http(self, status: int) -> Verdict:
        """What an HTTP status means when the body had no usable MM7 status."""
        found = self._http.get(status)
        if found is not None:
            return found
        if 200 <= status <= 299:
            return self._outcomes[Outcome.MALFORMED]
        if 500 <= status <= 599:
            return T
        return P

    def outcome(self, outcome: Outcome) -> Verdict:
        """What a transport-level outcome means (MM7_STATUS and HTTP_STATUS need a code)."""
        if outcome in (Outcome.MM7_STATUS, Outcome.HTTP_STATUS):
            raise ValueError(f"{outcome} is classified by its code: use status() or http()")
        return self._outcomes[outcome]

    def table(self) -> dict[str, dict[str, str]]:
        """The effective table, for documentation and ``mm7 link show``-style output."""
        return {
            "status": {str(k): v.value for k, v in sorted(self._status.items())},
            "http": {str(k): v.value for k, v in sorted(self._http.items())},
            "outcomes": {k.value: v.value for k, v in self._outcomes.items()},
        }
