"""The MMSC probe: the plan's SubmitReqs sent through mm7's own client, what the MMSC accepted
and refused (with its status and reason), and the dialect to use with it.

    result = await probe(Endpoint(url, auth=...), ProbeSettings(to="+15551230001"))
    result.accepted, result.refused, result.dialect      # dialect: [dialects.NAME] keys

First every namespace/MM7Version pair is tried with the baseline packaging; the newest accepted
pair (newest namespace, then newest MM7Version) becomes the base, and each packaging variant is
tried on it once. When no pair is accepted, no packaging variant is sent and there is no dialect
to recommend: the refusals say why. The recommended dialect is the base's: the baseline
packaging, which the MMSC took; the other findings (SMIL required, chunked refused...) are kept
as notes, since some are not dialect settings (SMIL is the content profile's). An MMSC that
cannot be reached is given up after ``MAX_UNREACHABLE`` connection failures in a row: the rest
of the plan is listed as not sent.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mm7 import __version__
from mm7.interop.errors import InteropError
from mm7.interop.mmsc_plan import (
    ProbeSettings,
    Variant,
    packaging_variants,
    pair_variants,
    plan_size,
    submit_for,
)
from mm7.interop.peer_text import peer_text
from mm7.interop.tls_hint import no_certificate_hint
from mm7.interop.urls import check_peer
from mm7.transport.classify import Outcome
from mm7.transport.client import MM7Client
from mm7.transport.errors import LinkConfigError, MM7ClientError
from mm7.transport.link import ClientAuth, LinkConfig, TLSConfig

__all__ = ["Endpoint", "ProbeResult", "Tried", "check_budget", "probe", "recommend"]

#: connection failures in a row (nothing reached the MMSC: refused, unreachable, connect
#: timeout, TLS) after which the remaining variants are not sent; a slow answer is not one
MAX_UNREACHABLE = 3


@dataclass(frozen=True, slots=True)
class Endpoint:
    """The MMSC's MM7 URL and how to reach it."""

    url: str
    auth: ClientAuth | None = None
    tls: TLSConfig | None = None
    #: seconds one SubmitReq may take
    timeout: float = 30.0

    def __post_init__(self) -> None:
        check_peer(self.url, tls=self.tls is not None, timeout=self.timeout)


@dataclass(frozen=True, slots=True)
class Tried:
    """One variant sent: accepted (with the MessageID given) or refused (status and reason)."""

    variant: Variant
    accepted: bool
    #: the MM7 status answered (None: no MM7 status, e.g. a bare HTTP error)
    status: int | None
    http_status: int | None
    #: why it was refused, in words (None when accepted)
    reason: str | None
    message_id: str | None = None
    #: False when the connection itself failed (the MMSC never saw the request)
    reached: bool = True
    #: False when it was not sent at all (the MMSC could not be reached before it)
    sent: bool = True


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """A whole probe: every variant tried, in order, and what follows from them."""

    url: str
    to: str
    started: datetime
    tried: tuple[Tried, ...]
    #: the accepted pair the packaging variants were tried on; None when none was accepted
    base: Variant | None

    @property
    def accepted(self) -> list[Tried]:
        """The variants the MMSC took, in the order sent."""
        return [t for t in self.tried if t.accepted]

    @property
    def refused(self) -> list[Tried]:
        """The variants the MMSC refused, in the order sent."""
        return [t for t in self.tried if not t.accepted]

    @property
    def findings(self) -> list[str]:
        """One line per packaging variant refused: what the MMSC will not take."""
        return [
            f"{t.variant.what} ({t.variant.name}): {_answer(t)}"
            for t in self.tried
            if t.variant.kind == "packaging" and not t.accepted
        ]

    @property
    def smil_required(self) -> bool:
        """Whether the SubmitReq without SMIL was refused."""
        return any(t.variant.name == "no-smil" and not t.accepted for t in self.tried)

    @property
    def dialect(self) -> dict[str, Any] | None:
        """The recommended dialect as ``[dialects.NAME]`` keys; None when nothing was accepted."""
        return None if self.base is None else recommend(self)


def _answer(tried: Tried) -> str:
    bits = []
    if tried.status is not None:
        bits.append(f"status {tried.status}")
    if tried.http_status is not None and tried.http_status != 200:
        bits.append(f"HTTP {tried.http_status}")
    return ", ".join(bits) or "no answer"


