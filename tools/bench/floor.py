"""``floor``: what mm7 costs per message against the floor of its design, measured in one run.

For each path the same traffic goes, in interleaved pairs, to mm7 and to a floor server
(tools/bench/floorsrv.py: the protocol's own work per message through the same libraries, and
nothing else: no store, checks, presentation, logs or metrics), and CPU per message is compared:

* ``mt``: the load generator's JSON messages (31 KB JPEG base64, one recipient, DLR requested)
  to ``mm7 serve`` (as the ``mt`` benchmark runs it) and to the floor VASP (parse, base64,
  SubmitReq encode, POST to the simulator, SubmitRsp decode, DeliveryReportReq decode and
  answer); both against the same simulator (strict-3gpp, DLRs on). CPU of the gateway process.
* ``mo``: DeliverReqs (text + 50 KB JPEG + SMIL) at 200/s from the simulator to ``mm7 serve``
  (durable commit, relay to a hook: the ``mo`` benchmark's fixed-rate step) and to the floor
  (decode, answer, a signed JSON event POSTed to the hook). CPU per MO.
* ``sim``: the 31 KB SubmitReq at concurrency 16 to ``mm7 simulate`` (strict-3gpp), to the floor
  MMSC (decode, SubmitRsp) and to the bare aiohttp server (canned answer, no parsing: HTTP only).
  CPU per request.

Printed per path: the medians, ``vs_floor`` (mm7 / floor, median of the pairs) and the floor
against issue 15's goal for that figure: a goal below the floor cannot be met by tuning mm7's
own code; it needs the libraries' share (HTTP, XML, MIME) made cheaper or compiled.
"""

from __future__ import annotations

import base64
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bare import BARE_CONCURRENCY, baseline, photo, post_load, submit_body
from bench.gateway import api_load, api_payload, stop_gateway
from bench.mo import FIXED_RATE, fixed_rate, send_mo, start_hook, start_mo_stack
from bench.mo import IMAGE_BYTES as MO_IMAGE_BYTES
from bench.mt import IMAGE_BYTES as MT_IMAGE_BYTES
from bench.mt import run_one
from bench.proc import Proc, Procs, SettingsLike, http_json, wait_until
from bench.sim import _measure as measure_sim

#: issue 15's goals, ms of CPU per message
GOALS = {"mt": 0.7, "mo": 0.5, "sim": 0.2}


def _floor_stack(
    procs: Procs, mode: str, peer: str | None, *sim_options: str
) -> tuple[Proc, str, str]:
    """The bench simulator, then the floor server of ``mode`` (``peer``: the hook's URL for mo;
    None: the simulator's), then the simulator told the floor's inbound URL: (the floor, its
    base URL, the simulator's base URL)."""
    sim = procs.python("simulator", "-m", "bench.simrun", "--persona", "strict-3gpp", *sim_options)
    sim_url = sim.wait_for(r"bench simulator on (\S+)", 60)[1]
    floor = procs.python("floor", "-m", "bench.floorsrv", mode, peer or sim_url)
    base = floor.wait_for(r"floor server on (\S+)", 60)[1]
    sim.send(base + "/mm7")
    sim.wait_for("bench simulator serving", 30)
    return floor, base, sim_url.rsplit("/mm7", 1)[0]


def _count(base: str, what: str) -> int:
    return int(http_json(base + "/count").get(what, 0))


