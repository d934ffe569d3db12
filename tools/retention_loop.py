"""How long retention's jobs hold the event loop on the SQLite store (BENCHMARKS.md, "Retention
on the event loop").

    python tools/retention_loop.py [--messages 20000] [--json]

A real store in a temporary folder with ``--messages`` finished messages (submitted, reported
delivered), each with its own medium stored as a file and a shared inline one; the clock then
moves a month on and ``purge`` runs. The SQLite store runs a write job's statements on the event
loop (``mm7.service.store.sqlite.store``), so each retention job's own work is timed where it
runs: the functions of ``mm7.service.store.sqlite.retention`` that a write job calls are wrapped
with ``perf_counter``. Reported per job kind: count, median and max ms, the purge's wall time,
and the longest
step of the loop seen by a task yielding in a loop meanwhile (whatever held the loop).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mm7.core.status import MMStatus  # noqa: E402
from mm7.service.store import ManualClock, MediaPart, NewMessage, SqliteStore  # noqa: E402
from mm7.service.store.sqlite import retention  # noqa: E402

LINK = "carrier"
#: the module's job functions, timed wherever they run (those present in this version)
JOBS = ("_purge_messages", "_purge_mos", "_purge_reports", "_purge_media", "purge_request_keys")


def _timed(samples: dict[str, list[float]], name: str, fn: Callable[..., Any]) -> Any:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            samples[name].append(time.perf_counter() - started)

    return run


async def _fill(store: SqliteStore, count: int) -> None:
    shared = MediaPart("image/png", data=b"\x89PNG\r\n\x1a\n" + b"s" * 200)
    batch = 250
    for start in range(0, count, batch):
        enqueues = [
            store.enqueue_message(
                NewMessage(LINK, {"text": "x"}),
                [f"+1201555{(start + i) % 10000:04d}"],
                [MediaPart("application/octet-stream", data=os.urandom(2048)), shared],
            )
            for i in range(min(batch, count - start))
        ]
        await asyncio.gather(*enqueues)
        items = await store.lease(LINK, "w", batch, timedelta(minutes=5))

        async def finish(item: Any) -> None:
            mm7_id = f"mm7-{item.recipient_id}"
            await store.complete(item, mm7_id, 1000, "Success")
            await store.record_delivery_report(LINK, mm7_id, item.address, MMStatus.RETRIEVED)

        await asyncio.gather(*(finish(item) for item in items))


async def measure(messages: int) -> dict[str, Any]:
    """Fill a store, purge it, and return the timings (module docstring)."""
    samples: dict[str, list[float]] = defaultdict(list)
    for name in JOBS:
        if hasattr(retention, name):
            setattr(retention, name, _timed(samples, name, getattr(retention, name)))
    cls = retention.SqliteRetention
    if "_unlink_locked" in vars(cls):  # on a worker thread, holding the write lock
        cls._unlink_locked = _timed(samples, "_unlink_locked (thread)", cls._unlink_locked)  # type: ignore[method-assign]
    if "_unlink_unreferenced" in vars(cls):  # a write job: on the loop
        cls._unlink_unreferenced = _timed(samples, "_unlink_unreferenced", cls._unlink_unreferenced)  # type: ignore[method-assign]
    on_loop: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        clock = ManualClock()
        store = await SqliteStore.open(Path(folder) / "gw.db", clock=clock, inline_media_max=1024)
        try:
            await _fill(store, messages)
            clock.advance(timedelta(days=31))
            loop = asyncio.get_running_loop()
            # whatever else the loop runs (a job's statements included) shows as lag here
            stop = False

            async def watch() -> None:
                while not stop:
                    before = loop.time()
                    await asyncio.sleep(0)
                    on_loop.append(loop.time() - before)

            watcher = asyncio.create_task(watch())
            started = time.perf_counter()
            stats = await store.purge(clock.now() - timedelta(days=30))
            wall = time.perf_counter() - started
            stop = True
            await watcher
        finally:
            await store.close()
    assert stats.messages == messages, stats
    out: dict[str, Any] = {
        "messages": messages,
        "purge_s": round(wall, 3),
        "media": stats.media,
        "max_loop_step_ms": round(max(on_loop) * 1000, 2),
        "p999_loop_step_ms": round(statistics.quantiles(on_loop, n=1000)[-1] * 1000, 2),
    }
    for name, values in sorted(samples.items()):
        out[name] = {
            "jobs": len(values),
            "median_ms": round(statistics.median(values) * 1000, 2),
            "p99_ms": round(statistics.quantiles(values, n=100, method="inclusive")[-1] * 1000, 2)
            if len(values) > 1
            else round(values[0] * 1000, 2),
            "max_ms": round(max(values) * 1000, 2),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = asyncio.run(measure(args.messages))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>20}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
