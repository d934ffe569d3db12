"""``pgbucket``: a link's limit for a cluster, a shared token bucket against link ownership.

    cd tools && python -m bench.pgbucket [--quick] [--json]
    python tools/bench.py --only pgbucket

Issue 14 asks to measure both ways of holding a link's TPS for several instances together.
On a fresh database with the store's schema (``PostgresStore.open`` migrates it), two agent
processes (two gateway instances, each with the store's pool) run, in interleaved rounds:

- ``bucket_1`` / ``bucket_2``: a shared token bucket as it would really run, one
  ``link_buckets`` row per link and one statement per send (``TAKE``: refill by the time
  elapsed on the server's clock, take a token atomically, or say how long to wait), issued as
  the store issues its one-statement writes (``_write_row``, as ``claim``). Each agent is a
  dispatcher with a backlog that grows at its share of ``OFFERED`` x the link's TPS: it takes a
  token per message, and sleeps the wait the statement returned (refused, or granted the last
  token) before the next. By 1 agent, then by 2 agents at once on the one row.
- ``ownership``: the link's named lease as it runs today (``Ownership`` of
  mm7/service/cluster/ownership.py on ``PostgresStore.claim``, ``lease_ttl`` 10 s): both agents
  keep ``link:bench``; the holder renews every ttl/3, the other claims every ttl/10.

Per shape: the agents' CPU (``time.process_time``, what the gateway pays), the CPU of the
PostgreSQL backends connected to the database (/proc schedstat, ``pgserver.backend_pids``),
statement latency p50/p99 and, for the bucket, the tokens granted in any 1-second window
(sliding, stamped by the server at the grant) against TPS + burst: ``over_admitted`` counts the
windows above it and must be 0. The bucket's cost is per message; ownership's is per second,
so it is divided by the gateway's rate (``RATE`` msgs/s, also the link's TPS here) for the
ratios. Each CPU figure is the least of its rounds. Needs the PostgreSQL server of the tests
(``MM7_TEST_PG_DSN``); without it, it says why and reports nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench import pgserver
from bench.proc import CpuWindow, Proc, Procs, SettingsLike, percentile, pid_cpu_fine

#: the gateway's rate, msgs/s; the bucket's link runs at this TPS
RATE = 300
#: the link's burst (tokens saved up at most)
BURST = 10
#: the dispatchers' backlog grows at this many times the link's TPS: refusals happen
OFFERED = 1.2
#: ``[cluster] lease_ttl``'s default, seconds
LEASE_TTL = 10.0
LINK = "bench"

BUCKET_TABLE = """CREATE TABLE link_buckets (
    link TEXT PRIMARY KEY, rate DOUBLE PRECISION NOT NULL, burst DOUBLE PRECISION NOT NULL,
    tokens DOUBLE PRECISION NOT NULL, at TIMESTAMPTZ NOT NULL)"""

#: refill by the time elapsed since ``at`` (the server's clock: one clock for every host), take a
#: token if there is one; either way the seconds until the next one (after a grant: so that one
#: dispatcher alone is refused only when another took the token). ``at`` never goes back: a
#: transaction that began before the last grant but got the row after it refills nothing
#: (``now()`` is the transaction's start), so each grant's ``at`` is its stamp and the
#: arithmetic is exact in it.
TAKE = """WITH take AS (
    UPDATE link_buckets SET
        tokens = least(burst, tokens + rate * greatest(0, extract(epoch FROM now() - at))) - 1,
        at = greatest(at, now())
    WHERE link = $1
      AND least(burst, tokens + rate * greatest(0, extract(epoch FROM now() - at))) >= 1
    RETURNING extract(epoch FROM at)::float8 AS stamp, greatest(0, (1 - tokens) / rate) AS wait
)
SELECT stamp, wait FROM take
UNION ALL
SELECT NULL, (1 - least(burst, tokens + rate * greatest(0, extract(epoch FROM now() - at))))
    / rate
