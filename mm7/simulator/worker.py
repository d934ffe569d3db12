"""One worker process of ``mm7 simulate --workers N`` (started by ``mm7.simulator.cluster``).

    python -m mm7.simulator.worker FD     # FD: its end of the channel to the parent

It reads a ``WorkerStart`` from the channel, serves the MM7 endpoint on the shared port
(SO_REUSEPORT) and answers SubmitReqs itself: limits, stateless faults, decode, the strict
check, the SubmitRsp. Each exchange and each accepted SubmitReq goes to the parent over the
channel (the traffic record, the reports); everything else (the control API, the console, any
other MM7 request, every request while the parent keeps stateful faults) is passed to the
parent's Unix socket (``mm7.simulator.forward``). It applies each ``Replica`` the parent sends
and acknowledges it, and stops on SIGTERM or when the parent is gone (the channel closes).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import sys
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web

from mm7.core.model import SubmitReq
from mm7.simulator.app import SIMULATOR, Simulator
from mm7.simulator.channel import Channel
from mm7.simulator.forward import Forwarder
from mm7.simulator.replica import Replica, WorkerStart
from mm7.simulator.store import Exchange, TrafficStore
from mm7.transport.listener import serve
from mm7.transport.logs import configure_logging
from mm7.transport.stop_signal import stop_requested

__all__ = ["ChannelStore", "WorkerSimulator", "main"]


@dataclass
class ChannelStore(TrafficStore):
    """A worker's traffic record: each exchange goes to the parent's, nothing is kept here."""

    channel: Channel | None = None
    #: MessageID -> the SubmitReq accepted (without its content) and its leniencies, until
    #: its exchange is recorded: they leave in one frame
    accepted: dict[str, tuple[SubmitReq, tuple[str, ...]]] = field(default_factory=dict)

    def add_exchange(
        self, *, request_body: bytes = b"", response_body: bytes = b"", **fields: Any
    ) -> Exchange:
        headers = fields.get("received_headers")
        if headers is not None and not isinstance(headers, tuple):
            fields["received_headers"] = tuple(headers.items())  # aiohttp's view: not picklable
        if fields.get("worker") is None:
            fields["worker"] = os.getpid()
        accepted = self.accepted.pop(fields.get("message_id") or "", None)
        if self.channel is not None:
            self.channel.send(("exchange", request_body, response_body, fields, accepted))
        return Exchange(id=0, at=self.now(), **fields)


class WorkerSimulator(Simulator):
    """A ``Simulator`` whose accepted SubmitReqs are the parent's to remember and report on:
    each leaves with its exchange, without its content (the parent reads it again from the
    request body when it is shown: the content was half the bytes and most of the pickling)."""

    def record_accepted(
        self,
        message: SubmitReq,
        message_id: str,
        leniencies: tuple[str, ...],
        source: tuple[bytes, str | None] | None = None,
    ) -> None:
        self.accepted_submits += 1
        self.last_accepted = message_id
        store = self.store
        if isinstance(store, ChannelStore):
            store.accepted[message_id] = (dataclasses.replace(message, content=None), leniencies)


def build(start: WorkerStart, channel: Channel) -> tuple[WorkerSimulator, web.Application]:
    """The worker's simulator and application for ``start``."""
    sim = WorkerSimulator(start.config)
    sim.store = ChannelStore(max_exchanges=1, max_messages=1, max_body_bytes=0, channel=channel)
    forwarder = Forwarder(start.upstream)
    sim.upstream = forwarder
    start.replica.apply(sim)

    async def handle(request: web.Request) -> web.StreamResponse:
        response = await sim.handle(request)
        await channel.settle()  # the bound: a parent behind slows the answers down
        return response

    async def close(app: web.Application) -> None:
        await forwarder.close()

    app = web.Application(client_max_size=start.config.limits.max_total_bytes)
    app[SIMULATOR] = sim
    app.router.add_post(start.config.path, handle)
    app.router.add_route("*", "/{tail:.*}", forwarder.route)
    app.on_cleanup.append(close)
    return sim, app


async def _follow(channel: Channel, sim: Simulator) -> None:
    """Apply the parent's replicas as they come; return when the parent is gone."""
    while True:
        frame = await channel.receive()
        if frame is None:
            return
        if frame[0] == "state":
            _, seq, replica = frame
            assert isinstance(replica, Replica)
            replica.apply(sim)
            channel.send(("ack", seq))


async def run(sock: socket.socket) -> int:
    """Serve as the parent says until SIGTERM or the parent's end of the channel closes."""
    stopping = asyncio.create_task(stop_requested())
    await asyncio.sleep(0)  # signal handlers in place
    channel = await Channel.open(sock)
    frame = await channel.receive()
    if frame is None or frame[0] != "start":
        return 1
    start: WorkerStart = frame[1]
    configure_logging("info", json=start.log_json)
    log = structlog.get_logger("mm7.simulator")
    sim, app = build(start, channel)
    listener = await serve(
        app,
        start.host,
        start.port,
        start.limits,
        ssl_context=start.config.ssl_context(),
        name="simulator",
        reuse_port=True,
    )
    channel.send(("ready", os.getpid()))
    log.info("mm7.simulator.worker_started", worker=start.index, pid=os.getpid())
    following = asyncio.create_task(_follow(channel, sim))
    try:
        await asyncio.wait({stopping, following}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        following.cancel()
        await listener.close()
        await channel.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m mm7.simulator.worker FD``: the worker's entry point."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].isdigit():
        print("usage: python -m mm7.simulator.worker FD (started by mm7 simulate --workers)")
        return 2
    sock = socket.socket(fileno=int(args[0]))
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(run(sock))
    return 1


if __name__ == "__main__":
    sys.exit(main())
