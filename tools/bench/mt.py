"""``mt``: MT end to end with real processes on loopback.

    load generator -> gateway API (JSON, 31 KB JPEG inline base64, one recipient, DLR requested)
      -> SQLite store (WAL, synchronous=FULL, group commit) -> dispatcher -> MM7 client
      -> the simulator (strict-3gpp, DLRs on: every SubmitRsp is followed by a DeliveryReportReq
         back to the gateway's inbound endpoint, which records it before answering)

For each concurrency a fresh stack (tools/bench/gateway.py) runs for the window (60 s; 3 s with
--quick). msgs/s is counted at the far side: SubmitReqs answered 1000, read from the gateway's
``mm7_submits_total{outcome="success"}`` at the start and end of the window (cross-checked with
the simulator's own tally). Latency is from acceptance (the message's ``created_at``: its commit
before the 202) to its ``submitted`` event (the SubmitRsp), for up to 400 messages sampled evenly
over the window, read from GET /v1/messages/{id} after the backlog drained. CPU per message: each
process's utime+stime over the window (/proc/<pid>/stat) / messages submitted in the window.
``vs_bare_aiohttp`` = best msgs/s / the bare aiohttp baseline of the same 31 KB SubmitReq
(tools/bench/bare.py, same run). Target >= 2,000 msgs/s.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bare import baseline, photo, submit_body
from bench.gateway import (
    api_load,
    api_payload,
    durability,
    print_pyspy,
    pyspy,
    read_ids,
    start_pyspy,
    start_stack,
    stop_gateway,
    submit_latencies,
)
from bench.proc import Procs, SettingsLike, metric_sum, percentile, wait_until

TARGET = 2000
IMAGE_BYTES = 30_000


def run_one(
    settings: SettingsLike, concurrency: int, seconds: float, *, profile: str = ""
) -> dict[str, Any]:
    """``profile``: "" (none), "cprofile" (the gateway under cProfile) or "py-spy" (every
    thread of the gateway sampled during the window)."""
    """One fresh stack at one concurrency; the figures of its window."""
    payload = api_payload(photo(IMAGE_BYTES))
    with tempfile.TemporaryDirectory(prefix="mm7-bench-mt-") as tmp, Procs(Path(tmp)) as procs:
        stack = start_stack(settings, procs, profile=profile == "cprofile", max_in_flight=64)
        ids_file = Path(tmp) / "ids.txt"
        load = api_load(
            procs,
            stack.api,
            payload,
            seconds=seconds,
            concurrency=concurrency,
            name="mt-load",
            ids_out=ids_file,
        )
        gw_cpu0, sim_cpu0 = stack.gateway.cpu_seconds(), stack.sim.cpu_seconds()
        threads0 = stack.gateway.thread_cpu()
        metrics0 = stack.metrics
        before = metric_sum(metrics0, "mm7_submits_total", outcome="success")
        t0 = time.monotonic()
        load.send("go")
        spy_out = Path(tmp) / "gateway.pyspy.txt"
        spy = None
        if profile == "py-spy":
            spy = start_pyspy(procs, stack.gateway.pid, seconds, spy_out)
        load.popen.wait(seconds + 120)
        elapsed = time.monotonic() - t0
        metrics1 = stack.metrics
        after = metric_sum(metrics1, "mm7_submits_total", outcome="success")
        commits, writes = (
            metric_sum(metrics1, name) - metric_sum(metrics0, name)
            for name in ("mm7_store_commits_total", "mm7_store_writes_total")
        )
        gw_cpu, sim_cpu = stack.gateway.cpu_seconds() - gw_cpu0, stack.sim.cpu_seconds() - sim_cpu0
        threads1 = stack.gateway.thread_cpu()
        main_cpu = threads1.get(stack.gateway.pid, 0.0) - threads0.get(stack.gateway.pid, 0.0)
        by_name = thread_names(stack.gateway.pid, threads0, threads1)
        result = load.json_result(10)
        acknowledged = result["acknowledged"]
        delivered_in_window = after - before
        # drain: everything acknowledged reaches the simulator
        drained = wait_until(
            lambda: stack.accepted_metric() >= acknowledged, timeout=max(30.0, seconds * 2)
        )
        drain_s = time.monotonic() - t0 - elapsed
        ids = [i for i, _ in read_ids(ids_file)]
        step = max(1, len(ids) // 400)
        latencies, statuses = submit_latencies(stack.api, ids[::step])
        tally = stack.sim_accepted()
        store = durability(stack.db)
        stop_gateway(settings, stack)
        if spy is not None:
            spy.popen.wait(30)
            print_pyspy(settings, spy_out, "gateway")
    rate = delivered_in_window / elapsed
    out = {
        "concurrency": concurrency,
        "msgs_per_s": rate,
        "accept_per_s": acknowledged / result["seconds"],
        "acknowledged": acknowledged,
        "submitted_in_window": delivered_in_window,
        "backlog_at_end": acknowledged - delivered_in_window,
        "drain_s": drain_s if drained else float("nan"),
        "sim_accepted": tally["accepted"],
        "sim_duplicates": tally["duplicates"],
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "latency_samples": len(latencies),
        "gateway_cpu_ms_per_msg": gw_cpu * 1000 / max(1, delivered_in_window),
        "gateway_main_thread_share": main_cpu / gw_cpu if gw_cpu else float("nan"),
        "gateway_threads_ms_per_msg": {
            name: round(cpu * 1000 / max(1, delivered_in_window), 3)
            for name, cpu in by_name.items()
        },
        "gateway_cpu_share_of_wall": gw_cpu / elapsed,
        "sim_cpu_ms_per_msg": sim_cpu * 1000 / max(1, delivered_in_window),
        "load_cpu_ms_per_msg": (result.get("cpu_s", float("nan")) * 1000) / max(1, acknowledged),
        "durability": store,
        "store_commits_per_s": commits / elapsed,
        "store_writes_per_commit": writes / max(1.0, commits),
        "store_writes_per_msg": writes / max(1.0, delivered_in_window),
        "statuses": statuses,
        "seconds": elapsed,
    }
    settings.say(
        f"  concurrency {concurrency:>3}: {rate:8,.0f} msgs/s submitted (API accepted"
        f" {out['accept_per_s']:,.0f}/s, backlog {out['backlog_at_end']:,.0f} at the end, drained"
        f" in {drain_s:.1f} s); p50 {out['p50_ms']:.0f} ms, p99 {out['p99_ms']:.0f} ms"
        f" (n={len(latencies)}); CPU ms/msg gateway {out['gateway_cpu_ms_per_msg']:.2f}"
        f" ({out['gateway_main_thread_share']:.0%} in its event-loop thread; the process used"
        f" {out['gateway_cpu_share_of_wall']:.0%} of one core),"
        f" simulator {out['sim_cpu_ms_per_msg']:.2f}, load {out['load_cpu_ms_per_msg']:.2f};"
        f" simulator accepted {tally['accepted']:,} (duplicates {tally['duplicates']});"
        f" recipients {statuses}; store: {out['store_commits_per_s']:,.0f} commits/s,"
        f" {out['store_writes_per_commit']:.1f} writes per commit,"
        f" {out['store_writes_per_msg']:.1f} writes per message; gateway CPU ms/msg by thread"
        f" {out['gateway_threads_ms_per_msg']}"
    )
    return out


def thread_names(pid: int, before: dict[int, float], after: dict[int, float]) -> dict[str, float]:
    """CPU seconds between two ``thread_cpu`` readings by thread name ("main" for the event
    loop's; numbered pool threads summed under their prefix: "mm7-store-read")."""
    out: dict[str, float] = {}
    for tid, cpu in after.items():
        name = "main"
        if tid != pid:
            try:
                with open(f"/proc/{pid}/task/{tid}/comm", encoding="utf-8") as f:
                    name = f.read().strip().rstrip("_0123456789") or "?"
            except OSError:
                name = "?"
        out[name] = out.get(name, 0.0) + cpu - before.get(tid, 0.0)
    return out


def bench_mt(settings: SettingsLike) -> dict[str, Any]:
    """MT end to end against the bare aiohttp baseline."""
    seconds = 3.0 if settings.quick else 60.0
    concurrencies = (16,) if settings.quick else (4, 16, 64)
    content_type, body = submit_body()
    settings.say(
        f"mt: API (JSON, {IMAGE_BYTES // 1000} KB JPEG base64, 1 recipient) -> store -> dispatcher"
        f" -> simulator (strict-3gpp, DLRs on); {seconds:g} s per concurrency"
    )
    with tempfile.TemporaryDirectory(prefix="mm7-bench-bare-") as tmp, Procs(Path(tmp)) as procs:
        bare = baseline(settings, procs, content_type, body, 1.5 if settings.quick else 10.0)
    runs = [run_one(settings, c, seconds) for c in concurrencies]
    best = max(runs, key=lambda r: r["msgs_per_s"])
    ratio = best["msgs_per_s"] / bare["rps"]
    verdict = "met" if best["msgs_per_s"] >= TARGET else "MISSED"
    settings.say(
        f"  mt: best {best['msgs_per_s']:,.0f} msgs/s at concurrency {best['concurrency']} ="
        f" {ratio:.3f} x bare ({bare['rps']:,.0f}/s); target >= {TARGET:,}/s: {verdict};"
        f" store: {best['durability']}"
    )
    if settings.profile:
        how = "py-spy" if pyspy() is not None else "cprofile"
        settings.say(f"  profiled run ({how}; not counted): concurrency 16")
        run_one(settings, 16, 3.0 if settings.quick else 15.0, profile=how)
    out: dict[str, Any] = {
        "msgs_per_s": round(best["msgs_per_s"], 1),
        "vs_bare_aiohttp": round(ratio, 4),
        "bare_per_s": round(bare["rps"], 1),
        "concurrency": best["concurrency"],
        "p50_ms": round(best["p50_ms"], 1),
        "p99_ms": round(best["p99_ms"], 1),
        "gateway_cpu_ms_per_msg": round(best["gateway_cpu_ms_per_msg"], 3),
        "accept_per_s": round(best["accept_per_s"], 1),
        "durability": best["durability"],
    }
    for run in runs:
        c = run["concurrency"]
        out[f"c{c}_msgs_per_s"] = round(run["msgs_per_s"], 1)
        out[f"c{c}_p99_ms"] = round(run["p99_ms"], 1)
    return out


if __name__ == "__main__":
    sys.exit("run through tools/bench.py --only mt")