def _floor_mt(settings: SettingsLike, seconds: float) -> tuple[float, float]:
    """CPU ms per message of the floor VASP under the mt load, and its messages/s."""
    payload = api_payload(photo(MT_IMAGE_BYTES))
    with tempfile.TemporaryDirectory(prefix="mm7-bench-floor-") as tmp, Procs(Path(tmp)) as procs:
        floor, base, _ = _floor_stack(procs, "mt", None, "--dlr-delay", "0")
        load = api_load(procs, base, payload, seconds=seconds, concurrency=16, name="floor-load")
        count0 = _count(base, "submitted")
        cpu0 = floor.cpu_seconds()
        load.send("go")
        result = load.json_result(seconds + 120)
        # what was accepted is submitted before the clock stops, and every one reported
        acknowledged = result["acknowledged"]
        wait_until(lambda: _count(base, "submitted") - count0 >= acknowledged or None, 30.0, 0.05)
        cpu = floor.cpu_seconds() - cpu0
        submitted = _count(base, "submitted") - count0
        total = _count(base, "submitted")
        wait_until(lambda: _count(base, "reports") >= total or None, 30.0, 0.05)
        if submitted <= 0 or _count(base, "reports") < total:
            raise RuntimeError(
                f"floor mt: submitted {submitted}, {_count(base, 'reports')} reports"
            )
        ms = cpu * 1000 / submitted
        settings.say(
            f"    floor VASP: {submitted:,} submitted, {result['accept_rate']:,.0f}/s"
            f" accepted; CPU {ms:.3f} ms/msg"
        )
        return ms, float(result["accept_rate"])


def _mm7_mt(settings: SettingsLike, seconds: float) -> tuple[float, float]:
    got = run_one(settings, 16, seconds)
    return float(got["gateway_cpu_ms_per_msg"]), float(got["msgs_per_s"])


def _floor_mo(settings: SettingsLike, seconds: float) -> tuple[float, float]:
    """CPU ms per MO of the floor ingest + relay at the mo benchmark's fixed rate."""
    image = base64.b64encode(photo(MO_IMAGE_BYTES)).decode()
    with tempfile.TemporaryDirectory(prefix="mm7-bench-floor-") as tmp, Procs(Path(tmp)) as procs:
        hook_url, count_url = start_hook(procs)
        floor, _, sim_base = _floor_stack(procs, "mo", hook_url, "--dlr", "never")
        send_mo(sim_base, image, 100, 1.0)  # warm-up, as the mo benchmark's
        wait_until(lambda: http_json(count_url)["posts"] >= 100 or None, timeout=30.0)
        time.sleep(0.5)
        hooks0 = http_json(count_url)["posts"]
        cpu0 = floor.cpu_seconds()
        got = send_mo(sim_base, image, FIXED_RATE, seconds)
        ok = got["statuses"].get("1000", 0)
        wait_until(lambda: http_json(count_url)["posts"] - hooks0 >= ok or None, 30.0, 0.05)
        cpu = floor.cpu_seconds() - cpu0
        if ok != got["sent"]:
            raise RuntimeError(f"floor mo: DeliverRsp {got['statuses']}")
        ms = cpu * 1000 / max(1, got["sent"])
        relayed = http_json(count_url)["posts"] - hooks0
        settings.say(
            f"    floor MO: {got['sent']:,} at {FIXED_RATE}/s, relayed {relayed:,};"
            f" CPU {ms:.3f} ms/MO"
        )
        return ms, float(FIXED_RATE)


def _mm7_mo(settings: SettingsLike, seconds: float) -> tuple[float, float]:
    import os

    image = base64.b64encode(photo(MO_IMAGE_BYTES)).decode()
    os.environ["MM7_BENCH_MO_FIXED_S"] = str(seconds)
    with tempfile.TemporaryDirectory(prefix="mm7-bench-floor-") as tmp, Procs(Path(tmp)) as procs:
        stack, count_url = start_mo_stack(settings, procs)
        got = fixed_rate(settings, stack, procs, image, count_url)
        stop_gateway(settings, stack)
    return float(got["gateway_cpu_ms_per_mo"]), float(FIXED_RATE)


def _sims(settings: SettingsLike, seconds: float) -> dict[str, float]:
    """One round of the sim path: bare aiohttp, the floor MMSC, ``mm7 simulate``."""
    content_type, body = submit_body()
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="mm7-bench-floor-") as tmp, Procs(Path(tmp)) as procs:
        bare = baseline(settings, procs, content_type, body, seconds)
        out["bare"], out["bare_rps"] = bare["server_cpu_ms_per_req"], bare["rps"]
        floor = procs.python("floor", "-m", "bench.floorsrv", "mmsc")
        base = floor.wait_for(r"floor server on (\S+)", 60)[1]
        cpu0 = floor.cpu_seconds()
        result = post_load(
            procs, base + "/mm7", content_type, body, seconds=seconds, name="floor-load"
        )
        out["floor"] = (floor.cpu_seconds() - cpu0) * 1000 / result["ok"]
        if result["errors"]:
            raise RuntimeError(f"floor mmsc: {result['errors']} requests not answered 1000")
        settings.say(
            f"    floor MMSC: {result['rps']:,.0f} SubmitRsp/s (concurrency"
            f" {BARE_CONCURRENCY}); CPU {out['floor']:.3f} ms/request"
        )
        out["mm7"] = measure_sim(settings, procs, content_type, body, seconds, 1, None)["cpu_ms"]
    return out