def recommend(result: ProbeResult) -> dict[str, Any]:
    """The base pair with the baseline packaging, and the findings as notes."""
    base = result.base
    if base is None:
        raise InteropError("no namespace/MM7Version pair was accepted: nothing to recommend")
    notes = f"probed with mm7 interop mmsc on {result.started:%Y-%m-%d}"
    refused = [t.variant.name for t in result.refused if t.variant.kind == "packaging"]
    if refused:
        notes += "; refused: " + ", ".join(refused)
    return {
        "extends": "3gpp",
        "version": base.version.token,
        "mm7_version": base.mm7_version,
        "number_plus": base.number_plus,
        "chunked": base.chunked,
        "transfer_encoding": base.transfer_encoding,
        "soap_action": base.soap_action,
        "notes": notes,
    }


def check_budget(settings: ProbeSettings, max_requests: int) -> int:
    """The plan's size, when it is within ``max_requests``; InteropError says by how much not."""
    needed = plan_size(settings)
    if needed > max_requests:
        raise InteropError(
            f"the probe needs {needed} requests (real messages to {settings.to}) and "
            f"--max-requests is {max_requests}: raise it to {needed}, or narrow --versions"
        )
    return needed


async def probe(
    endpoint: Endpoint,
    settings: ProbeSettings,
    *,
    max_requests: int,
    on_tried: Callable[[Tried], None] | None = None,
) -> ProbeResult:
    """Send the plan (refused before anything is sent when it needs more than
    ``max_requests``); ``on_tried`` hears of each variant as it is answered."""
    check_budget(settings, max_requests)
    started = datetime.now(UTC)
    tried: list[Tried] = []
    unreachable = 0

    async def attempt(variant: Variant) -> Tried:
        nonlocal unreachable
        if unreachable >= MAX_UNREACHABLE:
            why = (
                "not sent: the MMSC could not be reached "
                f"({unreachable} connection failures in a row)"
            )
            result = Tried(variant, False, None, None, why, reached=False, sent=False)
        else:
            result = await _send(endpoint, settings, variant)
            unreachable = 0 if result.reached else unreachable + 1
        tried.append(result)
        if on_tried is not None:
            on_tried(result)
        return result

    accepted_pairs = [v for v in pair_variants(settings) if (await attempt(v)).accepted]
    base = _newest(accepted_pairs)
    if base is not None:
        for variant in packaging_variants(base, settings):
            await attempt(variant)
    return ProbeResult(endpoint.url, settings.to, started, tuple(tried), base)


def _newest(pairs: list[Variant]) -> Variant | None:
    """The newest namespace accepted, with its newest MM7Version accepted."""
    if not pairs:
        return None

    def key(v: Variant) -> tuple[tuple[int, int], tuple[int, ...]]:
        return v.version.key, tuple(int(x) for x in v.mm7_version.split("."))

    return max(pairs, key=key)


async def _send(endpoint: Endpoint, settings: ProbeSettings, variant: Variant) -> Tried:
    try:
        link = LinkConfig(
            name="probe",
            url=endpoint.url,
            dialect=variant.dialect(),
            auth=endpoint.auth,
            tls=endpoint.tls,
            request_timeout=endpoint.timeout,
            connect_timeout=min(endpoint.timeout, 10.0),
            max_in_flight=1,
            breaker_threshold=0,  # every variant is sent, whatever the one before met
            user_agent=f"mm7-interop/{__version__}",
        )
        client = MM7Client(link)
    except LinkConfigError as exc:
        raise InteropError(str(exc).replace("link 'probe': ", "")) from None
    request = submit_for(variant, settings, uuid.uuid4().hex)
    async with client:
        try:
            answered = await client.send(request)
        except MM7ClientError as exc:
            reason = exc.reason
            if exc.details:
                reason = f"{reason}: {exc.details}"
            # a reset (TLS 1.3) or a handshake aborted (TLS 1.2) may be a client certificate
            # wanted; a certificate of theirs we could not verify is not
            verify = "verify failed" in reason.lower()
            dropped = exc.outcome is Outcome.CONNECTION_RESET or (
                exc.outcome is Outcome.TLS_ERROR and not verify
            )
            hint = no_certificate_hint(endpoint.url, endpoint.tls, dropped=dropped)
            reached = exc.outcome not in (Outcome.CONNECT_ERROR, Outcome.TLS_ERROR)
            reason = peer_text(reason, 300) + hint
            return Tried(variant, False, exc.code, exc.http_status, reason, reached=reached)
    message_id = getattr(answered.message, "message_id", None)
    return Tried(
        variant,
        True,
        answered.status.code,
        answered.http_status,
        None,
        peer_text(message_id, 100) if message_id else None,
    )
