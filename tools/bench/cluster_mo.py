"""``cluster_mo``: MO ingest and relay on SQLite and on PostgreSQL with one and two gateway
processes.

The simulator (tools/bench/simrun.py) originates DeliverReqs (text + a 50 KB JPEG, SMIL) at a
fixed rate for a step (8 s; with --quick one step of 50/s for 1.5 s), round robin to every
instance's inbound endpoint (``pg-workers-2``: one port, the kernel spreads the connections)
(the simulator keeps at most 10 requests in flight, as it does for its reports); each is committed
before its DeliverRsp 1000 and relayed, signed, by the instance holding ``relay`` to a hook
receiver (tools/bench/hook.py). The rate rises step by step until a DeliverRsp is not 1000 or
p99 passes 1 s. For each variant of tools/bench/cluster_stack.py, on a fresh stack and database:

* ``msgs_per_s``: the highest rate sustained (all 1000, p99 <= 1 s, all relayed; the rate
  answered when below the rate offered; 0: none);
* at the highest rate every variant sustained (``common_rate``), the CPU per MO of the gateway
  (every process of every instance, from sending the first DeliverReq of the step until the hook
  received the last MO) and of the PostgreSQL backends of the run's database, and the ratios to
  ``sqlite-1`` and ``pg-1``: the best of the ramp's step and two more rounds at that rate, each
  variant on a fresh stack, interleaved. The cost per MO falls as the rate rises (the idle work
  of the processes is shared by more MOs), so variants are compared at one rate.
"""

from __future__ import annotations

import base64
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import pgserver
from bench.bare import photo
from bench.cluster_mt import compare, verdict
from bench.cluster_stack import VARIANTS, ClusterStack, Variant, start_cluster, store_for
from bench.mo import IMAGE_BYTES, RELAY_TOML, start_hook
from bench.proc import Procs, SettingsLike, http_json, percentile, wait_until

P99_BOUND_MS = 1000.0
#: rounds at the common rate after the ramps (each variant again, interleaved)
REPEATS = 2


def step(
    stack: ClusterStack, count_url: str, rate: int, seconds: float, image: str
) -> dict[str, Any]:
    """One rate for ``seconds``: the DeliverRsp statuses, latency, relay and CPU per MO."""
    hooks0 = http_json(count_url)["posts"]
    gateway = stack.gateway_cpu()
    postgres = stack.postgres_cpu()
    windows = [w for w in (gateway, postgres) if w is not None]
    for window in windows:
        window.start()
    t0 = time.monotonic()
    got = http_json(
        stack.sim_base + "/bench/mo",
        {
            "rate": rate,
            "seconds": seconds,
            "to": "12345",
            "from": "+15570000001",
            "image_b64": image,
        },
        timeout=seconds + 300,
    )
    ok = got["statuses"].get("1000", 0)
    relayed = wait_until(
        lambda: http_json(count_url)["posts"] - hooks0 >= ok or None,
        timeout=30.0 if ok else 0.1,
        interval=0.2,
    )
    relay_s = time.monotonic() - t0
    cpu = {id(w): w.stop() for w in windows}
    sent = max(1, got["sent"])
    latencies = got["latencies_ms"]
    out: dict[str, Any] = {
        "rate": rate,
        "sent": got["sent"],
        "statuses": got["statuses"],
        "answered_per_s": got["sent"] / got["seconds"],
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
        "relayed": http_json(count_url)["posts"] - hooks0,
        "all_relayed": bool(relayed),
        "relayed_per_s": (http_json(count_url)["posts"] - hooks0) / relay_s,
        "gateway_cpu_ms_per_msg": cpu[id(gateway)] * 1000 / sent,
    }
    if postgres is not None:
        out["postgres_cpu_ms_per_msg"] = cpu[id(postgres)] * 1000 / sent
    return out


