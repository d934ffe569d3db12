"""Which exchanges the console and the control API show: by direction, operation, status and
recipient, read from query parameters (``?direction=in&status=4006&recipient=555``), the same
for the list and for the live stream."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mm7.core.errors import MM7Error
from mm7.simulator.store import Exchange

DIRECTIONS = ("in", "out")
#: status filter words besides a number: an MM7 success (1xxx) or anything else
STATUS_WORDS = ("ok", "error")


class FilterError(MM7Error):
    """A filter parameter with a value that cannot match anything; the message names it."""


@dataclass(frozen=True, slots=True)
class TrafficFilter:
    """A conjunction of conditions; a field left None matches everything."""

    direction: str | None = None
    operation: str | None = None
    #: "ok", "error", a 4-digit MM7 status code or a 3-digit HTTP status
    status: str | None = None
    #: a substring of one of the recipients (case-insensitive)
    recipient: str | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> TrafficFilter:
        """The filter named by ``query`` (empty values ignored); FilterError names the bad
        parameter and says what it takes."""
        direction = query.get("direction") or None
        if direction is not None and direction not in DIRECTIONS:
            raise FilterError(f"direction: {direction!r} is not one of in, out")
        status = (query.get("status") or "").strip().lower() or None
        numeric = status is not None and status.isdigit() and len(status) in (3, 4)
        if status is not None and status not in STATUS_WORDS and not numeric:
            raise FilterError(
                f"status: {status!r} is not ok, error, an MM7 status code (4 digits) or "
                "an HTTP status (3 digits)"
            )
        operation = (query.get("operation") or "").strip() or None
        recipient = (query.get("recipient") or "").strip().lower() or None
        return cls(direction, operation, status, recipient)

    def matches(self, exchange: Exchange) -> bool:
        """Whether ``exchange`` passes every condition."""
        if self.direction is not None and exchange.direction != self.direction:
            return False
        if self.operation is not None and exchange.operation.lower() != self.operation.lower():
            return False
        if self.status is not None and not self._status_matches(exchange):
            return False
        if self.recipient is not None:
            names = (*exchange.recipients, exchange.recipient or "")
            return any(self.recipient in name.lower() for name in names)
        return True

    def _status_matches(self, exchange: Exchange) -> bool:
        code = exchange.status_code
        ok = code is not None and 1000 <= code <= 1999 and not exchange.problems
        if self.status == "ok":
            return ok
        if self.status == "error":
            return not ok
        assert self.status is not None
        if len(self.status) == 3:
            return exchange.http_status == int(self.status)
        return code == int(self.status)
