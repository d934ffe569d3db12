"""Load generators of the multi-process benchmarks, run as their own process.

    PYTHONPATH=tools python -m bench.load post SPEC.json  # one body POSTed again and again
    PYTHONPATH=tools python -m bench.load api SPEC.json   # JSON messages to the API (mt, loss)

Both print ``load ready`` once their session is up, wait for a line on stdin (so the driver can
start every process first and the measured window is the load's own), run ``concurrency``
workers for ``seconds`` and print one JSON line with the result.

``post``: every worker POSTs ``body_file`` with ``headers`` to ``url``; an answer counts when its
HTTP status is ``expect_status`` and its body contains ``expect`` (e.g. the 1000 of a SubmitRsp).
Reports ok, errors, requests/s, client-side p50/p99 in ms.

``api``: every worker POSTs ``payload`` (JSON, ``to`` made unique per message) to
``url`` (or, given ``urls``, worker w to ``urls[w % len(urls)]``: several instances of a
cluster) with the Bearer ``key`` and an Idempotency-Key. A failed attempt (connection refused or
reset while the gateway is being killed, a 5xx) is retried with the same key until it gets its
202 (with ``urls``, on the next URL, as a load balancer does), as a careful application does; so
every message the gateway committed is eventually acknowledged, once. Reports acknowledged
(202s), attempts, the ids with their acceptance times
(``ids_out`` file, one ``id`` a line), accept rate.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.bare import handset


async def _post(spec: dict[str, Any]) -> dict[str, Any]:
    body = Path(spec["body_file"]).read_bytes()
    headers = spec.get("headers", {})
    expect = spec.get("expect", "").encode()
    expect_status = int(spec.get("expect_status", 200))
    url = spec["url"]
    ok = 0
    errors = 0
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        # one request per worker connection before the clock starts
        async with session.post(url, data=body, headers=headers) as rsp:
            await rsp.read()
        print("load ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        start = time.monotonic()
        cpu0 = time.process_time()
        stop_at = start + float(spec["seconds"])

        async def worker() -> None:
            nonlocal ok, errors
            while time.monotonic() < stop_at:
                t0 = time.monotonic()
                try:
                    async with session.post(url, data=body, headers=headers) as rsp:
                        answer = await rsp.read()
                        good = rsp.status == expect_status and expect in answer
                except aiohttp.ClientError:
                    good = False
                if good:
                    ok += 1
                    latencies.append(time.monotonic() - t0)
                else:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(int(spec["concurrency"]))))
        seconds = time.monotonic() - start
        cpu = time.process_time() - cpu0
    latencies.sort()

    def pct(q: float) -> float:
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, round(q * (len(latencies) - 1)))] * 1000

    return {
        "ok": ok,
        "errors": errors,
        "seconds": seconds,
        "rps": ok / seconds,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "cpu_s": cpu,
    }


async def _api(spec: dict[str, Any]) -> dict[str, Any]:
    payload = dict(spec["payload"])
    urls = spec.get("urls") or [spec["url"]]
    headers = {"Authorization": f"Bearer {spec['key']}"}
    prefix = spec.get("prefix", "b")
    acknowledged: list[tuple[str, float]] = []
    attempts = 0
    failures = 0
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=float(spec.get("request_timeout", 30)))
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        print("load ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        start = time.monotonic()
        cpu0 = time.process_time()
        stop_at = start + float(spec["seconds"])

        async def worker(w: int) -> None:
            nonlocal attempts, failures
            n = 0
            turn = w  # the URL this worker posts to; the next one after a failure
            while time.monotonic() < stop_at:
                n += 1
                body = dict(payload)
                body["to"] = handset(w * 100_000 + n % 100_000)
                key = f"{prefix}-{w}-{n}"
                while True:  # the same message until it is acknowledged
                    attempts += 1
                    try:
                        async with session.post(
                            urls[turn % len(urls)],
                            json=body,
                            headers={**headers, "Idempotency-Key": key},
                        ) as rsp:
                            answer = await rsp.read()
                            if rsp.status in (200, 201, 202):
                                acknowledged.append((json.loads(answer)["id"], time.time()))
                                break
                            if rsp.status < 500 and rsp.status != 429:
                                raise RuntimeError(f"API answered {rsp.status}: {answer[:300]!r}")
                    except (TimeoutError, aiohttp.ClientError):
                        pass
                    failures += 1
                    turn += 1
                    await asyncio.sleep(0.05)

        await asyncio.gather(*(worker(w) for w in range(int(spec["concurrency"]))))
        seconds = time.monotonic() - start
        cpu = time.process_time() - cpu0
    ids_out = spec.get("ids_out")
    if ids_out:
        Path(ids_out).write_text("".join(f"{i} {t:.6f}\n" for i, t in acknowledged))
    return {
        "acknowledged": len(acknowledged),
        "distinct": len({i for i, _ in acknowledged}),
        "attempts": attempts,
        "failed_attempts": failures,
        "seconds": seconds,
        "accept_rate": len(acknowledged) / seconds,
        "cpu_s": cpu,
    }


def main() -> int:
    mode, spec_file = sys.argv[1], sys.argv[2]
    spec = json.loads(Path(spec_file).read_text())
    run = {"post": _post, "api": _api}[mode]
    print(json.dumps(asyncio.run(run(spec))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
