"""Named leases one instance holds: claimed, renewed every ttl/3, lost, given up at stop.

    ownership = Ownership(store, "gw-a-1", ["link:carrier-a", "relay", "retention"], ttl=10.0)
    await ownership.start()          # one claim of each, awaited; then a task per lease
    ownership.held("link:carrier-a") # gate: may this instance lease the link's work now?
    ...
    await ownership.stop()           # give up what is held: the others take it at once

A lease answered by the store at ``claim`` holds, on this instance's monotonic clock, until
``sent + ttl * (1 - MARGIN)``, where ``sent`` is when the claim was sent (the store's expiry,
``now + ttl`` on its clock, is later than that): the owner stops leasing work ``ttl * MARGIN``
before another instance can take the lease, even when the store stops answering it. ``held``
compares the clock each time it is asked, so a stalled renewal task cannot stretch a lease.

While held, the lease is renewed every ``ttl * RENEW``; a failed or refused renewal is tried
again every ``ttl * POLL``, and instances without the lease claim it at that pace too, so one of
them takes over within ``ttl * (1 + POLL)`` of the holder's last renewal when the holder dies.

``LeaseState`` is the decision alone (no I/O, times passed in); ``Ownership`` runs it against a
``Store`` with one asyncio task per lease, logs ``mm7.cluster.acquired`` / ``lost`` /
``released`` and calls ``on_acquired(name)`` so that the runtime wakes the work a lease guards.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import Protocol

import structlog

__all__ = [
    "MARGIN",
    "POLL",
    "RELAY",
    "RENEW",
    "RETENTION",
    "Change",
    "LeaseState",
    "Ownership",
    "default_instance",
    "link_lease",
]

log = structlog.get_logger("mm7.service.cluster.ownership")

#: the part of the TTL a holder gives up early (its own clock may lag the store's)
MARGIN = 0.2
#: a held lease is renewed after this part of the TTL
RENEW = 1 / 3
#: a lease not held (or a failed renewal) is claimed again after this part of the TTL
POLL = 0.1

#: the lease of the relay worker (hook concurrency and ordered delivery hold cluster-wide)
RELAY = "relay"
#: the lease of retention (the purge runs on one instance at a time)
RETENTION = "retention"


def link_lease(link: str) -> str:
    """The name of the lease whose holder dispatches ``link``."""
    return f"link:{link}"


def default_instance() -> str:
    """``<hostname>-<pid>``: unique among the processes running at one time."""
    return f"{socket.gethostname()}-{os.getpid()}"


class _Claims(Protocol):
    """What ownership needs of a ``Store``."""

    async def claim(self, name: str, owner: str, ttl: timedelta) -> int | None: ...

    async def give_up(self, name: str, owner: str) -> None: ...


class Change(Enum):
    """What an answer (or the clock) changed about a lease, as this instance announces it."""

    ACQUIRED = "acquired"
    LOST = "lost"


@dataclass(slots=True)
class LeaseState:
    """One named lease as one instance knows it; times are that instance's monotonic clock."""

    name: str
    #: seconds a claim holds the lease in the store
    ttl: float
    #: the fencing token of the current holding (None: not held)
    token: int | None = None
    #: held (announced ``ACQUIRED``, not yet ``LOST``)
    holding: bool = False
    #: leasing work stops at this time unless a renewal moves it
    held_until: float = -math.inf
    #: when to claim next
    next_claim: float = -math.inf

    def held(self, now: float) -> bool:
        """Whether this instance may act on the lease at ``now``."""
        return self.holding and now < self.held_until

    def answered(self, sent: float, now: float, token: int | None) -> Change | None:
        """The store answered a claim sent at ``sent`` with ``token`` (None: someone else's).
        A renewal answered after the holding ran out (``held`` said no meanwhile, so the work
        it guards may have turned a wake-up away) is announced as acquired again."""
        lapsed = self.holding and now >= self.held_until
        if token is None:
            self.held_until = -math.inf
            self.next_claim = now + self.ttl * POLL
        else:
            self.held_until = sent + self.ttl * (1 - MARGIN)
            self.next_claim = sent + self.ttl * RENEW
            self.token = token
        change = self.settle(now)
        if change is None and lapsed and self.holding:
            return Change.ACQUIRED
        return change

    def failed(self, now: float) -> Change | None:
        """A claim raised or timed out: try again soon; held only until ``held_until``."""
        self.next_claim = now + self.ttl * POLL
        return self.settle(now)

    def settle(self, now: float) -> Change | None:
        """Announce a change: acquired, or lost (refused, or its time ran out)."""
        held = now < self.held_until
        if not held:
            self.token = None
        if held and not self.holding:
            self.holding = True
            return Change.ACQUIRED
        if not held and self.holding:
            self.holding = False
            return Change.LOST
        return None

    def wake_at(self) -> float:
        """When something is due: the next claim, or the end of the holding."""
        return min(self.next_claim, self.held_until) if self.holding else self.next_claim

    def release(self) -> bool:
        """Forget the lease (given up); whether it was held."""
        was = self.holding
        self.holding = False
        self.token = None
        self.held_until = -math.inf
        return was