FROM link_buckets WHERE link = $1 AND NOT EXISTS (SELECT FROM take)"""

SHAPES = ("bucket_1", "bucket_2", "ownership")


# --------------------------------------------------------------------------- the agents


async def _agent_bucket(store: Any, seconds: float, rate: float) -> dict[str, Any]:
    """A dispatcher whose backlog grows at ``rate``: a token per message, a wait when refused."""
    latencies: list[float] = []
    stamps: list[float] = []
    received: list[float] = []
    refused = 0
    cpu = time.process_time()
    start = time.perf_counter()
    end = start + seconds
    while (now := time.perf_counter()) < end:
        arrived = int((now - start) * rate) + 1
        if arrived <= len(stamps):  # backlog empty: wait for the next message
            await asyncio.sleep(start + len(stamps) / rate - now)
            continue
        sent = time.perf_counter()
        row = await store._write_row(TAKE, LINK)
        latencies.append(time.perf_counter() - sent)
        if row["stamp"] is not None:
            stamps.append(float(row["stamp"]))
            received.append(time.monotonic())  # one clock for every process of the host
        else:
            refused += 1
        if row["wait"] > 0:  # no token left: ask again when the next one is due
            await asyncio.sleep(min(float(row["wait"]), 1.0))
    return {
        "cpu_s": time.process_time() - cpu,
        "seconds": time.perf_counter() - start,
        "statements": len(latencies),
        "granted": len(stamps),
        "refused": refused,
        "latencies": latencies,
        "stamps": stamps,
        "received": received,
    }


class _Counted:
    """The store's ``claim`` / ``give_up``, each call timed (what ``Ownership`` uses of it)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.latencies: list[float] = []

    async def claim(self, name: str, owner: str, ttl: timedelta) -> int | None:
        sent = time.perf_counter()
        try:
            token: int | None = await self.store.claim(name, owner, ttl)
            return token
        finally:
            self.latencies.append(time.perf_counter() - sent)

    async def give_up(self, name: str, owner: str) -> None:
        await self.store.give_up(name, owner)


async def _agent(dsn: str, name: str) -> None:
    """One instance: commands on stdin (a JSON object a line), answers on stdout.

    ``{"do": "bucket"|"own", "seconds": s, "rate": r}`` -> ``ready``; then ``go`` -> the
    figures (one JSON line); then ``end`` -> ``done``. ``{"do": "quit"}`` ends the process.
    """
    import structlog

    from mm7.service.cluster.ownership import Ownership, link_lease
    from mm7.service.store.postgres.store import PostgresStore

    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    loop = asyncio.get_running_loop()

    async def line() -> str:
        return (await loop.run_in_executor(None, sys.stdin.readline)).strip()

    store = await PostgresStore.open(dsn, min_connections=2, max_connections=2)
    try:
        await store._write_row(TAKE, LINK)  # prepared on a connection, as after a warm-up
        print("ready", flush=True)
        while True:
            command = json.loads(await line() or '{"do": "quit"}')
            if command["do"] == "quit":
                return
            counted = _Counted(store)
            ownership = None
            if command["do"] == "own":
                ownership = Ownership(counted, name, [link_lease(LINK)], LEASE_TTL)
                await ownership.start()
            print("ready", flush=True)
            if await line() != "go":
                return
            if ownership is None:
                figures = await _agent_bucket(store, command["seconds"], command["rate"])
            else:
                counted.latencies.clear()
                cpu = time.process_time()
                start = time.perf_counter()
                await asyncio.sleep(command["seconds"])
                figures = {
                    "cpu_s": time.process_time() - cpu,
                    "seconds": time.perf_counter() - start,
                    "statements": len(counted.latencies),
                    "latencies": counted.latencies,
                    "held": ownership.held(link_lease(LINK)),
                }
            print(json.dumps(figures), flush=True)
            if await line() != "end":
                return
            if ownership is not None:
                await ownership.stop()
            print("done", flush=True)
    finally:
        await store.close()


# --------------------------------------------------------------------------- the driver


def max_in_window(times: Sequence[float], width: float = 1.0) -> int:
    """The most of ``times`` in any window [t, t + width) (sliding: starting at each time)."""
    ordered = sorted(times)
    best = 0
    first = 0
    for last, at in enumerate(ordered):
        while ordered[first] <= at - width:
            first += 1
        best = max(best, last - first + 1)
    return best


async def _prepare(dsn: str) -> None:
    """The store's schema (migrations) and the bucket's table with the link's row, full."""
    from mm7.service.store.postgres.store import PostgresStore

    store = await PostgresStore.open(dsn, min_connections=1, max_connections=1)
    try:
        await store._execute_write(BUCKET_TABLE)
        await store._execute_write(
            "INSERT INTO link_buckets VALUES ($1, $2, $3, $3, now())",
            LINK,
            float(RATE),
            float(BURST),
        )
    finally:
        await store.close()


