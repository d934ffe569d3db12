"""``campaign``: 100,000 recipients sharing one 200 KB image, a link at 500 TPS.

One API call carries the 100,000 recipients and the 200 KB JPEG (base64 inline; the API takes
up to ``MAX_RECIPIENTS`` = 100,000 per message). Reported:

* ``accept_s``: wall time from the POST to its 202 (the message, its 100,000 recipient rows and
  the media committed), and ``recipients_per_s_accepted``;
* ``store_growth_mb``: growth of the store's folder (database, WAL, media files) from before the
  first call to after the last; the image is stored once by its SHA-256, so the growth is about
  200 KB plus the per-recipient rows (``bytes_per_recipient`` = (growth - 200 KB) / recipients);
* ``dispatch_per_s``: SubmitReqs answered 1000 per second over a window after the calls
  (``window_s``: 30 s; 3 s with --quick) against the link's ``tps`` = 500 (``vs_tps``).

--quick: one call of 2,000 recipients.
"""

from __future__ import annotations

import base64
import contextlib
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.bare import handset, photo
from bench.gateway import start_stack
from bench.proc import API_KEY, Procs, SettingsLike, http_json

IMAGE_BYTES = 200_000
TPS = 500
CALLS = 1


def _tree_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(root, name)).st_size
    return total


def bench_campaign(settings: SettingsLike) -> dict[str, Any]:
    calls = CALLS
    per_call = 2_000 if settings.quick else 100_000
    window = 3.0 if settings.quick else 30.0
    image = photo(IMAGE_BYTES)
    media = [{"content_base64": base64.b64encode(image).decode(), "content_type": "image/jpeg"}]
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with tempfile.TemporaryDirectory(prefix="mm7-bench-camp-") as tmp, Procs(Path(tmp)) as procs:
        stack = start_stack(settings, procs, tps=TPS, burst=TPS // 10, max_in_flight=64)
        store_dir = stack.db.parent
        settings.say(
            f"campaign: {calls * per_call:,} recipients in {calls} API call, one"
            f" {len(image) // 1000} KB JPEG; link tps = {TPS}"
        )
        size0 = _tree_bytes(store_dir)
        submitted0 = stack.accepted_metric()

        def post(n: int) -> str:
            body = {
                "to": [handset(n * per_call + r) for r in range(per_call)],
                "text": "Campaign",
                "media": media,
                "delivery_report": True,
            }
            answer = http_json(stack.api + "/v1/messages", body, headers=headers, timeout=300)
            return str(answer["id"])

        t0 = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            ids = list(pool.map(post, range(calls)))
        accept_s = time.monotonic() - t0
        size1 = _tree_bytes(store_dir)
        # dispatch rate: from the end of the calls (the dispatcher started during them)
        start_count = stack.accepted_metric()
        cpu0 = stack.gateway.cpu_seconds()
        t1 = time.monotonic()
        time.sleep(window)
        end_count = stack.accepted_metric()
        elapsed = time.monotonic() - t1
        dispatch = (end_count - start_count) / elapsed
        cpu_share = (stack.gateway.cpu_seconds() - cpu0) / elapsed
        stack.gateway.stop(30)
    recipients = calls * per_call
    growth = size1 - size0
    per_recipient = (growth - len(image)) / recipients
    settings.say(
        f"  accepted {len(ids)} calls ({recipients:,} recipients) in {accept_s:.1f} s ="
        f" {recipients / accept_s:,.0f} recipients/s; {start_count - submitted0:,.0f} already"
        f" submitted meanwhile"
    )
    settings.say(
        f"  store growth {growth / 1e6:,.1f} MB (database + WAL + media) = the image once"
        f" ({len(image) / 1e6:.2f} MB) + {per_recipient:,.0f} B per recipient (were the image"
        f" stored per call it would be {calls * len(image) / 1e6:,.1f} MB alone)"
    )
    settings.say(
        f"  dispatch {dispatch:,.0f} SubmitReq/s over {window:g} s = {dispatch / TPS:.2f} x the"
        f" link's tps {TPS}; the gateway used {cpu_share:.0%} of one core meanwhile"
    )
    return {
        "recipients": recipients,
        "calls": calls,
        "accept_s": round(accept_s, 2),
        "recipients_per_s_accepted": round(recipients / accept_s, 1),
        "store_growth_mb": round(growth / 1e6, 2),
        "bytes_per_recipient": round(per_recipient, 1),
        "dispatch_per_s": round(dispatch, 1),
        "vs_tps": round(dispatch / TPS, 3),
        "gateway_cpu_share": round(cpu_share, 3),
    }


if __name__ == "__main__":
    sys.exit("run through tools/bench.py --only campaign")
