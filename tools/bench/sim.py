"""``sim``: the bundled MMSC simulator (``mm7 simulate``, strict-3gpp persona) as the MMSC, as one
process and with ``--workers 2``.

A load-generator process POSTs the same 31 KB SubmitReq at concurrency 16 to a ``mm7 simulate``
process (strict: every request validated against its schema, answered with a SubmitRsp with a
fresh MessageID, recorded in its traffic log); an answer counts when it is HTTP 200 with status
1000. Each round runs the bare-aiohttp baseline (tools/bench/bare.py), ``mm7 simulate`` and
``mm7 simulate --workers 2`` one after the other (interleaved: the machine's load changes); the
median of the rounds counts.
Reports msgs_per_s, vs_bare_aiohttp (ours / bare; target >= 1/3, i.e. >= 5,000/s at the
measured 15,000/s), bare_per_s, cpu_ms_per_msg (the simulator, /proc utime+stime), and the same
for ``--workers 2`` as workers2_* (CPU summed over the parent and its workers), plus
workers2_cpu_vs_one (its CPU per SubmitReq / one process's, median of the per-round ratios).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

from bench.bare import BARE_CONCURRENCY, baseline, post_load, submit_body
from bench.proc import CpuWindow, Proc, Procs, SettingsLike, process_tree

TARGET = 5000


def run_simulator(procs: Procs, *options: str, profile: Path | None = None) -> tuple[str, Proc]:
    """Start ``mm7 simulate`` on a free loopback port; (its MM7 URL, the process)."""
    argv = ["-m", "mm7.cli.main", "simulate", "--listen", "127.0.0.1:0", *options]
    if profile is not None:
        argv = ["-m", "cProfile", "-o", str(profile), *argv]
    proc = procs.python("simulator", *argv)
    url = proc.wait_for(r"mm7 simulator .* on (\S+/mm7);", 30)[1]
    if "--workers" in options:
        proc.wait_for(r"mm7 simulator: \d+ workers", 30)
    return url, proc


def _measure(
    settings: SettingsLike,
    procs: Procs,
    content_type: str,
    body: bytes,
    seconds: float,
    workers: int,
    profile: Path | None,
) -> dict[str, float]:
    """One run of ``mm7 simulate`` (``--workers``), CPU summed over its processes."""
    options = ["--persona", "strict-3gpp"]
    if workers > 1:
        options += ["--workers", str(workers)]
    url, proc = run_simulator(procs, *options, profile=profile)
    cpu = CpuWindow(lambda: process_tree(proc.pid))
    cpu.start()
    result = post_load(procs, url, content_type, body, seconds=seconds, name="sim-load")
    result["cpu_ms"] = cpu.stop() * 1000 / result["ok"]
    proc.stop()
    settings.say(
        f"  mm7 simulate --workers {workers}: {result['rps']:,.0f} SubmitRsp 1000/s (errors"
        f" {result['errors']}; p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms;"
        f" simulator CPU {result['cpu_ms']:.3f} ms/request, {cpu.processes} process(es))"
    )
    if result["errors"]:
        raise RuntimeError(f"sim: {result['errors']} requests not answered 1000")
    return result


def bench_sim(settings: SettingsLike) -> dict[str, float]:
    """Requests/s of ``mm7 simulate`` (strict), one process and ``--workers 2``, against the
    bare aiohttp baseline, interleaved."""
    seconds = 1.5 if settings.quick else 10.0
    rounds = 1 if settings.quick else 3
    content_type, body = submit_body()
    bares: list[float] = []
    runs: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory(prefix="mm7-bench-sim-") as tmp, Procs(Path(tmp)) as procs:
        settings.say(
            f"sim: {len(body):,} B SubmitReq -> mm7 simulate (strict-3gpp), concurrency"
            f" {BARE_CONCURRENCY}, {rounds} x {seconds:g} s each: bare, --workers 1, --workers 2"
        )
        for n in range(rounds):
            bares.append(baseline(settings, procs, content_type, body, seconds)["rps"])
            profile = Path(tmp) / "sim.prof" if settings.profile and n == rounds - 1 else None
            for workers in (1, 2):
                run = _measure(
                    settings, procs, content_type, body, seconds, workers, profile
                    if workers == 1 else None
                )  # fmt: skip
                run["vs_bare"] = run["rps"] / bares[-1]
                runs[workers].append(run)
            if profile is not None:
                _print_profile(settings, profile)
    out: dict[str, float] = {}
    for workers, prefix in ((1, ""), (2, "workers2_")):
        rps = statistics.median(r["rps"] for r in runs[workers])
        out[f"{prefix}msgs_per_s"] = round(rps, 1)
        out[f"{prefix}vs_bare_aiohttp"] = round(
            statistics.median(r["vs_bare"] for r in runs[workers]), 3
        )
        out[f"{prefix}cpu_ms_per_msg"] = round(
            statistics.median(r["cpu_ms"] for r in runs[workers]), 3
        )
        out[f"{prefix}p99_ms"] = round(statistics.median(r["p99_ms"] for r in runs[workers]), 2)
        if not prefix:
            out["bare_per_s"] = round(statistics.median(bares), 1)
    ratios = [two["cpu_ms"] / one["cpu_ms"] for one, two in zip(runs[1], runs[2], strict=True)]
    out["workers2_cpu_vs_one"] = round(statistics.median(ratios), 3)
    verdict = "met" if out["msgs_per_s"] >= TARGET else "MISSED"
    settings.say(
        f"  sim: {out['msgs_per_s']:,.0f}/s = {out['vs_bare_aiohttp']:.3f} x bare"
        f" ({out['bare_per_s']:,.0f}/s), {out['cpu_ms_per_msg']:.3f} ms CPU/request;"
        f" --workers 2: {out['workers2_msgs_per_s']:,.0f}/s ="
        f" {out['workers2_vs_bare_aiohttp']:.3f} x bare, {out['workers2_cpu_ms_per_msg']:.3f}"
        f" ms CPU/request ({out['workers2_cpu_vs_one']:.2f} x one process); medians of"
        f" {rounds}; target >= {TARGET:,}/s: {verdict}"
    )
    return out


def _print_profile(settings: SettingsLike, path: Path) -> None:
    import io
    import pstats

    if not path.exists():
        settings.say("  (no profile written)")
        return
    text = io.StringIO()
    stats = pstats.Stats(str(path), stream=text)
    stats.strip_dirs().sort_stats("tottime").print_stats(settings.profile)
    stats.sort_stats("cumulative").print_stats(settings.profile)
    settings.say(text.getvalue().rstrip())


if __name__ == "__main__":
    sys.exit("run through tools/bench.py --only sim")
