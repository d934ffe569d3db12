"""Early reports: delivery reports and read replies that arrive before their MessageID is known.

An MMSC may send a DeliveryReportReq before, or in parallel with, the SubmitRsp that gives the
gateway the MessageID (on a cluster the report may also reach another instance first). Such a
report matches no message when it arrives: it is answered 1000 and kept as unknown, as any
unknown report, and also in ``early_reports`` (every backend), with what correlating it needs
later: its links (the peer's own first, then the other links it serves), both addresses and the
details recorded with it.

When ``complete`` records (link, MessageID) for a recipient, in that same transaction, the kept
reports of that MessageID are correlated again, oldest first, exactly as a report arriving now
would be (``_correlate`` of the backend: the report's links in order, its address, then its other
address). Those that now name this recipient are applied to it as if they had just arrived: the
recipient's status (after it became ``submitted``), the report's event on the message, the relay
event for the application, the message's roll-up; the stored report becomes a correlated one and
leaves ``early_reports``. The rules for statuses (written down in the README too):

- a kept report only ever applies to a recipient being recorded ``submitted``: never to one that
  is queued, failed, expired or suppressed. A recipient the gateway expired (its retries ran out
  before a SubmitRsp came) stays expired even if the MMSC then reports it Retrieved: without its
  MessageID nothing says the report is this recipient's, so the report stays unknown;
- applied in arrival order with the live rules: a final report (Retrieved -> ``delivered``;
  Expired, Rejected ... -> ``undelivered``; Indeterminate) moves only a ``submitted`` or
  ``indeterminate`` recipient, Forwarded and Deferred are events only, and the first final
  outcome stands (Retrieved then Expired: ``delivered``; Forwarded then Retrieved, or the other
  way round: ``delivered``). So a recipient goes queued -> submitted -> final in one commit, with
  the ``submitted`` event before the report's, and never moves backwards;
- a completion whose lease was lost records nothing and applies nothing; the new holder's does;
- the one-recipient fallback of correlation (a MessageID naming exactly one recipient matches
  whatever the report's spelling of the address) holds only on the report's own link, and not
  when the report's address names another recipient of the same message: that one's report
  waits for that one's completion;
- a kept report that never matches stays unknown, until retention deletes it with the unknown
  reports (``[store] retain``).

The relay event of a report kept unknown may have been queued already (with status hooks, to the
link's hook, without a message). Applied, the report's event replaces it while it waits unleased;
once it was leased or delivered, the correlated event follows as another one (its idempotency key
ends in ``:correlated``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mm7.service.store.outbox import RelayKind
from mm7.service.store.records import normalize_address

#: the two-key advisory lock class PostgreSQL's reports and completions of one MessageID meet on
#: ("mm7E" in ASCII); the second key is ``hashtext(MessageID)``
PG_LOCK_CLASS = 0x6D6D3745
#: what the idempotency key of a correlated report's relay event ends in when the unknown
#: report's event was leased or delivered already
CORRELATED_SUFFIX = ":correlated"


@dataclass(frozen=True, slots=True)
class EarlyReport:
    """A delivery report or read reply kept until a completion records its MessageID."""

    id: int
    kind: RelayKind
    #: the ``delivery_reports`` row of a delivery report (None for a read reply)
    report_id: int | None
    #: the calling peer's link first, then the other links it reports for
    links: tuple[str, ...]
    mm7_message_id: str
    recipient: str
    alternate: str | None
    #: the MMStatus value of a report, the read status of a read reply
    status: str
    status_text: str | None
    #: the details recorded with it (as given to ``record_delivery_report``/``record_read_reply``)
    details: dict[str, Any]
    received_at: int

    @property
    def addresses(self) -> tuple[str, str | None]:
        """The report's address and its other address, as correlation takes them."""
        return self.recipient, self.alternate

    def keys(self) -> set[str]:
        """The normalised addresses the report names."""
        return {normalize_address(a) for a in self.addresses if a}


#: the columns of ``early_reports`` in ``EarlyReport`` order (links as ``link, other_links``)
COLUMNS = (
    "id, kind, report_id, link, other_links, mm7_message_id, recipient, alternate, status,"
    " status_text, details, received_at"
)


def from_row(row: Sequence[Any]) -> EarlyReport:
    """An ``EarlyReport`` from a row of ``COLUMNS``."""
    links = (row[3], *json.loads(row[4]))
    return EarlyReport(
        row[0], RelayKind(row[1]), row[2], links, row[5], row[6], row[7], row[8], row[9],
        json.loads(row[10]), row[11],
    )  # fmt: skip


def is_for(
    recipient_id: int, matched_id: int | None, *, by_fallback: bool, names_sibling: bool
) -> bool:
    """Whether a kept report, correlated anew now that the MessageID is recorded, belongs to the
    recipient being completed: it matched that recipient, by an address, or by the one-recipient
    fallback when the report's addresses name no other recipient of the message
    (``names_sibling``; module docstring)."""
    if matched_id is None or matched_id != recipient_id:
        return False
    return not (by_fallback and names_sibling)
