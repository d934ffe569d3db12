"""``mm7 serve --workers N``: N gateway processes on one host sharing the listeners, supervised.

The parent (``Supervisor``) loads the configuration once, reserves the API and inbound ports
(``reserve_ports``: a socket bound with SO_REUSEPORT and never listening, held for the parent's
life, so a port 0 becomes one port every worker, and every restarted worker, listens on; nothing
else can take it meanwhile) and starts each worker as ``mm7 serve`` with a ``WorkerSpec``. A
worker is one gateway instance named ``<base>-<i>`` (``base``: ``[cluster] instance``, else
``<hostname>-<parent pid>``) listening with SO_REUSEPORT, so the kernel spreads connections over
the workers. ``[metrics] listen`` is per worker: port + i - 1 (each worker's own counters).

Supervision: a worker is started when it prints ``READY``. One that exits before every worker
started ends the start (the others are stopped, exit status 1); one that dies later is started
again after ``restart_delay`` (doubling while its restarts fail to start), and after
``failed_starts`` restarts in a row that never became ready the parent stops them all and exits
1 (the rule: ``mm7.transport.restarts``). SIGTERM or SIGINT to the parent is forwarded to every
worker as SIGTERM (each stops gracefully); a worker still running ``stop_timeout`` seconds
later is killed. Workers run in sessions of their own (a terminal's Ctrl-C reaches the parent
only, which forwards it once) and stop by themselves when the parent is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mm7.service.config.settings import GatewayConfig, Listen
from mm7.transport.restarts import GiveUp, after_exit

__all__ = [
    "READY",
    "Supervisor",
    "WorkerSpec",
    "reserve_ports",
    "worker_config",
]

#: the line a worker prints on stdout once it serves (what the parent waits for)
READY = "mm7 gateway: worker ready"
#: seconds: the longest wait before restarting a worker


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What the parent tells worker ``index`` of ``count``: its name and the reserved ports."""

    index: int
    count: int
    #: the instance name without the worker's suffix
    base: str
    #: listener name ("api", "inbound") -> the port the parent reserved
    ports: Mapping[str, int] = field(default_factory=dict)

    @property
    def instance(self) -> str:
        """``<base>-<index>``: the worker's instance name."""
        return f"{self.base}-{self.index}"

    def to_json(self) -> str:
        """The spec as one command-line argument."""
        return json.dumps(dataclasses.asdict(self) | {"ports": dict(self.ports)})

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        """The spec a parent wrote with ``to_json`` (ValueError when it is not one)."""
        try:
            data = json.loads(text)
            spec = cls(
                int(data["index"]),
                int(data["count"]),
                str(data["base"]),
                {str(k): int(v) for k, v in data["ports"].items()},
            )
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"not a worker spec: {exc}") from None
        if not 1 <= spec.index <= spec.count:
            raise ValueError(f"worker {spec.index} of {spec.count}")
        return spec


def worker_config(config: GatewayConfig, spec: WorkerSpec) -> GatewayConfig:
    """``config`` as worker ``spec`` runs it: its instance name, the reserved ports, its own
    metrics port (port + index - 1; port 0 stays 0)."""
    api = config.api
    inbound = config.inbound
    if "api" in spec.ports:
        api = dataclasses.replace(api, listen=Listen(api.listen.host, spec.ports["api"]))
    if "inbound" in spec.ports:
        listen = Listen(inbound.listen.host, spec.ports["inbound"])
        inbound = dataclasses.replace(inbound, listen=listen)
    metrics = config.metrics
    if metrics.listen is not None and metrics.listen.port:
        port = metrics.listen.port + spec.index - 1
        metrics = dataclasses.replace(metrics, listen=Listen(metrics.listen.host, port))
    cluster = dataclasses.replace(config.cluster, instance=spec.instance)
    return dataclasses.replace(config, api=api, inbound=inbound, metrics=metrics, cluster=cluster)