def _round(agents: list[Proc], shape: str, seconds: float, database: str) -> dict[str, Any]:
    """One shape once: the agents' figures together and the backends' CPU over the window."""
    busy = agents[:1] if shape == "bucket_1" else agents
    command = {
        "do": "own" if shape == "ownership" else "bucket",
        "seconds": seconds,
        "rate": RATE * OFFERED / len(busy),
    }
    for agent in busy:
        agent.send(json.dumps(command))
    for agent in busy:
        agent.wait_for(r"^ready$", 30)
    backends = CpuWindow(lambda: pgserver.backend_pids(database), reader=pid_cpu_fine)
    backends.start()
    for agent in busy:
        agent.send("go")
    answers = [json.loads(agent.wait_for(r"^(\{.*\})$", seconds + 60).group(1)) for agent in busy]
    postgres_s = backends.stop()
    for agent in busy:
        agent.send("end")
    for agent in busy:
        agent.wait_for(r"^done$", 30)
    out: dict[str, Any] = {
        "client_s": sum(a["cpu_s"] for a in answers),
        "postgres_s": postgres_s,
        "seconds": max(a["seconds"] for a in answers),
        "statements": sum(a["statements"] for a in answers),
        "latencies": [x for a in answers for x in a["latencies"]],
    }
    if shape != "ownership":
        stamps = [x for a in answers for x in a["stamps"]]
        out["granted"] = len(stamps)
        out["refused"] = sum(a["refused"] for a in answers)
        out["max_stamped"] = max_in_window(stamps)
        out["max_received"] = max_in_window([x for a in answers for x in a["received"]])
    else:
        out["holders"] = sum(1 for a in answers if a["held"])
    return out


def _summary(shape: str, rounds: list[dict[str, Any]]) -> dict[str, float]:
    """The figures of one shape over its rounds: each CPU figure the least of its rounds (a noisy
    neighbour only costs a round), counts the median, latencies over every statement."""
    latencies = [x for r in rounds for x in r["latencies"]]
    out: dict[str, float] = {}
    if shape == "ownership":
        client = min(r["client_s"] / r["seconds"] for r in rounds) * 1e3
        postgres = min(r["postgres_s"] / r["seconds"] for r in rounds) * 1e3
        out[f"{shape}_statements_per_s"] = round(
            statistics.median(r["statements"] / r["seconds"] for r in rounds), 3
        )
        out[f"{shape}_client_cpu_ms_per_s"] = round(client, 4)
        out[f"{shape}_postgres_cpu_ms_per_s"] = round(postgres, 4)
        out[f"{shape}_client_cpu_ms_per_msg"] = round(client / RATE, 6)
        out[f"{shape}_postgres_cpu_ms_per_msg"] = round(postgres / RATE, 6)
    else:
        out[f"{shape}_granted_per_s"] = round(
            statistics.median(r["granted"] / r["seconds"] for r in rounds), 1
        )
        out[f"{shape}_statements_per_msg"] = round(
            statistics.median(r["statements"] / r["granted"] for r in rounds), 3
        )
        out[f"{shape}_client_cpu_ms_per_msg"] = round(
            min(r["client_s"] / r["granted"] for r in rounds) * 1e3, 4
        )
        out[f"{shape}_postgres_cpu_ms_per_msg"] = round(
            min(r["postgres_s"] / r["granted"] for r in rounds) * 1e3, 4
        )
        out[f"{shape}_max_granted_per_window"] = max(r["max_stamped"] for r in rounds)
        out[f"{shape}_max_received_per_window"] = max(r["max_received"] for r in rounds)
    out[f"{shape}_p50_ms"] = round(percentile(latencies, 0.5) * 1e3, 3)
    out[f"{shape}_p99_ms"] = round(percentile(latencies, 0.99) * 1e3, 3)
    return out


