"""The simulator's memory: every exchange (both directions) and every message received, bounded
so a long run cannot grow without limit. Tests and the control API read it; waiters are woken on
every change so tests wait on conditions, not on sleeps."""

from __future__ import annotations

import asyncio
import collections
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mm7.core.mime import Part
from mm7.core.model import Message

#: how much of each HTTP body an exchange keeps (the rest is counted, not stored)
KEEP_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class Exchange:
    """One HTTP exchange: a request the simulator answered (in) or sent to the VASP (out)."""

    id: int
    at: datetime
    direction: str  # "in" | "out"
    operation: str
    transaction_id: str
    http_status: int | None
    #: the MM7 status answered (in) or received (out)
    status_code: int | None
    duration_ms: float
    message_id: str | None = None
    leniencies: tuple[str, ...] = ()
    #: why it failed: validation errors, the injected fault, the VASP's wrong answer
    problems: tuple[str, ...] = ()
    fault: str | None = None
    attempt: int = 1
    recipient: str | None = None
    mm_status: str | None = None
    #: the first bytes of both bodies (both directions); request headers inbound only
    request_headers: tuple[tuple[str, str], ...] = ()
    request_body: bytes = b""
    request_size: int = 0
    response_content_type: str | None = None
    response_body: bytes = b""
    response_size: int = 0

    def wire_json(self) -> dict[str, Any]:
        """The exchange with its headers and bodies (as text, undecodable bytes replaced)."""
        out = self.to_json()
        out["request_headers"] = [list(h) for h in self.request_headers]
        out["request_body"] = self.request_body.decode("utf-8", "replace")
        out["response_content_type"] = self.response_content_type
        out["response_body"] = self.response_body.decode("utf-8", "replace")
        out["bodies_truncated"] = (
            len(self.request_body) < self.request_size
            or len(self.response_body) < self.response_size
        )
        return out

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "at": self.at.isoformat(),
            "direction": self.direction,
            "operation": self.operation,
            "transaction_id": self.transaction_id,
            "http_status": self.http_status,
            "status_code": self.status_code,
            "duration_ms": round(self.duration_ms, 2),
            "attempt": self.attempt,
        }
        if self.direction == "in":
            out["request_size"] = self.request_size
            out["response_size"] = self.response_size
        for key in ("message_id", "fault", "recipient", "mm_status"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.leniencies:
            out["leniencies"] = list(self.leniencies)
        if self.problems:
            out["problems"] = list(self.problems)
        return out


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

    @property
    def operation(self) -> str:
        return self.message.OPERATION


@dataclass
class TrafficStore:
    """Bounded record of exchanges and received messages."""

    max_exchanges: int = 1000
    max_messages: int = 200
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    exchanges: collections.deque[Exchange] = field(init=False)
    messages: collections.deque[Received] = field(init=False)
    _ids: itertools.count[int] = field(init=False)
    _waiters: list[asyncio.Event] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.exchanges = collections.deque(maxlen=self.max_exchanges)
        self.messages = collections.deque(maxlen=self.max_messages)
        self._ids = itertools.count(1)

    def next_id(self) -> int:
        return next(self._ids)

    def add_exchange(self, **fields: Any) -> Exchange:
        exchange = Exchange(id=self.next_id(), at=self.now(), **fields)
        self.exchanges.append(exchange)
        self._wake()
        return exchange

    def add_message(
        self,
        message: Message,
        message_id: str | None,
        content: Part | None,
        leniencies: tuple[str, ...],
    ) -> Received:
        received = Received(self.next_id(), self.now(), message, message_id, content, leniencies)
        self.messages.append(received)
        self._wake()
        return received

    def exchange(self, id: int) -> Exchange | None:
        return next((e for e in self.exchanges if e.id == id), None)

    def message(self, id: int) -> Received | None:
        return next((m for m in self.messages if m.id == id), None)

    def clear(self) -> None:
        self.exchanges.clear()
        self.messages.clear()
        self._wake()

    def _wake(self) -> None:
        for waiter in self._waiters:
            waiter.set()
        self._waiters.clear()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Return once ``predicate()`` holds (checked after every change); TimeoutError after
        ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while not predicate():
                event = asyncio.Event()
                self._waiters.append(event)
                await event.wait()
