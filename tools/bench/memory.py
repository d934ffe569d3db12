"""``memory``: peak RSS of the gateway while 50 messages of 5 MB each are in flight.

The simulator (strict-3gpp, no reports) answers every SubmitReq only after a latency fault of
``DELAY`` seconds, so the gateway (max_in_flight 50, no TPS limit) holds all of them in flight at
once. 50 different 5 MB JPEGs (one Pillow-made photo, each copy made distinct by a JPEG comment
segment so none is deduplicated by the store) are posted to the API as JSON (base64 inline: 6.7 MB
of JSON each), 8 at a time. The gateway's VmHWM (peak resident set, /proc/<pid>/status) is read
once all 50 were accepted by the simulator; ``vs_payload`` = VmHWM / (50 x 5 MB), target < 3.
Also reported: the RSS before the first message (``idle_rss_mb``) and ``growth_vs_payload`` =
(VmHWM - idle RSS) / payload. --quick: 10 messages, 2 s delay.
"""

from __future__ import annotations

import base64
import struct
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.bare import handset, photo
from bench.gateway import start_stack
from bench.proc import API_KEY, Procs, SettingsLike, http_json, wait_until

MESSAGE_BYTES = 5 * 1000 * 1000
TARGET = 3.0


def distinct_jpeg(base: bytes, n: int) -> bytes:
    """``base`` with a COM segment after SOI naming ``n``: a different file, the same picture."""
    comment = f"bench copy {n}".encode()
    return base[:2] + struct.pack(">BBH", 0xFF, 0xFE, len(comment) + 2) + comment + base[2:]


def bench_memory(settings: SettingsLike) -> dict[str, Any]:
    count = 10 if settings.quick else 50
    delay = 2.0 if settings.quick else 30.0
    base = photo(MESSAGE_BYTES)
    payload_mb = count * len(base) / 1e6
    with tempfile.TemporaryDirectory(prefix="mm7-bench-mem-") as tmp, Procs(Path(tmp)) as procs:
        stack = start_stack(
            settings,
            procs,
            sim_options=("--persona", "strict-3gpp", "--dlr", "never"),
            max_in_flight=count,
        )
        http_json(
            stack.sim_base + "/control/faults",
            {"rates": [{"kind": "latency", "delay": delay, "rate": 1.0}]},
        )
        idle = stack.gateway.rss_mb()
        settings.say(
            f"memory: {count} messages of {len(base) / 1e6:.1f} MB (JPEG, base64 in JSON) in flight"
            f" at once (simulator answers after {delay:g} s); gateway idle RSS {idle:.0f} MB"
        )
        headers = {"Authorization": f"Bearer {API_KEY}"}

        def post(n: int) -> str:
            body = {
                "to": handset(n),
                "text": "big",
                "media": [
                    {
                        "content_base64": base64.b64encode(distinct_jpeg(base, n)).decode(),
                        "content_type": "image/jpeg",
                    }
                ],
            }
            return str(http_json(stack.api + "/v1/messages", body, headers=headers)["id"])

        t0 = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(post, range(count)))
        accepted_s = time.monotonic() - t0
        done = wait_until(
            lambda: stack.sim_accepted()["distinct"] >= count, timeout=delay + 120, interval=0.2
        )
        if not done:
            raise RuntimeError("memory: not every message reached the simulator" + stack.sim.tail())
        all_s = time.monotonic() - t0
        peak = stack.gateway.peak_rss_mb()
        stack.gateway.stop(30)
    ratio = peak / payload_mb
    verdict = "met" if ratio < TARGET else "MISSED"
    settings.say(
        f"  {len(ids)} accepted by the API in {accepted_s:.1f} s, all submitted after"
        f" {all_s:.1f} s;"
        f" gateway peak RSS (VmHWM) {peak:,.0f} MB = {ratio:.2f} x the {payload_mb:,.0f} MB payload"
        f" (growth over idle {(peak - idle) / payload_mb:.2f} x); target < {TARGET:g} x: {verdict}"
    )
    return {
        "messages": count,
        "payload_mb": round(payload_mb, 1),
        "peak_rss_mb": round(peak, 1),
        "idle_rss_mb": round(idle, 1),
        "vs_payload": round(ratio, 3),
        "growth_vs_payload": round((peak - idle) / payload_mb, 3),
    }


if __name__ == "__main__":
    sys.exit("run through tools/bench.py --only memory")
