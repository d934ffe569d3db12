"""What a worker of ``mm7 simulate --workers`` copies from the parent's simulator, and what the
parent hands a worker when it starts one.

A ``Replica`` is the state every worker applies alone to the requests it answers itself: the
persona, and the faults no process has to keep for the others (rates, the size limit, Basic
authentication, the client-certificate rule). ``forward_all`` says that something else is in
force (a one-shot fault queue, a TPS limit, Digest nonces: ``FaultInjector.shared``), so that
every MM7 request goes to the parent, which alone keeps such state, until it is gone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mm7.simulator.personas import Persona

if TYPE_CHECKING:
    from mm7.simulator.app import Simulator, SimulatorConfig
    from mm7.transport.listener import ListenerLimits

__all__ = ["Replica", "WorkerStart"]


@dataclass(frozen=True, slots=True)
class Replica:
    """The parent's persona and stateless faults, and whether it answers every request."""

    persona: Persona
    #: ``FaultInjector.stateless()``: as ``configure`` takes it, secrets included
    faults: Mapping[str, Any]
    forward_all: bool

    @classmethod
    def of(cls, sim: Simulator) -> Replica:
        """The state of the parent's ``sim`` now."""
        return cls(sim.persona, sim.faults.stateless(), sim.faults.shared)

    def apply(self, sim: Simulator) -> None:
        """Make the worker's ``sim`` a copy of the parent's (its ``upstream`` included)."""
        if sim.persona != self.persona:
            sim.set_persona(self.persona)
        sim.faults.mirror(self.faults)
        if sim.upstream is not None:
            sim.upstream.forward_all = self.forward_all


@dataclass(frozen=True, slots=True)
class WorkerStart:
    """The first frame a worker reads: what it serves, where, and the parent's state."""

    index: int
    #: the parent's configuration without what only the parent does (reports, scenarios)
    config: SimulatorConfig
    limits: ListenerLimits
    host: str
    port: int
    #: the parent's Unix socket (control API, console, MM7 requests it answers)
    upstream: str
    replica: Replica
    log_json: bool

    @staticmethod
    def worker_config(config: SimulatorConfig) -> SimulatorConfig:
        """``config`` as a worker runs it: no VASP (the parent sends every report and MO),
        no scenario (the parent runs it)."""
        return dataclasses.replace(config, vasp_url=None, vasp_auth=None, scenario=None)