class Ownership:
    """The named leases of one instance (``owner``), each kept by a task (module docstring).

    ``clock``: monotonic seconds (injectable: tests move it instead of waiting).
    ``on_acquired(name)``: called when a lease is taken, so that the work it guards starts now.
    """

    def __init__(
        self,
        store: _Claims,
        owner: str,
        names: Iterable[str],
        ttl: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_acquired: Callable[[str], None] | None = None,
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.store = store
        self.owner = owner
        self.ttl = ttl
        self._ttl = timedelta(seconds=ttl)
        self._clock = clock
        self._on_acquired = on_acquired
        self._states = {name: LeaseState(name, ttl) for name in dict.fromkeys(names)}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False
        self.log = log.bind(instance=owner)

    @property
    def names(self) -> tuple[str, ...]:
        """Every lease this instance claims."""
        return tuple(self._states)

    def held(self, name: str) -> bool:
        """Whether this instance holds ``name`` now (False for a name it does not claim)."""
        state = self._states.get(name)
        return state is not None and not self._stopped and state.held(self._clock())

    def holding(self) -> dict[str, int]:
        """The leases held now, with their fencing tokens."""
        now = self._clock()
        return {
            name: state.token
            for name, state in self._states.items()
            if state.token is not None and state.held(now) and not self._stopped
        }

    def states(self) -> dict[str, bool]:
        """Every lease claimed, with whether it is held now (the metrics gauge)."""
        return {name: self.held(name) for name in self._states}

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Claim every lease once (awaited: a lone instance holds all of them when this
        returns), then keep them with a task each."""
        if self._tasks:
            return
        self._stopped = False
        await asyncio.gather(*(self.claim_once(name) for name in self._states))
        self._tasks = [
            asyncio.create_task(self._keep(state), name=f"mm7-lease-{name}")
            for name, state in self._states.items()
        ]

    async def stop(self) -> None:
        """Stop renewing and give up every lease held, so that others take them at once."""
        self._stopped = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for name, state in self._states.items():
            token = state.token
            if not state.release():
                continue
            try:
                await self.store.give_up(name, self.owner)
            except Exception as exc:  # it expires on its own after the TTL
                self.log.warning("mm7.cluster.give_up_failed", lease=name, error=repr(exc))
            else:
                self.log.info("mm7.cluster.released", lease=name, token=token)

    # -- one lease -------------------------------------------------------------------------

    async def claim_once(self, name: str) -> Change | None:
        """Claim (or renew) ``name`` now and apply the answer; what changed."""
        state = self._states[name]
        sent = self._clock()
        before = state.token if state.holding else None
        try:
            async with asyncio.timeout(self.ttl):
                token = await self.store.claim(name, self.owner, self._ttl)
        except Exception as exc:
            now = self._clock()
            self.log.warning(
                "mm7.cluster.claim_failed",
                lease=name,
                error=repr(exc),
                held_for_s=round(max(0.0, state.held_until - now), 3) if state.holding else 0,
            )
            change = state.failed(now)
        else:
            if before is not None and token is not None and token != before:
                # our holding was interrupted in the store without this instance noticing
                self.log.error("mm7.cluster.token_changed", lease=name, was=before, now=token)
            change = state.answered(sent, self._clock(), token)
        self._announce(state, change)
        return change

    def check(self, name: str) -> Change | None:
        """Apply the clock alone to ``name`` (a holding whose time ran out is lost)."""
        state = self._states[name]
        change = state.settle(self._clock())
        self._announce(state, change)
        return change

    async def _keep(self, state: LeaseState) -> None:
        while True:
            now = self._clock()
            self.check(state.name)
            if now >= state.next_claim:
                await self.claim_once(state.name)
                continue
            await asyncio.sleep(max(0.0, state.wake_at() - now))

    def _announce(self, state: LeaseState, change: Change | None) -> None:
        if change is Change.ACQUIRED:
            self.log.info(
                "mm7.cluster.acquired", lease=state.name, token=state.token, ttl_s=self.ttl
            )
            if self._on_acquired is not None:
                try:
                    self._on_acquired(state.name)
                except Exception:
                    self.log.exception("mm7.cluster.wake_failed", lease=state.name)
        elif change is Change.LOST:
            self.log.warning("mm7.cluster.lost", lease=state.name)
