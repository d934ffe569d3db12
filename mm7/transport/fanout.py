"""Recipient fan-out: carriers cap the recipients of one SubmitReq, so a request with more than
the link takes is split into several requests, sent concurrently through the link's flow control,
and every recipient gets its own result.

Partial success (1100) has no per-recipient structure in TS 23.140; MMSCs name the recipients
that failed in Status/Details. So: the recipients of that request named in Details are REJECTED,
the others ACCEPTED; when Details names none of them, all are PARTIAL (accepted as far as we
know: the delivery reports will tell). A request that fails gives each of its recipients that
failure (transient or permanent), so the gateway can retry only those.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from mm7.core.model import Address, Recipients, Status, SubmitReq, SubmitRsp
from mm7.transport.client import MM7Client, new_transaction_id
from mm7.transport.errors import MM7ClientError

__all__ = [
    "RecipientOutcome",
    "RecipientResult",
    "Slot",
    "named_in_details",
    "split_submit",
    "submit_fanout",
]

Field = Literal["to", "cc", "bcc"]
#: one recipient's place in the original request: its list and the address
Slot = tuple[Field, Address]


class RecipientOutcome(StrEnum):
    """What happened to one recipient."""

    ACCEPTED = "accepted"
    #: its request answered 1100 without saying which recipients failed
    PARTIAL = "partial"
    #: refused for good (named in a 1100's Details, or its request failed permanently)
    REJECTED = "rejected"
    #: its request failed transiently: retry this recipient
    TRANSIENT = "transient"


@dataclass(frozen=True, slots=True)
class RecipientResult:
    """One recipient's result, in the order of the original To, Cc, Bcc lists."""

    address: Address
    field: Field
    outcome: RecipientOutcome
    #: the TransactionID of the request that carried it
    transaction_id: str
    #: the MessageID the MMSC gave that request (for delivery-report correlation)
    message_id: str | None = None
    status: Status | None = None
    error: MM7ClientError | None = None

    @property
    def accepted(self) -> bool:
        """ACCEPTED or PARTIAL: the MMSC took it (as far as it said)."""
        return self.outcome in (RecipientOutcome.ACCEPTED, RecipientOutcome.PARTIAL)

    @property
    def transient(self) -> bool:
        return self.outcome is RecipientOutcome.TRANSIENT


def _slots(recipients: Recipients) -> list[Slot]:
    out: list[Slot] = [("to", a) for a in recipients.to]
    out += [("cc", a) for a in recipients.cc]
    out += [("bcc", a) for a in recipients.bcc]
    return out


def split_submit(request: SubmitReq, max_recipients: int) -> list[tuple[SubmitReq, list[Slot]]]:
    """The requests to send (at most ``max_recipients`` each, To/Cc/Bcc kept) with the recipients
    each carries. One request keeps the TransactionID; several get ``<id>-1``, ``<id>-2``..."""
    if max_recipients < 1:
        raise ValueError("max_recipients must be >= 1")
    slots = _slots(request.recipients)
    if len(slots) <= max_recipients:
        return [(request, slots)]
    base = request.transaction_id or new_transaction_id()
    out: list[tuple[SubmitReq, list[Slot]]] = []
    for n, start in enumerate(range(0, len(slots), max_recipients), 1):
        group = slots[start : start + max_recipients]
        recipients = Recipients(
            to=tuple(a for f, a in group if f == "to"),
            cc=tuple(a for f, a in group if f == "cc"),
            bcc=tuple(a for f, a in group if f == "bcc"),
        )
        part = dataclasses.replace(request, recipients=recipients, transaction_id=f"{base}-{n}")
        out.append((part, group))
    return out


_TOKEN = re.compile(r"[^\s,;()<>\[\]{}\"'|]+")


def _norm(value: str) -> str:
    v = value.strip().lower()
    for prefix in ("tel:", "mailto:", "sip:"):
        v = v.removeprefix(prefix)
    v = v.removesuffix("/type=plmn").rstrip(".:")
    return v.lstrip("+")


def named_in_details(details: str | None, addresses: list[Address]) -> set[int]:
    """Indexes of ``addresses`` that a Status/Details text names ('+' and /TYPE=PLMN ignored)."""
    if not details:
        return set()
    tokens = {_norm(t) for t in _TOKEN.findall(details)}
    return {i for i, a in enumerate(addresses) if _norm(a.value) in tokens}


async def submit_fanout(
    client: MM7Client, request: SubmitReq, *, max_recipients: int | None = None
) -> list[RecipientResult]:
    """Send ``request`` split by ``max_recipients`` (default: the link's), concurrently, and
    return one result per recipient. MM7ClientErrors become results; anything else propagates."""
    limit = max_recipients or client.link.max_recipients or len(request.recipients) or 1
    if not request.transaction_id:
        request = dataclasses.replace(request, transaction_id=new_transaction_id())
    plan = split_submit(request, limit)
    answers = await asyncio.gather(
        *(client.submit(part) for part, _ in plan), return_exceptions=True
    )
    results: list[RecipientResult] = []
    for (part, group), answer in zip(plan, answers, strict=True):
        if isinstance(answer, MM7ClientError):
            outcome = RecipientOutcome.TRANSIENT if answer.transient else RecipientOutcome.REJECTED
            results += [
                RecipientResult(
                    a, f, outcome, part.transaction_id, status=answer.status, error=answer
                )
                for f, a in group
            ]
            continue
        if isinstance(answer, BaseException):
            raise answer
        results += _map_response(answer, part.transaction_id, group)
    return results


def _map_response(rsp: SubmitRsp, tid: str, group: list[Slot]) -> list[RecipientResult]:
    """Per-recipient results of one successful (1000) or partly successful (1100) request."""
    if rsp.status.code != 1100:
        return [
            RecipientResult(a, f, RecipientOutcome.ACCEPTED, tid, rsp.message_id, rsp.status)
            for f, a in group
        ]
    failed = named_in_details(rsp.status.details, [a for _, a in group])
    if not failed:
        return [
            RecipientResult(a, f, RecipientOutcome.PARTIAL, tid, rsp.message_id, rsp.status)
            for f, a in group
        ]
    out = []
    for i, (f, a) in enumerate(group):
        outcome = RecipientOutcome.REJECTED if i in failed else RecipientOutcome.ACCEPTED
        out.append(RecipientResult(a, f, outcome, tid, rsp.message_id, rsp.status))
    return out
