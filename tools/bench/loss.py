"""``loss``: loss under load. The mt stack under load, its gateway SIGKILLed twice and restarted.

A load generator posts messages to the API at concurrency 16 for the window (60 s; 8 s with
--quick). At a third and at two thirds of the window the gateway process gets SIGKILL and is
started again at once on the same ports and store (``--lease-ttl 2``: the dead process's leases
expire after 2 s and its work is taken over). The load generator retries a POST that got no
answer with the same Idempotency-Key until it is acknowledged (202), as a careful application
does, so every message the gateway committed is acknowledged exactly once.

After the window the backlog drains, then: ``acknowledged`` = distinct message ids answered 202;
``delivered`` = distinct messages whose SubmitReq the simulator accepted (TransactionIDs
``<id>.0``, from its tally of every accepted SubmitReq); ``lost`` = acknowledged but never
delivered; ``unexpected`` = delivered but never acknowledged; ``duplicates`` = SubmitReqs the
simulator accepted again with a TransactionID it had already accepted (a resend after a kill,
when the first SubmitRsp died with the process). Must hold: acknowledged == delivered, lost == 0.
"""

from __future__ import annotations

import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bare import photo
from bench.gateway import api_load, api_payload, read_ids, restart_gateway, start_stack
from bench.proc import Procs, SettingsLike, wait_until

CONCURRENCY = 16
SERVE = ("--poll-interval", "0.2", "--lease-ttl", "2")


def bench_loss(settings: SettingsLike) -> dict[str, Any]:
    seconds = 8.0 if settings.quick else 60.0
    payload = api_payload(photo(30_000))
    with tempfile.TemporaryDirectory(prefix="mm7-bench-loss-") as tmp, Procs(Path(tmp)) as procs:
        stack = start_stack(settings, procs, serve_options=SERVE, max_in_flight=64)
        ids_file = Path(tmp) / "ids.txt"
        load = api_load(
            procs,
            stack.api,
            payload,
            seconds=seconds,
            concurrency=CONCURRENCY,
            name="loss-load",
            ids_out=ids_file,
        )
        settings.say(
            f"loss: mt load at concurrency {CONCURRENCY} for {seconds:g} s; gateway SIGKILLed at"
            f" {seconds / 3:.0f} s and {2 * seconds / 3:.0f} s and restarted at once"
        )
        t0 = time.monotonic()
        load.send("go")
        restart_s = []
        for n in (1, 2):
            time.sleep(max(0.0, t0 + n * seconds / 3 - time.monotonic()))
            stack.gateway.kill(signal.SIGKILL)
            killed = time.monotonic()
            restart_gateway(stack, *SERVE)
            restart_s.append(time.monotonic() - killed)
            settings.say(
                f"  SIGKILL #{n} at {killed - t0:.1f} s; the gateway answered again after"
                f" {restart_s[-1]:.1f} s"
            )
        result = load.json_result(seconds + 180)
        acknowledged = {i for i, _ in read_ids(ids_file)}

        def drained() -> bool:
            return bool(stack.sim_accepted()["distinct"] >= len(acknowledged))

        wait_until(drained, timeout=120.0, interval=0.5)
        time.sleep(2.5)  # a lease expiring now could still resend: let it show as a duplicate
        tally = stack.sim_accepted(ids=True)
        stack.gateway.stop(30)
    delivered = {t.rsplit(".", 1)[0] for t in tally["ids"]}
    lost = acknowledged - delivered
    unexpected = delivered - acknowledged
    settings.say(
        f"  acknowledged {len(acknowledged):,} (202s; {result['failed_attempts']} POST attempts"
        f" failed during the kills and were retried), delivered {len(delivered):,} (distinct"
        f" SubmitReqs accepted by the simulator), lost {len(lost)}, delivered but not"
        f" acknowledged {len(unexpected)}, duplicates at the simulator {tally['duplicates']}"
        f" -> {'OK' if not lost and not unexpected else 'LOSS'}"
    )
    return {
        "acknowledged": len(acknowledged),
        "delivered": len(delivered),
        "lost": len(lost),
        "unexpected": len(unexpected),
        "duplicates": tally["duplicates"],
        "kills": 2,
        "failed_attempts": result["failed_attempts"],
        "restart_s": round(max(restart_s), 2),
    }


if __name__ == "__main__":
    sys.exit("run through tools/bench.py --only loss")
