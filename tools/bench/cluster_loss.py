"""``cluster_loss``: nothing acknowledged is lost when the instance owning the link is SIGKILLed.

Two ``mm7 serve`` instances on one fresh PostgreSQL database (``pg-2`` of
tools/bench/cluster_stack.py, ``--lease-ttl 2``), the mt load at concurrency 16 spread over both
APIs for the window (60 s; 8 s with --quick). At a third and at two thirds of it, the instance
holding ``link:<name>`` (asked through /readyz) gets SIGKILL and is started again at once on its
ports under a new name; the other instance takes the link once the dead one's lease expired, and
the items the dead one had leased when theirs expire. The load generator moves a POST that got
no answer to the other instance with the same Idempotency-Key (as a load balancer does) until it
is acknowledged, so every message committed is acknowledged once.

After the window the backlog drains, then, as ``loss``: ``acknowledged`` (distinct 202 ids),
``delivered`` (distinct messages whose SubmitReq the simulator accepted), ``lost``,
``unexpected`` (delivered, never acknowledged), ``duplicates`` (SubmitReqs accepted again: on the
wire at a kill). Must hold: acknowledged == delivered.
"""

from __future__ import annotations

import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import pgserver
from bench.bare import photo
from bench.cluster_stack import PG_2, start_cluster, store_for
from bench.gateway import api_load, api_payload, read_ids
from bench.proc import Procs, SettingsLike, wait_until

CONCURRENCY = 16
SERVE = ("--poll-interval", "0.2", "--lease-ttl", "2")
LINK = "link:sim"


def bench_cluster_loss(settings: SettingsLike) -> dict[str, Any]:
    seconds = 8.0 if settings.quick else 60.0
    settings.say(
        f"cluster_loss: two instances on PostgreSQL, mt load at concurrency {CONCURRENCY} over"
        f" both for {seconds:g} s; the link's owner SIGKILLed at {seconds / 3:.0f} s and"
        f" {2 * seconds / 3:.0f} s and restarted at once"
    )
    why = pgserver.unavailable()
    if why is not None:
        settings.say(f"cluster_loss: skipped: {why}")
        return {}
    payload = api_payload(photo(30_000))
    with (
        store_for(PG_2) as (database, dsn),
        tempfile.TemporaryDirectory(prefix="mm7-bench-cluster-loss-") as tmp,
        Procs(Path(tmp)) as procs,
    ):
        stack = start_cluster(
            procs, PG_2, dsn=dsn, database=database, serve_options=SERVE, max_in_flight=64
        )
        ids_file = Path(tmp) / "ids.txt"
        load = api_load(
            procs,
            stack.apis[0],
            payload,
            seconds=seconds,
            concurrency=CONCURRENCY,
            name="cluster-loss-load",
            ids_out=ids_file,
            more_apis=tuple(stack.apis[1:]),
        )
        t0 = time.monotonic()
        load.send("go")
        killed: list[int] = []
        for n in (1, 2):
            time.sleep(max(0.0, t0 + n * seconds / 3 - time.monotonic()))
            owner = stack.holder(LINK)
            index = 0 if owner is None else owner
            stack.gateways[index].kill(signal.SIGKILL)
            at = time.monotonic()
            stack.restart(index)
            killed.append(index)
            settings.say(
                f"  SIGKILL #{n} at {at - t0:.1f} s: instance {index + 1}"
                f"{' (the link owner)' if owner is not None else ' (no owner found)'}; started"
                f" again in {time.monotonic() - at:.1f} s"
            )
        result = load.json_result(seconds + 180)
        acknowledged = {i for i, _ in read_ids(ids_file)}

        def drained() -> bool:
            return bool(stack.sim_accepted()["distinct"] >= len(acknowledged))

        wait_until(drained, timeout=120.0, interval=0.5)
        time.sleep(2.5)  # a lease expiring now could still resend: let it show as a duplicate
        tally = stack.sim_accepted(ids=True)
        owner_after = stack.holder(LINK)
        for gw in stack.gateways:
            gw.stop(30)
    delivered = {t.rsplit(".", 1)[0] for t in tally["ids"]}
    lost = acknowledged - delivered
    unexpected = delivered - acknowledged
    settings.say(
        f"  acknowledged {len(acknowledged):,} ({result['failed_attempts']} POST attempts failed"
        f" during the kills and were moved to the other instance), delivered {len(delivered):,},"
        f" lost {len(lost)}, delivered but not acknowledged {len(unexpected)}, duplicates at the"
        f" simulator {tally['duplicates']}; the link's owner at the end: instance"
        f" {'?' if owner_after is None else owner_after + 1}"
        f" -> {'OK' if not lost and not unexpected else 'LOSS'}"
    )
    return {
        "acknowledged": len(acknowledged),
        "delivered": len(delivered),
        "lost": len(lost),
        "unexpected": len(unexpected),
        "duplicates": tally["duplicates"],
        "kills": len(killed),
        "failed_attempts": result["failed_attempts"],
    }


if __name__ == "__main__":
    sys.exit("run through tools/bench.py --only cluster_loss")