def measure(quick: bool, say: Callable[[str], None]) -> dict[str, Any]:
    """Interleaved rounds of the three shapes on a scratch database; the figures."""
    rounds, bucket_s, own_s = (1, 1.5, 3.0) if quick else (3, 8.0, 15.0)
    runs: dict[str, list[dict[str, Any]]] = {shape: [] for shape in SHAPES}
    with (
        pgserver.scratch_database("mm7_bench_bucket") as (database, dsn),
        tempfile.TemporaryDirectory() as workdir,
        Procs(Path(workdir)) as procs,
    ):
        asyncio.run(_prepare(dsn))
        agents = [
            procs.python(f"agent-{i}", "-m", "bench.pgbucket", "--agent", dsn, f"agent-{i}")
            for i in (1, 2)
        ]
        for agent in agents:
            agent.wait_for(r"^ready$", 60)
        _round(agents, "bucket_2", 0.5, database)  # warm-up: connections, plans
        for index in range(rounds):
            for shape in SHAPES:
                run = _round(agents, shape, own_s if shape == "ownership" else bucket_s, database)
                runs[shape].append(run)
                say(_describe(index + 1, shape, run))
        for agent in agents:
            agent.send(json.dumps({"do": "quit"}))
    limit = RATE + BURST
    over = sum(1 for s in ("bucket_1", "bucket_2") for r in runs[s] if r["max_stamped"] > limit)
    figures: dict[str, Any] = {"gateway_rate": RATE, "limit_per_window": limit}
    for shape in SHAPES:
        figures.update(_summary(shape, runs[shape]))
    figures["over_admitted"] = over
    for shape in ("bucket_1", "bucket_2"):
        for side in ("client", "postgres"):
            own = figures[f"ownership_{side}_cpu_ms_per_msg"]
            ratio = figures[f"{shape}_{side}_cpu_ms_per_msg"] / own if own > 0 else float("inf")
            figures[f"{shape}_over_ownership_{side}_cpu"] = round(ratio, 1)
    say(
        f"pgbucket: per message at {RATE} msgs/s: bucket (2 instances) client"
        f" {figures['bucket_2_client_cpu_ms_per_msg']:.3f} ms, PostgreSQL"
        f" {figures['bucket_2_postgres_cpu_ms_per_msg']:.3f} ms; ownership client"
        f" {figures['ownership_client_cpu_ms_per_msg'] * 1e3:.2f} us, PostgreSQL"
        f" {figures['ownership_postgres_cpu_ms_per_msg'] * 1e3:.2f} us; bucket / ownership"
        f" = {figures['bucket_2_over_ownership_client_cpu']}x (client),"
        f" {figures['bucket_2_over_ownership_postgres_cpu']}x (PostgreSQL);"
        f" granted per 1 s window at most {figures['bucket_2_max_granted_per_window']}"
        f" (limit {limit}), over-admitted windows: {over}"
    )
    return figures


def _describe(index: int, shape: str, run: dict[str, Any]) -> str:
    head = f"  round {index} {shape:<9}"
    if shape == "ownership":
        return (
            f"{head} {run['statements'] / run['seconds']:.2f} statements/s,"
            f" client {run['client_s'] * 1e3 / run['seconds']:.3f} ms/s,"
            f" PostgreSQL {run['postgres_s'] * 1e3 / run['seconds']:.3f} ms/s,"
            f" holders {run['holders']}"
        )
    granted = max(1, run["granted"])
    return (
        f"{head} {run['granted'] / run['seconds']:.0f} granted/s,"
        f" {run['refused'] / granted:.2f} refused per grant,"
        f" client {run['client_s'] * 1e3 / granted:.3f} ms/msg,"
        f" PostgreSQL {run['postgres_s'] * 1e3 / granted:.3f} ms/msg,"
        f" p50 {percentile(run['latencies'], 0.5) * 1e3:.2f} ms,"
        f" p99 {percentile(run['latencies'], 0.99) * 1e3:.2f} ms,"
        f" max per 1 s window {run['max_stamped']} (received {run['max_received']})"
    )


def bench_pgbucket(settings: SettingsLike) -> dict[str, Any]:
    """The registered benchmark: the figures, or nothing (saying why) without a server."""
    settings.say(
        f"pgbucket: a shared token bucket (one statement per send, link at {RATE} TPS, burst"
        f" {BURST}, offered {OFFERED}x) by 1 and 2 instances, against link ownership's lease"
        f" (ttl {LEASE_TTL:g} s) by 2 instances"
    )
    why = pgserver.unavailable()
    if why is not None:
        settings.say(f"pgbucket: skipped: {why}")
        return {}
    return measure(settings.quick, settings.say)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one short round")
    parser.add_argument("--json", action="store_true", help="the figures as JSON on stdout")
    parser.add_argument("--agent", nargs=2, metavar=("DSN", "NAME"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.agent:
        asyncio.run(_agent(*args.agent))
        return 0
    out = sys.stderr if args.json else sys.stdout

    def say(line: str = "") -> None:
        print(line, file=out, flush=True)

    why = pgserver.unavailable()
    if why is not None:
        say(f"pgbucket: cannot run: {why}")
        return 1
    figures = measure(args.quick, say)
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
