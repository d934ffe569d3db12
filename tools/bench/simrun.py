"""The MMSC simulator as the benchmarks run it: ``mm7 simulate``'s own code plus a tally.

    PYTHONPATH=tools python -m bench.simrun [mm7 simulate options ...]

It parses the ``mm7 simulate`` options with the CLI's own parser and builds the simulator with
the CLI's ``build_config`` and ``create_simulator_app``, exactly as ``mm7 simulate`` does. Two
differences, both for the benchmarks:

* It binds 127.0.0.1 port 0 and prints ``bench simulator on http://127.0.0.1:PORT/mm7``, then
  reads one line from stdin: the VASP URL (the gateway's inbound endpoint, known only once the
  gateway has started and announced it) or ``none``; or several URLs separated by spaces (the
  instances of a cluster): reports go to the first, MOs round robin to all. Then it serves.
* Every SubmitReq it answers 1000 is tallied by TransactionID (the simulator's own traffic log
  is bounded to the last 1000 exchanges): ``GET /bench/accepted`` gives the count, the distinct
  TransactionIDs and how many were accepted more than once (``?ids=1`` lists the distinct IDs),
  and the delivery reports sent that the VASP answered 1000 (``reports_ok``; attempts answered
  otherwise: ``report_attempts_failed``).
  ``POST /bench/mo`` originates DeliverReqs at a given rate through the simulator's own outbound
  sender (the MO benchmark) and answers with what the VASP answered and how long it took.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import socket
import sys
import time
from typing import Any

from aiohttp import web


def _parse(argv: list[str]) -> argparse.Namespace:
    from mm7.simulator.cli import add_parser

    parser = argparse.ArgumentParser(prog="bench_simrun")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    return parser.parse_args(["simulate", *argv])


async def _run(args: argparse.Namespace) -> None:
    import dataclasses

    from mm7.content.parts import Source
    from mm7.core.model import Address
    from mm7.simulator.app import SIMULATOR, create_simulator_app
    from mm7.simulator.cli import build_config
    from mm7.simulator.dlr import Outbound
    from mm7.simulator.mo import deliver_req
    from mm7.transport.stop_signal import stop_requested

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", int(args.listen.rpartition(":")[2]) if args.listen else 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    print(f"bench simulator on http://127.0.0.1:{port}/mm7", flush=True)
    line = (await asyncio.to_thread(sys.stdin.readline)).strip()
    config = build_config(args)
    vasp_urls = [] if line in ("", "none") else line.split()
    if vasp_urls:
        config = dataclasses.replace(config, vasp_url=vasp_urls[0])
    app = create_simulator_app(config)
    sim = app[SIMULATOR]
    # MOs go round robin to every VASP URL given (instances of a cluster); reports to the first
    outbounds = [sim.outbound] + [
        Outbound(url, sim.persona.dialect, config.retry, sim.store, auth=config.vasp_auth)
        for url in vasp_urls[1:]
    ]
    accepted: collections.Counter[str] = collections.Counter()
    reports = collections.Counter[str]()  # delivery reports sent: answered 1000, or not
    add_exchange = sim.store.add_exchange

    def tally(**kw: Any) -> Any:
        if kw.get("status_code") == 1000 and kw.get("operation") == "SubmitReq":
            if kw.get("direction") == "in":
                accepted[kw.get("transaction_id", "")] += 1
        elif kw.get("direction") == "out" and kw.get("operation") == "DeliveryReportReq":
            reports["ok" if kw.get("status_code") == 1000 else "failed"] += 1
        return add_exchange(**kw)

    sim.store.add_exchange = tally  # type: ignore[method-assign]

    async def accepted_view(request: web.Request) -> web.Response:
        out: dict[str, Any] = {
            "accepted": sum(accepted.values()),
            "distinct": len(accepted),
            "duplicates": sum(n - 1 for n in accepted.values() if n > 1),
            "reports_ok": reports["ok"],
            "report_attempts_failed": reports["failed"],
        }
        if request.query.get("ids"):
            out["ids"] = list(accepted)
        return web.json_response(out)

    async def mo(request: web.Request) -> web.Response:
        """POST {rate, seconds, to, from, image_b64?}: DeliverReqs at ``rate``/s for ``seconds``;
        answers {sent, ok, statuses: {code: n}, latencies_ms: [...]} once all are answered."""
        import base64

        data = await request.json()
        rate = float(data["rate"])
        seconds = float(data["seconds"])
        image = base64.b64decode(data.get("image_b64", ""))
        media = [Source(image, filename="photo.jpg")] if image else []
        statuses: collections.Counter[str] = collections.Counter()
        latencies: list[float] = []
        tasks: set[asyncio.Task[None]] = set()

        # built once (presentation, SMIL): per message only the TransactionID and the sender
        # change, so the simulator's own cost per MO stays small
        template = deliver_req(to=[data["to"]], sender=data["from"], text="bench mo", media=media)
        prefix = f"{time.time_ns() % 10**12:012d}"

        async def one(n: int) -> None:
            req = dataclasses.replace(
                template,
                transaction_id=f"mo-{prefix}-{n}",
                sender=Address.guess(f"+1557{n % 10**7:07d}"),
            )
            started = time.monotonic()
            delivery = await outbounds[n % len(outbounds)].deliver(req)
            latencies.append((time.monotonic() - started) * 1000)
            statuses[str(delivery.status_code)] += 1

        total = max(1, int(rate * seconds))
        start = time.monotonic()
        for n in range(total):
            due = start + n / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(n))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        sent_for = time.monotonic() - start
        while tasks:
            await asyncio.gather(*list(tasks), return_exceptions=True)
        return web.json_response(
            {
                "sent": total,
                "send_seconds": sent_for,
                "seconds": time.monotonic() - start,
                "statuses": dict(statuses),
                "latencies_ms": latencies,
            }
        )

    app.router.add_get("/bench/accepted", accepted_view)
    app.router.add_post("/bench/mo", mo)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    print("bench simulator serving", flush=True)
    try:
        await stop_requested()
    finally:
        await runner.cleanup()
        for extra in outbounds[1:]:
            await extra.close()


def main() -> int:
    asyncio.run(_run(_parse(sys.argv[1:])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
