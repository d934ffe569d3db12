"""Smoke tests of the multi-process benchmarks in tools/bench.py (sim, mt, loss, memory, campaign,
mo, floor, and pgdriver, pgbucket and the cluster ones where a PostgreSQL server answers): each runs
with --quick (real processes on loopback, a few seconds) and prints one JSON object of the
documented shape.

Only shapes are checked, and that the figures are positive, never how big they are: the machines
that run the tests are shared, so timings cannot gate a build. Two behaviours are asserted: under
two SIGKILLs of the gateway nothing acknowledged is lost (``loss``, and ``cluster_loss`` where
the killed instance owns the link: acknowledged == delivered); and a token bucket in PostgreSQL
never grants more than its rate + burst in a second (``pgbucket``, counted by the server's stamp
of each grant, exact by construction, not a timing).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "tools" / "bench.py"


def _run(name: str) -> dict[str, Any]:
    """The JSON result of ``--only name --quick`` (``name``: several, comma-separated: a dict
    of them all)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--only", name, "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    data = json.loads(proc.stdout)  # exactly one JSON document: extra output would fail here
    assert isinstance(data, dict) and list(data) == name.split(",")
    assert proc.stderr.strip(), "the human-readable report goes to stderr with --json"
    result: dict[str, Any] = data if "," in name else data[name]
    return result


def _positive(result: dict[str, Any], *keys: str) -> None:
    for key in keys:
        value = result[key]
        assert isinstance(value, int | float) and not isinstance(value, bool), (key, value)
        assert math.isfinite(value) and value > 0, (key, value)


@pytest.mark.parametrize("name", ["sim", "mt"])
def test_throughput_benchmarks(name: str) -> None:
    result = _run(name)
    _positive(result, "msgs_per_s", "vs_bare_aiohttp", "bare_per_s")
    if name == "mt":
        _positive(result, "p50_ms", "p99_ms", "gateway_cpu_ms_per_msg", "accept_per_s")
        assert "synchronous=FULL" in result["durability"]


def test_mo_benchmark() -> None:
    result = _run("mo")
    if result["ingest_status"] != 1000:
        pytest.skip(f"the gateway answered DeliverReq with {result['ingest_status']}: no MO ingest")
    _positive(result, "msgs_per_s", "vs_bare_aiohttp", "bare_per_s", "relayed_per_s")


def test_floor_benchmark() -> None:
    """mm7 and the floor server each carried the path's traffic (the floor servers raise when
    a message is not answered 1000, submitted and reported, or relayed), figures per path."""
    result = _run("floor")
    assert set(result) == {"mt", "mo", "sim"}
    for path in ("mt", "mo", "sim"):
        _positive(result[path], "mm7_ms", "floor_ms", "vs_floor", "goal_ms")
    _positive(result["mt"], "mm7_msgs_per_s", "floor_msgs_per_s", "mm7_vs_bare", "floor_vs_bare")
    _positive(result["sim"], "bare_ms")


def test_loss_benchmark_loses_nothing_acknowledged() -> None:
    result = _run("loss")
    _positive(result, "acknowledged", "delivered", "kills")
    assert result["acknowledged"] == result["delivered"]
    assert result["lost"] == 0 and result["unexpected"] == 0
    assert result["duplicates"] >= 0


def test_memory_benchmark() -> None:
    result = _run("memory")
    _positive(result, "messages", "payload_mb", "peak_rss_mb", "idle_rss_mb", "vs_payload")


def test_campaign_benchmark() -> None:
    result = _run("campaign")
    _positive(
        result,
        "recipients",
        "accept_s",
        "recipients_per_s_accepted",
        "store_growth_mb",
        "dispatch_per_s",
        "vs_tps",
    )


async def test_pgdriver_benchmark() -> None:
    from tests.helpers.stores import pg_unavailable

    why = await pg_unavailable()
    if why is not None:
        pytest.skip(why)
    result = await asyncio.to_thread(_run, "pgdriver")
    _positive(result, "asyncpg_cpu_ms_per_msg", "psycopg_cpu_ms_per_msg", "psycopg_over_asyncpg")


async def test_pgbucket_benchmark_never_over_admits() -> None:
    from tests.helpers.stores import pg_unavailable

    why = await pg_unavailable()
    if why is not None:
        pytest.skip(why)
    result = await asyncio.to_thread(_run, "pgbucket")
    for shape in ("bucket_1", "bucket_2"):
        _positive(
            result,
            f"{shape}_granted_per_s",
            f"{shape}_statements_per_msg",
            f"{shape}_client_cpu_ms_per_msg",
            f"{shape}_postgres_cpu_ms_per_msg",
            f"{shape}_max_granted_per_window",
            f"{shape}_p50_ms",
            f"{shape}_p99_ms",
            f"{shape}_over_ownership_client_cpu",
            f"{shape}_over_ownership_postgres_cpu",
        )
        # the bucket's own guarantee, stamped by the server at each grant: exact, not a timing
        assert result[f"{shape}_max_granted_per_window"] <= result["limit_per_window"]
    _positive(
        result,
        "ownership_statements_per_s",
        "ownership_client_cpu_ms_per_msg",
        "ownership_postgres_cpu_ms_per_msg",
        "ownership_p50_ms",
    )
    assert result["over_admitted"] == 0


#: the shapes of tools/bench/cluster_stack.py, as the cluster benchmarks name their figures
CLUSTER_VARIANTS = ("sqlite_1", "pg_1", "pg_2", "pg_workers_2")


async def test_cluster_benchmarks() -> None:
    from tests.helpers.stores import pg_unavailable

    why = await pg_unavailable()
    if why is not None:
        pytest.skip(why)
    results = await asyncio.to_thread(_run, "cluster_mt,cluster_mo,cluster_loss")
    for name in ("cluster_mt", "cluster_mo"):
        result = results[name]
        for variant in CLUSTER_VARIANTS:
            # mo: the highest rate sustained, 0 when a busy machine sustained none
            assert result[f"{variant}_msgs_per_s"] >= 0
            _positive(result, f"{variant}_gateway_cpu_ms_per_msg")
            _positive(result, f"{variant}_cpu_vs_sqlite_1", f"{variant}_cpu_vs_pg_1")
            if variant != "sqlite_1":
                _positive(result, f"{variant}_postgres_cpu_ms_per_msg")
        assert result["pg_1_cpu_vs_pg_1"] == 1.0 and result["sqlite_1_cpu_vs_sqlite_1"] == 1.0
    loss = results["cluster_loss"]
    _positive(loss, "acknowledged", "delivered", "kills")
    assert loss["acknowledged"] == loss["delivered"]
    assert loss["lost"] == 0 and loss["unexpected"] == 0
