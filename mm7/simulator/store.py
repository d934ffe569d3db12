"""The simulator's memory: every exchange (both directions) and every message received, bounded
so a long run cannot grow without limit. Tests and the control API read it; waiters are woken on
every change so tests wait on conditions, not on sleeps; the console's live subscribers are fed
through ``feed``.

Bodies are kept by reference, never copied or serialised on the request path: the newest
exchanges keep theirs whole (for the detail view's parts and slides) up to a byte budget, older
ones keep their first ``KEEP_BYTES``."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mm7.core.codec import decode
from mm7.core.errors import MM7Error
from mm7.core.limits import DEFAULT_LIMITS, Limits
from mm7.core.mime import Part
from mm7.core.model import Address, Message, Recipients
from mm7.core.versions import version_for_namespace
from mm7.simulator.feed import TrafficFeed
from mm7.transport.wirelog import redact_headers

#: how much of each HTTP body an exchange keeps once the whole-body budget has passed it by
KEEP_BYTES = 16 * 1024
#: bytes of whole bodies kept for the newest exchanges (the detail view's parts and slides)
DEFAULT_BODY_BUDGET = 64 * 1024 * 1024


@dataclass(slots=True)
class Bodies:
    """The HTTP bodies of one exchange: whole while the store's budget holds them, then their
    first ``KEEP_BYTES`` (``trim``)."""

    request: bytes
    response: bytes
    request_size: int
    response_size: int

    @classmethod
    def of(cls, request: bytes, response: bytes) -> Bodies:
        return cls(request, response, len(request), len(response))

    @property
    def whole(self) -> bool:
        """Both bodies as they were on the wire (not trimmed)."""
        return len(self.request) == self.request_size and len(self.response) == self.response_size

    def trim(self) -> int:
        """Keep only the heads; the number of bytes let go."""
        before = len(self.request) + len(self.response)
        self.request = self.request[:KEEP_BYTES]
        self.response = self.response[:KEEP_BYTES]
        return before - len(self.request) - len(self.response)


@dataclass(frozen=True, slots=True)
class Exchange:
    """One HTTP exchange: a request the simulator answered (in) or sent to the VASP (out)."""

    id: int
    at: datetime
    direction: str  # "in" | "out"
    operation: str
    transaction_id: str
    http_status: int | None
    #: the MM7 status answered (in) or received (out), and its text
    status_code: int | None
    duration_ms: float
    status_text: str | None = None
    message_id: str | None = None
    #: the request's MM7 namespace and MM7Version, as sent
    namespace: str | None = None
    mm7_version: str | None = None
    #: the handsets (and short codes) the request names: Recipients, or a report's Recipient
    recipients: tuple[str, ...] = ()
    subject: str | None = None
    leniencies: tuple[str, ...] = ()
    #: why it failed: validation errors, the injected fault, the VASP's wrong answer
    problems: tuple[str, ...] = ()
    fault: str | None = None
    attempt: int = 1
    recipient: str | None = None
    mm_status: str | None = None
    #: the request's headers as received (secrets included: kept by reference, masked only
    #: when read through ``request_headers``); the answer's (masked) both ways when known
    received_headers: Mapping[str, str] | tuple[tuple[str, str], ...] = ()
    request_content_type: str | None = None
    response_headers: tuple[tuple[str, str], ...] = ()
    response_content_type: str | None = None
    #: the pid of the worker process that answered it (``mm7 simulate --workers``); None: one
    #: process
    worker: int | None = None
    bodies: Bodies = field(default_factory=lambda: Bodies.of(b"", b""))

    @property
    def request_headers(self) -> tuple[tuple[str, str], ...]:
        """The request's headers with secret values masked, built when asked for."""
        return tuple(redact_headers(self.received_headers))

    @property
    def request_body(self) -> bytes:
        return self.bodies.request

    @property
    def response_body(self) -> bytes:
        return self.bodies.response

    @property
    def request_size(self) -> int:
        return self.bodies.request_size

    @property
    def response_size(self) -> int:
        return self.bodies.response_size

    @property
    def version(self) -> str | None:
        """The schema version token of the namespace (REL-6-MM7-1-4), else the namespace."""
        if self.namespace is None:
            return None
        found = version_for_namespace(self.namespace)
        return found.token if found is not None else self.namespace

    def wire_json(self) -> dict[str, Any]:
        """The exchange with its headers and bodies (as text, undecodable bytes replaced)."""
        out = self.to_json()
        out["request_headers"] = [list(h) for h in self.request_headers]
        out["request_content_type"] = self.request_content_type
        out["request_body"] = self.request_body.decode("utf-8", "replace")
        out["response_headers"] = [list(h) for h in self.response_headers]
        out["response_content_type"] = self.response_content_type
        out["response_body"] = self.response_body.decode("utf-8", "replace")
        out["bodies_truncated"] = not self.bodies.whole
        return out

    def to_json(self) -> dict[str, Any]:
        """The summary the console's table shows (no headers, no bodies)."""
        out: dict[str, Any] = {
            "id": self.id,
            "at": self.at.isoformat(),
            "direction": self.direction,
            "operation": self.operation,
            "transaction_id": self.transaction_id,
            "http_status": self.http_status,
            "status_code": self.status_code,
            "status_text": self.status_text,
            "duration_ms": round(self.duration_ms, 2),
            "attempt": self.attempt,
            "version": self.version,
            "mm7_version": self.mm7_version,
            "recipients": list(self.recipients),
            "request_size": self.request_size,
            "response_size": self.response_size,
        }
        for key in ("message_id", "fault", "recipient", "mm_status", "subject", "worker"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.leniencies:
            out["leniencies"] = list(self.leniencies)
        if self.problems:
            out["problems"] = list(self.problems)
        return out


def recipients_of(message: Message | None) -> tuple[str, ...]:
    """The addresses a request is for: its Recipients (To, Cc, Bcc), or a report's Recipient."""
    recipients = getattr(message, "recipients", None)
    if isinstance(recipients, Recipients):
        return tuple(a.value for a in recipients.all)
    recipient = getattr(message, "recipient", None)
    return (recipient.value,) if isinstance(recipient, Address) else ()


@dataclass(frozen=True, slots=True)
class Received:
    """A request the simulator accepted, parsed, with its content."""

    id: int
    at: datetime
    message: Message
    #: the MessageID the simulator gave it (SubmitReq) or that it names (Cancel/Replace)
    message_id: str | None
    content: Part | None
    leniencies: tuple[str, ...] = ()
    #: the request body and Content-Type it was read from, when a worker of ``mm7 simulate
    #: --workers`` sent the message without its content (read again when first shown)
    source: tuple[bytes, str | None] | None = None

    @property
    def operation(self) -> str:
        return self.message.OPERATION

    def filled(self, limits: Limits) -> Received:
        """This message with its content, read from ``source`` (itself when it has none)."""
        if self.source is None:
            return self
        body, content_type = self.source
        try:
            message = decode(body, content_type, limits).message
        except MM7Error:  # read once already: cannot happen; shown without its content then
            return dataclasses.replace(self, source=None)
        content = getattr(message, "content", None)
        return dataclasses.replace(self, message=message, content=content, source=None)


@dataclass
class TrafficStore:
    """Bounded record of exchanges (a ring of ``max_exchanges``) and received messages, with
    the whole bodies of the newest exchanges up to ``max_body_bytes``."""

    max_exchanges: int = 1000
    max_messages: int = 200
    max_body_bytes: int = DEFAULT_BODY_BUDGET
    #: the parser limits for reading a worker's message again (``Received.filled``)
    limits: Limits = DEFAULT_LIMITS
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    feed: TrafficFeed = field(default_factory=TrafficFeed)
    exchanges: collections.deque[Exchange] = field(init=False)
    messages: collections.deque[Received] = field(init=False)
    _ids: itertools.count[int] = field(init=False)
    _waiters: list[asyncio.Event] = field(init=False, default_factory=list)
    #: bodies still whole, oldest first, and their bytes in all
    _whole: collections.deque[Bodies] = field(init=False, default_factory=collections.deque)
    _whole_bytes: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.max_exchanges < 1 or self.max_messages < 1 or self.max_body_bytes < 0:
            raise ValueError(
                "TrafficStore: max_exchanges and max_messages >= 1, max_body_bytes >= 0"
            )
        self.exchanges = collections.deque(maxlen=self.max_exchanges)
        self.messages = collections.deque(maxlen=self.max_messages)
        self._ids = itertools.count(1)

    def next_id(self) -> int:
        return next(self._ids)

    def add_exchange(
        self, *, request_body: bytes = b"", response_body: bytes = b"", **fields: Any
    ) -> Exchange:
        """Record one exchange; the bodies by reference (trimmed later, past the budget)."""
        bodies = Bodies.of(request_body, response_body)
        exchange = Exchange(id=self.next_id(), at=self.now(), bodies=bodies, **fields)
        self.exchanges.append(exchange)
        self._keep(bodies)
        self.feed.publish(exchange)
        self._wake()
        return exchange

    def _keep(self, bodies: Bodies) -> None:
        self._whole.append(bodies)
        self._whole_bytes += bodies.request_size + bodies.response_size
        while self._whole_bytes > self.max_body_bytes and self._whole:
            oldest = self._whole.popleft()
            self._whole_bytes -= oldest.request_size + oldest.response_size
            oldest.trim()

    def add_message(
        self,
        message: Message,
        message_id: str | None,
        content: Part | None,
        leniencies: tuple[str, ...],
        source: tuple[bytes, str | None] | None = None,
    ) -> Received:
        received = Received(
            self.next_id(), self.now(), message, message_id, content, leniencies, source
        )
        self.messages.append(received)
        self._wake()
        return received

    def exchange(self, id: int) -> Exchange | None:
        return next((e for e in self.exchanges if e.id == id), None)

    def message(self, id: int) -> Received | None:
        return next((m for m in self.shown_messages() if m.id == id), None)

    def shown_messages(self) -> collections.deque[Received]:
        """The messages, those a worker sent without their content read now (once each)."""
        if any(m.source is not None for m in self.messages):
            filled = (m.filled(self.limits) for m in self.messages)
            self.messages = collections.deque(filled, maxlen=self.max_messages)
        return self.messages

    def clear(self) -> None:
        self.exchanges.clear()
        self.messages.clear()
        self._whole.clear()
        self._whole_bytes = 0
        self.feed.reset()
        self._wake()

    def _wake(self) -> None:
        for waiter in self._waiters:
            waiter.set()
        self._waiters.clear()

    def touch(self) -> None:
        """Wake the waiters: something they may wait on changed outside the record."""
        self._wake()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float | None = 10.0) -> None:
        """Return once ``predicate()`` holds (checked after every change); TimeoutError after
        ``timeout`` seconds (None: no limit)."""
        async with asyncio.timeout(timeout):
            while not predicate():
                event = asyncio.Event()
                self._waiters.append(event)
                await event.wait()