def reserve_ports(config: GatewayConfig) -> tuple[dict[str, int], list[socket.socket]]:
    """Bind (never listen) the API and inbound addresses with SO_REUSEPORT: the port of each
    (the one chosen for port 0), and the sockets to hold while workers run. OSError when an
    address is taken by a process that does not share it."""
    ports: dict[str, int] = {}
    held: list[socket.socket] = []
    try:
        for name, listen in (("api", config.api.listen), ("inbound", config.inbound.listen)):
            family, kind, proto, _, address = socket.getaddrinfo(
                listen.host or None, listen.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
            sock = socket.socket(family, kind, proto)
            held.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            ports[name] = int(sock.getsockname()[1])
    except BaseException:
        for sock in held:
            sock.close()
        raise
    return ports, held


def _print(line: str) -> None:
    print(line, file=sys.stdout, flush=True)


def _warn(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass(slots=True)
class _Worker:
    index: int
    proc: asyncio.subprocess.Process | None = None
    ready: bool = False
    #: restarts in a row that exited before printing READY
    failed_starts: int = 0
    watcher: asyncio.Task[None] | None = None


class Supervisor:
    """Runs ``count`` workers, ``command(index)`` each, until stopped (module docstring)."""

    def __init__(
        self,
        count: int,
        command: Callable[[int], Sequence[str]],
        *,
        env: Mapping[str, str] | None = None,
        out: Callable[[str], None] = _print,
        err: Callable[[str], None] = _warn,
        restart_delay: float = 1.0,
        failed_starts: int = 3,
        stop_timeout: float = 60.0,
    ) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        self.count = count
        self.command = command
        self.env = dict(env) if env is not None else None
        self.out = out
        self.err = err
        self.restart_delay = restart_delay
        self.failed_starts = failed_starts
        self.stop_timeout = stop_timeout
        self.workers = [_Worker(i) for i in range(1, count + 1)]
        #: how many times each worker was started (index -> starts), for tests and logs
        self.starts: dict[int, int] = {}
        self._events: asyncio.Queue[tuple[str, _Worker, int]] = asyncio.Queue()
        self._restarts: set[asyncio.Task[None]] = set()

    async def run(self, stop: Awaitable[object]) -> int:
        """Start the workers and keep them running until ``stop`` completes; the exit status
        (0: stopped as asked; 1: workers could not start, or did not stop)."""
        stopping = asyncio.ensure_future(stop)
        status = 0
        try:
            for worker in self.workers:
                await self._spawn(worker)
            status = await self._supervise(stopping)
        finally:
            stopping.cancel()
            for task in self._restarts:
                task.cancel()
            await asyncio.gather(*self._restarts, return_exceptions=True)
            if not await self._stop_all():
                status = 1
        return status

    async def _supervise(self, stopping: asyncio.Future[object]) -> int:
        started = False
        while True:
            event = asyncio.ensure_future(self._events.get())
            waits: set[asyncio.Future[Any]] = {event, stopping}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if not event.done():
                event.cancel()
                return 0
            kind, worker, code = event.result()
            if kind == "ready":
                worker.ready = True
                worker.failed_starts = 0
                if not started and all(w.ready for w in self.workers):
                    started = True
                    self.out(f"mm7 gateway: {self.count} workers ready")
                continue
            if stopping.done():
                return 0
            worker.failed_starts, step = after_exit(
                worker.index, code, started=started, ready=worker.ready,
                failed_starts=worker.failed_starts, limit=self.failed_starts,
                restart_delay=self.restart_delay,
            )  # fmt: skip
            if isinstance(step, GiveUp):
                self.err(f"mm7 gateway: {step.reason}")
                return 1
            delay = step.delay
            self.err(
                f"mm7 gateway: worker {worker.index} exited (status {code}); "
                f"restarting it in {delay:g}s"
            )
            worker.ready = False
            task = asyncio.create_task(self._respawn(worker, delay))
            self._restarts.add(task)
            task.add_done_callback(self._restarts.discard)

    async def _respawn(self, worker: _Worker, delay: float) -> None:
        await asyncio.sleep(delay)
        await self._spawn(worker)

    async def _spawn(self, worker: _Worker) -> None:
        worker.ready = False
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.command(worker.index),
                stdout=asyncio.subprocess.PIPE,
                env=self.env,
                start_new_session=True,
            )
        except OSError as exc:
            self.err(f"mm7 gateway: worker {worker.index} could not be started: {exc}")
            await self._events.put(("exit", worker, 127))
            return
        worker.proc = proc
        self.starts[worker.index] = self.starts.get(worker.index, 0) + 1
        worker.watcher = asyncio.create_task(self._watch(worker, proc))

    async def _watch(self, worker: _Worker, proc: asyncio.subprocess.Process) -> None:
        """Forward the worker's stdout, report READY and its exit."""
        assert proc.stdout is not None
        prefix = f"[worker {worker.index}] "
        async for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.out(prefix + line)
            if line.startswith(READY):
                await self._events.put(("ready", worker, 0))
        code = await proc.wait()
        await self._events.put(("exit", worker, code))

    async def _stop_all(self) -> bool:
        """SIGTERM every running worker, kill those still running after ``stop_timeout``;
        whether every one of them exited with status 0."""
        running = [w.proc for w in self.workers if w.proc is not None and w.proc.returncode is None]
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        clean = True
        if running:
            done, late = await asyncio.wait(
                [asyncio.ensure_future(p.wait()) for p in running], timeout=self.stop_timeout
            )
            if late:
                clean = False
                for proc in running:
                    if proc.returncode is None:
                        self.err(f"mm7 gateway: worker pid {proc.pid} did not stop; killing it")
                        with contextlib.suppress(ProcessLookupError):
                            proc.kill()
                await asyncio.gather(*late, return_exceptions=True)
            clean = clean and all(p.returncode == 0 for p in running)
        watchers = [w.watcher for w in self.workers if w.watcher is not None]
        await asyncio.gather(*watchers, return_exceptions=True)
        return clean
