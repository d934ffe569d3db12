"""A link's own limits per sender (``[links.NAME] sender_tps``), kept by the link's dispatcher.

Carriers limit the SubmitReqs of each sending number (a US 10DLC long code about 1 a second,
toll-free 3, short codes 40 and more), not only the link's. The sender of a recipient is its
message's ``from``, else the link's ``sender_address`` (``submit_build.sender_of``: the address
as the SubmitReq carries it); ``sender_tps`` gives each listed sender its rate and ``default``
every other one (messages without a sender included). A rate at or above the link's own ``tps``
is left to the link's bucket.

Two clocks per limited sender, both on the monotonic clock:

- the **turns** promised (``turn``): each leased recipient of the sender is given the next free
  turn, one ``1/rate`` after the other. A turn within ``hold`` seconds is waited for in memory
  (the dispatcher does not count such an item as in flight, so it takes no place from other
  senders' items); a later one is kept (``keep``) and the recipient goes back to the store, due
  at that turn (``Store.defer``), so the next lease reaches other senders' recipients instead of
  the same slow sender's again: no head-of-line blocking. When it comes back it takes the turn
  kept for it, not a new one, so a sender's recipients keep their order;
- the **sends** (``admit``): asked by the link's flow control right before a request goes out,
  after the link's in-flight slot and token (``LinkFlow.slot``). It lets a request of the sender
  pass only ``1/rate`` after the previous one passed, so the rate holds on the wire even when the
  link delays some requests more than others; a refused one gives the link's token back and waits
  in memory for the time ``admit`` named.

One instance dispatches a link at a time (link ownership, ``mm7.service.cluster``), so these
in-memory limits are the cluster's for that link. A new owner starts with fresh ones: around a
handover a sender may get up to twice its rate for a moment, and turns kept by the old owner are
not known (its deferred recipients come back at their times all the same).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass

from mm7.service.config.settings import SenderRates

__all__ = ["SenderLimits", "Turn"]

Clock = Callable[[], float]

#: seconds after its time a kept turn is forgotten (its recipient went to another instance,
#: expired or was leased late): the kept turns stay bounded
FORGET_AFTER = 300.0
#: a refusal by ``admit`` within this many seconds of the turn counts as on time (float rounding)
EPSILON = 1e-6


@dataclass(slots=True)
class _Pace:
    """One sender's turns and sends."""

    rate: float
    #: the first turn not promised yet
    next_free: float
    #: when its last request passed ``admit``
    last_sent: float = float("-inf")


@dataclass(frozen=True, slots=True)
class Turn:
    """When a leased recipient of a limited sender may go: ``delay`` seconds from now."""

    sender: str
    rate: float
    at: float
    delay: float


class SenderLimits:
    """The per-sender limits of one link (module docstring). ``hold``: how far ahead a turn is
    waited for in memory rather than in the store."""

    def __init__(
        self,
        rates: SenderRates,
        *,
        link_tps: float | None = None,
        hold: float = 1.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.rates = rates
        self.link_tps = link_tps
        self.hold = hold
        self._clock = clock
        self._paces: dict[str, _Pace] = {}
        #: recipient id -> the turn kept for it while it waits in the store
        self._kept: dict[int, float] = {}
        self._kept_times: list[float] = []
        self._swept = clock()

    def rate_of(self, sender: str) -> float | None:
        """The rate ``sender`` is held to here, or None: only the link's ``tps`` applies."""
        rate = self.rates.rate_for(sender)
        if rate is None or (self.link_tps is not None and rate >= self.link_tps):
            return None
        return rate

    def turn(self, sender: str, recipient_id: int) -> Turn | None:
        """The turn of a leased recipient of ``sender`` (None: the sender has no limit): the one
        kept for it when it was deferred, else the sender's next free one, now promised."""
        rate = self.rate_of(sender)
        if rate is None:
            return None
        now = self._clock()
        self._sweep(now)
        pace = self._paces.get(sender)
        if pace is None:
            pace = self._paces[sender] = _Pace(rate, now)
        kept = self._kept.pop(recipient_id, None)
        if kept is not None:
            return Turn(sender, rate, kept, max(0.0, kept - now))
        at = max(now, pace.next_free, pace.last_sent + 1.0 / rate)
        pace.next_free = at + 1.0 / rate
        return Turn(sender, rate, at, at - now)

    def keep(self, recipient_id: int, turn: Turn) -> None:
        """Remember ``turn`` for a recipient given back to the store until then."""
        self._kept[recipient_id] = turn.at
        heapq.heappush(self._kept_times, turn.at)

    def admit(self, sender: str) -> float:
        """0 when a request of ``sender`` may go now (counted as sent), else the seconds until
        it may (``LinkFlow.slot`` asks right before sending)."""
        pace = self._paces.get(sender)
        if pace is None:
            rate = self.rate_of(sender)
            if rate is None:
                return 0.0
            pace = self._paces[sender] = _Pace(rate, self._clock())
        now = self._clock()
        wait = pace.last_sent + 1.0 / pace.rate - now
        if wait > EPSILON:
            return wait
        pace.last_sent = now
        return 0.0

    def next_kept(self) -> float | None:
        """Seconds until the earliest kept turn still ahead (the dispatcher looks for due work
        then), or None."""
        now = self._clock()
        while self._kept_times and self._kept_times[0] <= now:
            heapq.heappop(self._kept_times)
        return self._kept_times[0] - now if self._kept_times else None

    @property
    def kept(self) -> int:
        """How many turns are kept for recipients waiting in the store."""
        return len(self._kept)

    def _sweep(self, now: float) -> None:
        """Forget kept turns long past and senders idle since (at most once a minute)."""
        if now - self._swept < 60.0:
            return
        self._swept = now
        old = now - FORGET_AFTER
        self._kept = {rid: at for rid, at in self._kept.items() if at > old}
        self._paces = {
            s: p for s, p in self._paces.items() if max(p.next_free, p.last_sent) > now - 60.0
        }