def run_variant(
    settings: SettingsLike, variant: Variant, rates: tuple[int, ...], seconds: float
) -> list[dict[str, Any]]:
    """The rising rates on a fresh stack of ``variant`` until one fails; every step's figures
    (the failing one last, marked ``passed`` False)."""
    image = base64.b64encode(photo(IMAGE_BYTES)).decode()
    steps: list[dict[str, Any]] = []
    with (
        store_for(variant) as (database, dsn),
        tempfile.TemporaryDirectory(prefix="mm7-bench-cluster-mo-") as tmp,
        Procs(Path(tmp)) as procs,
    ):
        hook_url, count_url = start_hook(procs)
        stack = start_cluster(
            procs,
            variant,
            dsn=dsn,
            database=database,
            sim_options=("--persona", "strict-3gpp", "--dlr", "never"),
            extra=RELAY_TOML.format(hook_url=hook_url),
        )
        for rate in rates:
            got = step(stack, count_url, rate, seconds, image)
            bad = {k: v for k, v in got["statuses"].items() if k != "1000"}
            got["passed"] = not bad and got["p99_ms"] <= P99_BOUND_MS and got["all_relayed"]
            steps.append(got)
            settings.say(
                f"  {variant.name:<13} rate {rate:>5}/s: answered {got['answered_per_s']:,.0f}/s,"
                f" DeliverRsp {got['statuses']}, p50 {got['p50_ms']:.0f} ms, p99"
                f" {got['p99_ms']:.0f} ms, relayed {got['relayed']:,}; CPU ms/MO gateway"
                f" {got['gateway_cpu_ms_per_msg']:.2f}"
                + (
                    f", PostgreSQL {got['postgres_cpu_ms_per_msg']:.2f}"
                    if "postgres_cpu_ms_per_msg" in got
                    else ""
                )
                + ("" if got["passed"] else " -> stop")
            )
            if not got["passed"]:
                break
        for gw in stack.gateways:
            gw.stop(60)
    return steps


def bench_cluster_mo(settings: SettingsLike) -> dict[str, Any]:
    """MO on every variant: the rate each sustains; then the costs at the rate all sustain,
    best of the ramp's step and ``REPEATS`` more interleaved rounds at that rate."""
    seconds = 1.5 if settings.quick else 8.0
    rates = (50,) if settings.quick else (50, 100, 200, 300, 400, 600, 800)
    repeats = 0 if settings.quick else REPEATS
    settings.say(
        f"cluster_mo: DeliverReq (text + {IMAGE_BYTES // 1000} KB JPEG) -> inbound (commit, 1000)"
        f" -> relay -> hook; {seconds:g} s per rate, rates {rates}: "
        + ", ".join(v.name for v in VARIANTS)
    )
    why = pgserver.unavailable()
    if why is not None:
        settings.say(f"cluster_mo: skipped: {why}")
        return {}
    runs = {v: run_variant(settings, v, rates, seconds) for v in VARIANTS}
    sustained = {
        v: [min(s["rate"], s["answered_per_s"]) for s in steps if s["passed"]]
        for v, steps in runs.items()
    }
    passed = {v: [s["rate"] for s in steps if s["passed"]] for v, steps in runs.items()}
    common = min(max(r, default=0) for r in passed.values())
    if common:
        what = "the highest rate every variant sustained"
    else:  # a machine too busy for the first rate: its costs all the same, said so
        common = rates[0]
        what = "which some variant did NOT sustain"
    at = {v: [next(s for s in steps if s["rate"] == common)] for v, steps in runs.items()}
    for index in range(repeats):
        settings.say(f"  again at {common}/s, round {index + 2}:")
        for variant in VARIANTS:
            at[variant] += run_variant(settings, variant, (common,), seconds)
    best: dict[Variant, dict[str, float]] = {}
    for variant, steps in at.items():
        figures = {
            "msgs_per_s": float(max(sustained[variant], default=0)),
            "gateway_cpu_ms_per_msg": min(s["gateway_cpu_ms_per_msg"] for s in steps),
        }
        if "postgres_cpu_ms_per_msg" in steps[0]:
            figures["postgres_cpu_ms_per_msg"] = min(s["postgres_cpu_ms_per_msg"] for s in steps)
        best[variant] = figures
    settings.say(f"  CPU per MO at {common}/s, {what} (best of {1 + repeats}):")
    out = compare(settings, best, "gateway_cpu_ms_per_msg", "msgs_per_s")
    out["common_rate"] = common
    verdict(settings, out, "cluster_mo")
    return out


if __name__ == "__main__":
    sys.exit("run through tools/bench.py --only cluster_mo")
