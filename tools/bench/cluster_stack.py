"""The gateway stack of the cluster benchmarks: the simulator and one or more gateway processes on
one store, in one of four shapes (``Variant``):

* ``sqlite-1``: one ``mm7 serve`` on SQLite (the embedded default, the baseline);
* ``pg-1``: one ``mm7 serve`` on a fresh PostgreSQL database;
* ``pg-2``: two ``mm7 serve`` processes on one database (two instances behind a load balancer:
  the load generator spreads its workers over both APIs and moves to the other on a failure);
* ``pg-workers-2``: ``mm7 serve --workers 2`` on one database (two workers sharing the listeners
  with SO_REUSEPORT under a supervising parent).

The gateways are started one after the other, so the first holds the link, the relay and
retention (the others claim them when it dies). With several instances the simulator sends its
delivery reports to the last one started (a non-owner: the work spreads) and its MOs round robin
to all (tools/bench/simrun.py). The gateway's CPU is that of every process of every instance
(``--workers``: the parent and its workers), read from /proc; the server's, that of the backends
connected to the benchmark's database (tools/bench/pgserver.py).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from bench import pgserver
from bench.gateway import postgresql_store, start_gateway, write_config
from bench.proc import CpuWindow, Proc, Procs, http_json, process_tree

#: the variable holding the store's DSN for the gateways
DSN_ENV = "MM7_BENCH_STORE_DSN"


@dataclass(frozen=True)
class Variant:
    """A shape of the gateway: its store, separate instances, workers per instance."""

    name: str
    backend: str
    instances: int = 1
    workers: int = 1

    @property
    def processes(self) -> int:
        """Gateway processes serving (a ``--workers`` parent only supervises)."""
        return self.instances * self.workers


SQLITE_1 = Variant("sqlite-1", "sqlite")
PG_1 = Variant("pg-1", "postgresql")
PG_2 = Variant("pg-2", "postgresql", instances=2)
PG_WORKERS_2 = Variant("pg-workers-2", "postgresql", workers=2)
VARIANTS = (SQLITE_1, PG_1, PG_2, PG_WORKERS_2)


@dataclass
class ClusterStack:
    """One simulator and the gateway processes of one variant, up."""

    variant: Variant
    procs: Procs
    sim: Proc
    sim_base: str
    gateways: list[Proc]
    apis: list[str]
    inbounds: list[str]
    serve_options: tuple[str, ...]
    #: what filled the gateway's TOML (tools/bench/gateway.py ``write_config``)
    options: dict[str, Any]
    #: the PostgreSQL database (None on SQLite) and the environment naming its DSN
    database: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    restarts: int = 0

    def gateway_pids(self) -> list[int]:
        """Every process of every instance now (``--workers``: the parent and its workers)."""
        return [pid for g in self.gateways if g.popen.poll() is None for pid in process_tree(g.pid)]

    def gateway_cpu(self) -> CpuWindow:
        return CpuWindow(self.gateway_pids)

    def postgres_cpu(self) -> CpuWindow | None:
        """The CPU of the server's processes connected to this stack's database."""
        database = self.database
        if database is None:
            return None
        return CpuWindow(lambda: pgserver.backend_pids(database))

    def sim_accepted(self, ids: bool = False) -> dict[str, Any]:
        """The simulator's tally: accepted, distinct, duplicates (and ids)."""
        result: dict[str, Any] = http_json(
            self.sim_base + "/bench/accepted" + ("?ids=1" if ids else "")
        )
        return result

    def holder(self, lease: str) -> int | None:
        """The index of the instance holding ``lease`` (its /readyz), if any answers so."""
        for index, api in enumerate(self.apis):
            with contextlib.suppress(OSError, ValueError):
                ready = http_json(api + "/readyz", timeout=5)
                if lease in ready.get("cluster", {}).get("leases", {}):
                    return index
        return None

    def restart(self, index: int) -> None:
        """Start instance ``index`` again on its ports (after it was killed), under a new name."""
        folder = self.procs.workdir / f"restart-{self.restarts}"
        folder.mkdir()
        options = {**self.options, "api_port": _port(self.apis[index])}
        options["inbound_port"] = _port(self.inbounds[index])
        config, _ = write_config(folder, self.sim_base + "/mm7", **options)
        gateway, api, inbound = start_gateway(
            self.procs, config, None, *self.serve_options, env_extra=self.env
        )
        assert (api, inbound) == (self.apis[index], self.inbounds[index]), (api, inbound)
        self.gateways[index] = gateway
        self.restarts += 1


def _port(url: str) -> int:
    found = re.search(r":(\d+)(/|$)", url.split("//", 1)[1])
    assert found is not None
    return int(found[1])


def start_cluster(
    procs: Procs,
    variant: Variant,
    *,
    dsn: str | None,
    database: str | None,
    sim_options: tuple[str, ...] = ("--persona", "strict-3gpp", "--dlr-delay", "0"),
    serve_options: tuple[str, ...] = ("--poll-interval", "0.2"),
    **options: Any,
) -> ClusterStack:
    """The simulator, then the variant's gateways (the first alone: it takes every lease), then
    the simulator is told their inbound URLs. ``options`` fill the gateway's TOML
    (tools/bench/gateway.py); ``dsn``/``database``: the PostgreSQL store (None: SQLite)."""
    sim = procs.python("simulator", "-m", "bench.simrun", *sim_options)
    sim_url = sim.wait_for(r"bench simulator on (\S+)", 60)[1]
    env: dict[str, str] = {}
    if variant.backend == "postgresql":
        assert dsn is not None
        options["store"] = postgresql_store(DSN_ENV)
        env[DSN_ENV] = dsn
    config, _ = write_config(procs.workdir, sim_url, **options)
    serve = serve_options + (("--workers", str(variant.workers)) if variant.workers > 1 else ())
    gateways: list[Proc] = []
    apis: list[str] = []
    inbounds: list[str] = []
    for _ in range(variant.instances):
        gateway, api, inbound = start_gateway(procs, config, None, *serve, env_extra=env)
        gateways.append(gateway)
        apis.append(api)
        inbounds.append(inbound)
    sim.send(" ".join(reversed(inbounds)))  # reports to the last started: not the link's owner
    sim.wait_for("bench simulator serving", 30)
    return ClusterStack(
        variant,
        procs,
        sim,
        sim_url.rsplit("/mm7", 1)[0],
        gateways,
        apis,
        inbounds,
        serve,
        options,
        database,
        env,
    )


@contextlib.contextmanager
def store_for(variant: Variant) -> Iterator[tuple[str | None, str | None]]:
    """(database name, DSN) of a fresh PostgreSQL database for ``variant`` (dropped after), or
    (None, None) on SQLite."""
    if variant.backend != "postgresql":
        yield None, None
        return
    with pgserver.scratch_database() as (name, dsn):
        yield name, dsn
