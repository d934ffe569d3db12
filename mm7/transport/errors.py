"""The transport layer's errors; each derives from ``mm7.core.errors.MM7Error``.

``MM7ClientError`` is the client's one error type, raised for every non-success: an MM7 error
status (in a response, an RSErrorRsp or a SOAP Fault), an HTTP error with no usable body, a
timeout, a reset, a TLS failure, a refused request, an open circuit breaker. ``transient`` says
whether to retry. Messages never hold credentials: they are built from the link name, status
and outcome only. ``HandlerError`` is how an inbound handler chooses its answer's status;
``BodyTooLarge`` refuses an inbound body over the size bound.

Also in this layer: ``OverrideError`` (classify), ``BreakerOpen`` (flow), ``JSONPostError``
(json_post), next to the code that raises them.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from mm7.core.errors import MM7Error
from mm7.core.model import Message, Status

if TYPE_CHECKING:
    from mm7.transport.classify import Outcome, Verdict

__all__ = ["BodyTooLarge", "HandlerError", "LinkConfigError", "MM7ClientError"]


class LinkConfigError(MM7Error):
    """A link configuration that cannot work (credentials in the URL, expired certificate...)."""


class MM7ClientError(MM7Error):
    """A request to the MMSC that did not succeed; ``transient`` True means retry later."""

    def __init__(
        self,
        message: str,
        *,
        link: str,
        operation: str,
        transaction_id: str,
        outcome: Outcome,
        verdict: Verdict,
        status: Status | None = None,
        http_status: int | None = None,
        response: Message | None = None,
        leniencies: tuple[str, ...] = (),
        retry_after: float | None = None,
        reason: str = "",
    ) -> None:
        self.link = link
        self.operation = operation
        self.transaction_id = transaction_id
        self.outcome = outcome
        self.verdict = verdict
        #: the MM7 status found (response Status, Fault, X-MM7-Status-Code header), if any
        self.status = status
        self.http_status = http_status
        #: the decoded response or Fault, when the body could be read
        self.response = response
        self.leniencies = leniencies
        #: seconds to wait before retrying, when the peer (Retry-After) or the breaker says
        self.retry_after = retry_after
        #: what went wrong in words: the message without the link, request and verdict
        self.reason = reason
        #: the bytes sent and received (empty when nothing got that far), for traffic records
        self.request_body = b""
        self.response_body = b""
        super().__init__(message)

    @property
    def transient(self) -> bool:
        """Whether retrying later may succeed."""
        return self.verdict.value == "transient"

    @property
    def code(self) -> int | None:
        return self.status.code if self.status is not None else None

    @property
    def text(self) -> str | None:
        return self.status.text if self.status is not None else None

    @property
    def details(self) -> str | None:
        return self.status.details if self.status is not None else None

    def __repr__(self) -> str:
        return (
            f"MM7ClientError(link={self.link!r}, operation={self.operation!r}, "
            f"outcome={self.outcome.value!r}, code={self.code!r}, http_status={self.http_status!r},"
            f" transient={self.transient!r})"
        )


class HandlerError(MM7Error):
    """Raised by a handler to answer with ``status`` (a VASPErrorRsp fault for non-1xxx codes).

    ``HandlerError(4006)`` answers "Service unavailable" (the MMSC retries later);
    ``HandlerError(2005, "no such message")`` a permanent refusal with details.
    """

    def __init__(self, status: Status | int, details: str | None = None) -> None:
        if isinstance(status, int):
            status = Status.of(status, details)
        elif details is not None:
            status = dataclasses.replace(status, details=details)
        self.status = status
        super().__init__(f"{status.code} {status.text}")


class BodyTooLarge(MM7Error):
    """The request body passed the size bound (declared or while streaming)."""

    def __init__(self, size: int, limit: int, *, declared: bool) -> None:
        self.size = size
        self.limit = limit
        self.declared = declared
        how = "declares" if declared else "passed"
        super().__init__(f"body {how} {size} bytes, over the limit of {limit} bytes")
