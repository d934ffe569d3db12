"""``sim``: the bundled MMSC simulator (``mm7 simulate``, strict-3gpp persona) as the MMSC.

A load-generator process POSTs the same 31 KB SubmitReq at concurrency 16 to a ``mm7 simulate``
process (strict: every request validated against its schema, answered with a SubmitRsp with a
fresh MessageID, recorded in its traffic log); an answer counts when it is HTTP 200 with status
1000. The bare-aiohttp baseline (tools/bench/bare.py) runs in the same benchmark, alternating
with the simulator (bare, sim, bare, sim, ...); each side's best round counts.
Reports msgs_per_s, vs_bare_aiohttp (ours / bare; target >= 1/3, i.e. >= 5,000/s at the
measured 15,000/s), bare_per_s, cpu_ms_per_msg (the simulator process, /proc utime+stime).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from bench.bare import BARE_CONCURRENCY, baseline, post_load, submit_body
from bench.proc import Proc, Procs, SettingsLike

TARGET = 5000


def run_simulator(procs: Procs, *options: str, profile: Path | None = None) -> tuple[str, Proc]:
    """Start ``mm7 simulate`` on a free loopback port; (its MM7 URL, the process)."""
    argv = ["-m", "mm7.cli.main", "simulate", "--listen", "127.0.0.1:0", *options]
    if profile is not None:
        argv = ["-m", "cProfile", "-o", str(profile), *argv]
    proc = procs.python("simulator", *argv)
    url = proc.wait_for(r"mm7 simulator .* on (\S+/mm7);", 30)[1]
    return url, proc


def bench_sim(settings: SettingsLike) -> dict[str, float]:
    """Requests/s of ``mm7 simulate`` (strict) against the bare aiohttp baseline."""
    seconds = 1.5 if settings.quick else 10.0
    rounds = 1 if settings.quick else 3
    content_type, body = submit_body()
    best_bare = 0.0
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="mm7-bench-sim-") as tmp, Procs(Path(tmp)) as procs:
        settings.say(
            f"sim: {len(body):,} B SubmitReq -> mm7 simulate (strict-3gpp), concurrency"
            f" {BARE_CONCURRENCY}, {rounds} x {seconds:g} s alternating with the bare baseline"
        )
        for n in range(rounds):
            bare = baseline(settings, procs, content_type, body, seconds)
            best_bare = max(best_bare, bare["rps"])
            profile = Path(tmp) / "sim.prof" if settings.profile and n == rounds - 1 else None
            url, proc = run_simulator(procs, "--persona", "strict-3gpp", profile=profile)
            cpu0 = proc.cpu_seconds()
            result = post_load(procs, url, content_type, body, seconds=seconds, name="sim-load")
            result["cpu_ms"] = (proc.cpu_seconds() - cpu0) * 1000 / result["ok"]
            proc.stop()
            settings.say(
                f"  mm7 simulate: {result['rps']:,.0f} SubmitRsp 1000/s (errors"
                f" {result['errors']}; p50 {result['p50_ms']:.1f} ms, p99"
                f" {result['p99_ms']:.1f} ms; simulator CPU {result['cpu_ms']:.3f} ms/request)"
            )
            if result["errors"]:
                raise RuntimeError(f"sim: {result['errors']} requests not answered 1000")
            if result["rps"] > best.get("rps", 0):
                best = result
            if profile is not None:
                _print_profile(settings, profile)
    ratio = best["rps"] / best_bare
    verdict = "met" if best["rps"] >= TARGET else "MISSED"
    settings.say(
        f"  sim: {best['rps']:,.0f}/s = {ratio:.3f} x bare ({best_bare:,.0f}/s);"
        f" target >= {TARGET:,}/s: {verdict}"
    )
    return {
        "msgs_per_s": round(best["rps"], 1),
        "vs_bare_aiohttp": round(ratio, 3),
        "bare_per_s": round(best_bare, 1),
        "cpu_ms_per_msg": round(best["cpu_ms"], 3),
        "p99_ms": round(best["p99_ms"], 2),
    }


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