def bench_floor(settings: SettingsLike) -> dict[str, Any]:
    """mm7 against the floor of its design, per path, in interleaved pairs."""
    pairs = 1 if settings.quick else 3
    seconds = 3.0 if settings.quick else 10.0
    settings.say(
        f"floor: mm7 against the floor server (tools/bench/floorsrv.py) per path, {pairs}"
        f" interleaved pair(s) of {seconds:g} s; CPU ms per message"
    )
    out: dict[str, Any] = {}
    runs: dict[str, tuple[Any, Any]] = {
        "mt": (_mm7_mt, _floor_mt),
        "mo": (_mm7_mo, _floor_mo),
    }
    for path, (ours, floor) in runs.items():
        settings.say(f"  {path}:")
        got: dict[Any, list[tuple[float, float]]] = {ours: [], floor: []}
        for n in range(pairs):
            for run in (ours, floor) if n % 2 == 0 else (floor, ours):
                got[run].append(run(settings, seconds))
        out[path] = _summary(settings, path, [g[0] for g in got[ours]], [g[0] for g in got[floor]])
        out[path]["mm7_msgs_per_s"] = round(statistics.median(g[1] for g in got[ours]), 1)
        out[path]["floor_msgs_per_s"] = round(statistics.median(g[1] for g in got[floor]), 1)
    settings.say("  sim:")
    rounds = [_sims(settings, seconds) for _ in range(pairs)]
    out["sim"] = _summary(settings, "sim", [r["mm7"] for r in rounds], [r["floor"] for r in rounds])
    bare = statistics.median(r["bare"] for r in rounds)
    bare_rps = statistics.median(r["bare_rps"] for r in rounds)
    out["sim"]["bare_ms"] = round(bare, 3)
    settings.say(f"    bare aiohttp server (HTTP only, canned answer): {bare:.3f} ms/request")
    # issue 15's throughput goal: mt msgs/s >= 0.13 x bare aiohttp
    for who in ("mm7", "floor"):
        out["mt"][f"{who}_vs_bare"] = round(out["mt"][f"{who}_msgs_per_s"] / bare_rps, 3)
    settings.say(
        f"  mt msgs/s vs bare aiohttp ({bare_rps:,.0f}/s): mm7 {out['mt']['mm7_vs_bare']:.3f},"
        f" floor {out['mt']['floor_vs_bare']:.3f} (goal 0.13; the simulator and load generator"
        f" share the two cores)"
    )
    return out


def _summary(
    settings: SettingsLike, path: str, ours: list[float], floor: list[float]
) -> dict[str, float]:
    ratios = [a / b for a, b in zip(ours, floor, strict=True)]
    got = {
        "mm7_ms": round(statistics.median(ours), 3),
        "floor_ms": round(statistics.median(floor), 3),
        "vs_floor": round(statistics.median(ratios), 2),
        "goal_ms": GOALS[path],
    }
    verdict = "below the floor" if got["goal_ms"] < got["floor_ms"] else "above the floor"
    settings.say(
        f"  {path}: mm7 {got['mm7_ms']:.3f} ms, floor {got['floor_ms']:.3f} ms:"
        f" {got['vs_floor']:.2f}x the floor (pairs {', '.join(f'{r:.2f}' for r in ratios)});"
        f" goal {got['goal_ms']} ms is"
        f" {verdict} ({got['goal_ms'] / got['floor_ms']:.2f}x it)"
    )
    return got


if __name__ == "__main__":
    sys.exit("run through tools/bench.py --only floor")
