"""``mm7 simulate --workers N``: N worker processes answer MM7 on one port; one parent keeps the
control plane, so the engineer sees one simulator.

    cluster = Cluster(config, limits, "127.0.0.1", 0, workers=2)
    status = await cluster.run(stop_requested(), on_ready=lambda port: print(port))

Why: one process spends ~0.4 ms of CPU per SubmitReq (decode about half of it, BENCHMARKS.md
"Issue 15"), so one core caps it near 2,500/s; workers use more cores. They do not make a
request cheaper: each still decodes, checks and answers it, and sends its record on.

The parent
  - reserves the port (a socket bound with SO_REUSEPORT and never listening, held while it
    runs: port 0 becomes one port every worker, and every restarted worker, listens on);
  - runs the one full ``Simulator``: the traffic record, the received messages, reports (the
    DLR scheduler) and MOs to the VASP, scenarios, faults and persona. Its application (control
    API, console with its live feed, the MM7 endpoint) is served on a Unix socket in a private
    directory (0700), never on the network: the workers pass requests to it;
  - starts each worker (``python -m mm7.simulator.worker``) with one end of a socketpair (the
    channel, ``mm7.simulator.channel``) and sends it a ``WorkerStart``;
  - reads each worker's channel: exchanges go into its traffic record (``Exchange.worker`` is the
    worker's pid), accepted SubmitReqs into ``Simulator.record_accepted`` (reports planned and
    sent here, exactly as by one process);
  - sends every worker a ``Replica`` when the persona or the faults change, and before a control
    API request that changed something is answered, waits until every running worker has
    acknowledged it (at most ``SYNC_TIMEOUT``); changes made by a scenario or by a one-shot
    fault being used are sent within ``POLL`` seconds;
  - restarts a worker that exits (after ``restart_delay``, doubling while restarts fail to start,
    up to 30 s; after ``failed_starts`` failed starts in a row it stops them all and
    exits 1) and says so on stderr.

A worker answers a SubmitReq itself; it passes on to the parent any other MM7 request (a
Cancel or Replace needs the parent's record of submits, which comes from every worker), and
every request while the parent holds state no copy can share (``Replica.forward_all``: one-shot
faults, a TPS limit, Digest nonces). So a fault set through the control API applies as it would
in one process, whichever worker the request reaches.

Ordering: a worker writes a SubmitReq's record to the channel before its SubmitRsp, and the
parent turns its event loop a few times before it answers an MM7 request a worker passed on,
so a record already in its socket is taken in first: a CancelReq sent after the SubmitRsp finds
the submit (unless the worker's writes are held back because the parent is far behind). The
channel is bounded (``Channel.settle``): a parent that falls behind slows the workers' answers
instead of growing their memory.

Linux: SO_REUSEPORT spreads connections over the workers (``--workers`` > 1 is refused where it
does not exist). Modelled on ``mm7.service.cluster.workers.Supervisor`` (the gateway's), which
the simulator cannot import (layers); the channel and the replicas are what it adds.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from mm7.simulator.app import Simulator, SimulatorConfig
from mm7.simulator.channel import Channel, ChannelError
from mm7.simulator.replica import Replica, WorkerStart
from mm7.transport.listener import ListenerLimits
from mm7.transport.restarts import GiveUp, after_exit

__all__ = ["Cluster", "reserve_port", "workers_supported"]

#: seconds a control API answer waits for the workers' acknowledgements at most
SYNC_TIMEOUT = 5.0
#: seconds between checks for changes made outside the control API (scenarios, one-shots used)
POLL = 0.05

log = structlog.get_logger("mm7.simulator")


def workers_supported() -> bool:
    """Whether this system lets several processes listen on one port (SO_REUSEPORT, Linux)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` with SO_REUSEPORT, never listening: hold it while the
    workers run (its port is theirs). OSError when the address is taken."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def _warn(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass(slots=True)
class _Worker:
    index: int
    proc: asyncio.subprocess.Process | None = None
    channel: Channel | None = None
    pid: int | None = None
    ready: bool = False
    #: the last replica it acknowledged
    acked: int = 0
    #: restarts in a row that exited before becoming ready
    failed_starts: int = 0
    task: asyncio.Task[None] | None = None


class Cluster:
    """The parent of ``workers`` simulator workers (module docstring)."""

    def __init__(
        self,
        config: SimulatorConfig,
        limits: ListenerLimits,
        host: str,
        port: int,
        *,
        workers: int,
        log_json: bool = False,
        err: Callable[[str], None] = _warn,
        restart_delay: float = 1.0,
        failed_starts: int = 3,
        stop_timeout: float = 10.0,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.config = config
        self.limits = limits
        self.host = host
        self.port = port
        self.count = workers
        self.log_json = log_json
        self.err = err
        self.restart_delay = restart_delay
        self.failed_starts = failed_starts
        self.stop_timeout = stop_timeout
        self.sim = Simulator(config)
        self.sim.behind_workers = True
        self.workers = [_Worker(i) for i in range(1, workers + 1)]
        #: how many times each worker was started (index -> starts)
        self.starts: dict[int, int] = {}
        self._events: asyncio.Queue[tuple[str, _Worker, int]] = asyncio.Queue()
        self._acked = asyncio.Event()
        self._seq = 0
        self._sent = b""
        self._upstream = ""
        self._stopping = False
        self._restarts: set[asyncio.Task[None]] = set()

    # -- running ---------------------------------------------------------------------------------
    async def run(self, stop: Awaitable[object], on_ready: Callable[[int], None]) -> int:
        """Serve until ``stop`` completes; ``on_ready(port)`` once every worker listens. The
        exit status: 0 stopped as asked, 1 the workers could not start (or kept failing)."""
        stopping = asyncio.ensure_future(stop)
        reserved = reserve_port(self.host, self.port)
        self.port = int(reserved.getsockname()[1])
        private = tempfile.mkdtemp(prefix="mm7-simulate-")  # 0700: this user's only
        self._upstream = str(Path(private) / "control.sock")
        runner = web.AppRunner(self._application(), handle_signals=False, access_log=None)
        poll: asyncio.Task[None] | None = None
        status = 1
        try:
            await runner.setup()
            await web.UnixSite(runner, self._upstream).start()
            self._sent = pickle.dumps(Replica.of(self.sim))
            for worker in self.workers:
                await self._spawn(worker)
            poll = asyncio.create_task(self._poll())
            status = await self._supervise(stopping, on_ready)
        finally:
            self._stopping = True
            stopping.cancel()
            if poll is not None:
                poll.cancel()
            for task in self._restarts:
                task.cancel()
            await asyncio.gather(*self._restarts, return_exceptions=True)
            await self._stop_all()
            await runner.cleanup()
            reserved.close()
            shutil.rmtree(private, ignore_errors=True)
        return status

    def _application(self) -> web.Application:
        app = self.sim.application()
        mm7_path = self.config.path

        @web.middleware
        async def synced(request: web.Request, handler: Any) -> web.StreamResponse:
            if request.path == mm7_path:
                # a worker sent its records before its answer: read them before this request
                # (a CancelReq right after a SubmitRsp from another worker finds the submit)
                for _ in range(3):
                    await asyncio.sleep(0)
            response: web.StreamResponse = await handler(request)
            if request.method not in ("GET", "HEAD"):
                await self.sync(wait=True)
            return response

        app.middlewares.append(synced)
        return app

    async def _supervise(
        self, stopping: asyncio.Future[object], on_ready: Callable[[int], None]
    ) -> int:
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
                worker.failed_starts = 0
                if not started and all(w.ready for w in self.workers):
                    started = True
                    on_ready(self.port)
                elif started and self.starts.get(worker.index, 0) > 1:
                    # not a first start: every ready flag is set as its frame arrives, so the
                    # first of the start's events may already have found them all ready
                    self.err(f"mm7 simulator: worker {worker.index} restarted (pid {worker.pid})")
                continue
            if stopping.done():
                return 0
            worker.failed_starts, step = after_exit(
                worker.index, code, started=started, ready=worker.ready,
                failed_starts=worker.failed_starts, limit=self.failed_starts,
                restart_delay=self.restart_delay,
            )  # fmt: skip
            if isinstance(step, GiveUp):
                self.err(f"mm7 simulator: {step.reason}")
                return 1
            delay = step.delay
            self.err(
                f"mm7 simulator: worker {worker.index} (pid {worker.pid}) exited (status {code});"
                f" restarting it in {delay:g}s"
            )
            log.warning("mm7.simulator.worker_exited", worker=worker.index, status=code)
            worker.ready = False
            task = asyncio.create_task(self._respawn(worker, delay))
            self._restarts.add(task)
            task.add_done_callback(self._restarts.discard)

    async def _respawn(self, worker: _Worker, delay: float) -> None:
        await asyncio.sleep(delay)
        if not self._stopping:
            await self._spawn(worker)

    async def _spawn(self, worker: _Worker) -> None:
        worker.ready = False
        worker.acked = 0
        ours, theirs = socket.socketpair()
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "mm7.simulator.worker",
                str(theirs.fileno()),
                pass_fds=(theirs.fileno(),),
                start_new_session=True,  # a terminal's Ctrl-C reaches the parent only
            )
        except OSError as exc:
            ours.close()
            self.err(f"mm7 simulator: worker {worker.index} could not be started: {exc}")
            await self._events.put(("exit", worker, 127))
            return
        finally:
            theirs.close()
        channel = await Channel.open(ours)
        worker.proc, worker.channel, worker.pid = proc, channel, proc.pid
        self.starts[worker.index] = self.starts.get(worker.index, 0) + 1
        start = WorkerStart(
            index=worker.index,
            config=WorkerStart.worker_config(self.config),
            limits=self.limits,
            host=self.host,
            port=self.port,
            upstream=self._upstream,
            replica=pickle.loads(self._sent),
            log_json=self.log_json,
        )
        worker.acked = self._seq
        channel.send(("start", start))
        worker.task = asyncio.create_task(self._read(worker, proc, channel))

    async def _read(
        self, worker: _Worker, proc: asyncio.subprocess.Process, channel: Channel
    ) -> None:
        """Take in what the worker sends until it is gone; then report its exit."""
        store = self.sim.store
        try:
            while True:
                frame = await channel.receive()
                if frame is None:
                    break
                kind = frame[0]
                if kind == "exchange":
                    _, request_body, response_body, fields, accepted = frame
                    if accepted is not None:  # before its exchange, as in one process
                        message, leniencies = accepted
                        source = (request_body, fields.get("request_content_type"))
                        self.sim.record_accepted(message, fields["message_id"], leniencies, source)
                    store.add_exchange(
                        request_body=request_body, response_body=response_body, **fields
                    )
                elif kind == "ack":
                    worker.acked = max(worker.acked, frame[1])
                    self._acked.set()
                elif kind == "ready":
                    worker.ready = True
                    await self._events.put(("ready", worker, 0))
        except ChannelError as exc:
            self.err(f"mm7 simulator: worker {worker.index}: {exc}; stopping it")
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        await channel.close()
        code = await proc.wait()
        await self._events.put(("exit", worker, code))

    # -- replicas --------------------------------------------------------------------------------
    async def sync(self, *, wait: bool) -> None:
        """Send every worker the parent's state if it changed; ``wait``: until each running
        worker has it (or SYNC_TIMEOUT passed)."""
        replica = Replica.of(self.sim)
        data = pickle.dumps(replica)
        if data != self._sent:
            self._sent = data
            self._seq += 1
            for worker in self.workers:
                if worker.channel is not None and not worker.channel.closed:
                    worker.channel.send(("state", self._seq, replica))
        if not wait:
            return
        wanted = self._seq
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SYNC_TIMEOUT):
                while not all(w.acked >= wanted for w in self._live()):
                    self._acked.clear()
                    await self._acked.wait()

    def _live(self) -> list[_Worker]:
        return [
            w for w in self.workers if w.ready and w.proc is not None and w.proc.returncode is None
        ]

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL)
            await self.sync(wait=False)

    async def _stop_all(self) -> None:
        """SIGTERM every worker; kill those still running after ``stop_timeout``."""
        running = [w.proc for w in self.workers if w.proc is not None and w.proc.returncode is None]
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        if running:
            _, late = await asyncio.wait(
                [asyncio.ensure_future(p.wait()) for p in running], timeout=self.stop_timeout
            )
            for proc in running:
                if proc.returncode is None:
                    self.err(f"mm7 simulator: worker pid {proc.pid} did not stop; killing it")
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
            await asyncio.gather(*late, return_exceptions=True)
        tasks = [w.task for w in self.workers if w.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
