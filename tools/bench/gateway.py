"""The gateway stack the mt, loss, memory, campaign and mo benchmarks run: real processes.

* the MMSC: tools/bench/simrun.py, i.e. ``mm7 simulate``'s own parser, config and application
  (strict-3gpp persona by default) plus a tally of accepted SubmitReqs by TransactionID;
* the gateway: ``mm7 serve --config <generated toml>`` with SQLite in the run's temporary folder,
  its API key in ``MM7_API_KEY``, API and inbound endpoint on port 0 at the first start (the same
  ports again on a restart, so the simulator's reports and the load generator keep their URLs);
* load generators: tools/bench/load.py.

With ``--profile N`` the gateway runs under cProfile (``python -m cProfile -o FILE -m mm7.cli.main
serve ...``, written at its graceful stop) and the top N functions are printed.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import pstats
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.proc import (
    ALL_CPUS,
    API_KEY,
    Proc,
    Procs,
    SettingsLike,
    http_json,
    http_text,
    metric_sum,
)

GATEWAY_TOML = """
[links.sim]
url = "{sim_url}"
default = true
vasp_id = "vasp"
vas_id = "vas"
sender_address = "12345"
tps = {tps}
burst = {burst}
max_in_flight = {max_in_flight}
max_recipients = 1
request_timeout = "60s"
connect_timeout = "5s"
breaker = {{ threshold = 1000000, cooldown = "1s" }}
retry = {{ initial_backoff = "0.2s", max_backoff = "2s" }}
{link_extra}
[inbound]
listen = "127.0.0.1:{inbound_port}"
path = "/mm7"
[inbound.peers.sim]
link = "sim"
allow = ["127.0.0.1/32"]

[api]
listen = "127.0.0.1:{api_port}"
max_request_bytes = "{max_request}"
[[api.keys]]
name = "bench"
key_env = "MM7_API_KEY"

{store}
[logging]
level = "warning"
json = true

[metrics]
enabled = true
path = "/metrics"
{extra}
"""


@dataclass
class Stack:
    """One simulator + gateway pair and what was read from their announcements."""

    procs: Procs
    sim: Proc
    sim_base: str
    gateway: Proc
    api: str  # http://127.0.0.1:PORT
    inbound: str  # http://127.0.0.1:PORT/mm7
    config: Path
    db: Path
    options: dict[str, Any] = field(default_factory=dict)
    profile: Path | None = None
    restarts: int = 0

    @property
    def metrics(self) -> str:
        return http_text(self.api + "/metrics")

    def accepted_metric(self) -> float:
        """SubmitReqs the gateway saw answered with success (1000), from its /metrics."""
        return metric_sum(self.metrics, "mm7_submits_total", outcome="success")

    def sim_accepted(self, ids: bool = False) -> dict[str, Any]:
        """The simulator's tally: accepted, distinct, duplicates (and ids)."""
        result: dict[str, Any] = http_json(
            self.sim_base + "/bench/accepted" + ("?ids=1" if ids else "")
        )
        return result


def _ports(url: str) -> int:
    found = re.search(r":(\d+)(/|$)", url.split("//", 1)[1])
    assert found is not None
    return int(found[1])


#: the ``[store]`` table of a gateway on SQLite (the default of ``write_config``)
SQLITE_STORE = '[store]\nbackend = "sqlite"\npath = "{db}"\n'


def postgresql_store(dsn_env: str) -> str:
    """The ``[store]`` table of a gateway on PostgreSQL, its DSN in the variable ``dsn_env``."""
    return f'[store]\nbackend = "postgresql"\ndsn_env = "{dsn_env}"\n'


def write_config(stack_dir: Path, sim_url: str, **options: Any) -> tuple[Path, Path]:
    """The gateway's TOML in ``stack_dir`` (``options`` fill GATEWAY_TOML; ``store``: the
    ``[store]`` table, SQLite in ``stack_dir``/var by default); its path and the SQLite file's."""
    db = stack_dir / "var" / "mm7.sqlite"
    values = {
        "sim_url": sim_url,
        "tps": 100000,
        "burst": 1000,
        "max_in_flight": 64,
        "inbound_port": 0,
        "api_port": 0,
        "max_request": "64 MB",
        "link_extra": "",
        "extra": "",
        "store": SQLITE_STORE.format(db=db.as_posix()),
    }
    values.update(options)
    path = stack_dir / "gateway.toml"
    path.write_text(GATEWAY_TOML.format(**values))
    return path, db


#: an experiment (bench only): MM7_BENCH_PIN_GATEWAY=1 pins every thread of the gateway to the
#: last CPU and the simulator and load generators to the others
PIN_GATEWAY = os.environ.get("MM7_BENCH_PIN_GATEWAY") == "1"
_CPUS = sorted(ALL_CPUS or {0})
GATEWAY_CPUS = {_CPUS[-1]}
OTHER_CPUS = set(_CPUS[:-1]) or GATEWAY_CPUS


def pin(pid: int, cpus: set[int]) -> None:
    """Set the CPU affinity of every thread of process ``pid``."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(tid), cpus)


#: environment of every gateway started (a hook's secret_env, ...), besides MM7_API_KEY
GATEWAY_ENV: dict[str, str] = {"MM7_HOOK_BENCH_SECRET": "bench-hook-secret-0123456789"}


def start_gateway(
    procs: Procs,
    config: Path,
    profile: Path | None,
    *serve_options: str,
    env_extra: dict[str, str] | None = None,
) -> tuple[Proc, str, str]:
    """``mm7 serve`` on ``config`` (``env_extra`` added to its environment: a store's DSN ...),
    up; the process, its API base URL and its inbound URL."""
    env = dict(os.environ)
    env.update(GATEWAY_ENV)
    env.update(env_extra or {})
    env["MM7_API_KEY"] = API_KEY
    # the event loop is chosen, not left to `--loop auto`: asyncio unless MM7_BENCH_UVLOOP=1
    loop = "uvloop" if os.environ.get("MM7_BENCH_UVLOOP") == "1" else "asyncio"
    options = ("--loop", loop, *serve_options)
    argv = ["-m", "mm7.cli.main", "serve", "--config", str(config), *options]
    # an experiment, bench only: the gateway with another GIL switch interval
    switch = os.environ.get("MM7_BENCH_SWITCH_INTERVAL")
    if switch:
        code = "import sys; sys.argv[0] = 'mm7'"
        code += f"; sys.setswitchinterval({float(switch)!r})"
        code += "; from mm7.cli.main import main; sys.exit(main())"
        argv = ["-c", code, "serve", "--config", str(config), *options]
    if profile is not None:
        argv = ["-m", "cProfile", "-o", str(profile), *argv]
    gateway = procs.python("gateway", *argv, env=env)
    api = gateway.wait_for(r"sending API on (\S+)/v1/messages", 60)[1]
    if PIN_GATEWAY:
        pin(gateway.pid, GATEWAY_CPUS)
    inbound = gateway.wait_for(r"inbound MM7 endpoint on (\S+)", 10)[1]
    return gateway, api, inbound


def start_stack(
    settings: SettingsLike,
    procs: Procs,
    *,
    sim_options: tuple[str, ...] = ("--persona", "strict-3gpp", "--dlr-delay", "0"),
    serve_options: tuple[str, ...] = ("--poll-interval", "0.2"),
    profile: bool = False,
    **options: Any,
) -> Stack:
    """The simulator, then the gateway (whose link points at it), then the simulator is told
    the gateway's inbound URL for its reports and MOs."""
    sim = procs.python("simulator", "-m", "bench.simrun", *sim_options)
    sim_url = sim.wait_for(r"bench simulator on (\S+)", 60)[1]
    if PIN_GATEWAY:
        pin(sim.pid, OTHER_CPUS)
    config, db = write_config(procs.workdir, sim_url, **options)
    prof = procs.workdir / "gateway.prof" if profile else None
    gateway, api, inbound = start_gateway(procs, config, prof, *serve_options)
    sim.send(inbound)
    sim.wait_for("bench simulator serving", 30)
    sim_base = sim_url.rsplit("/mm7", 1)[0]
    stack = Stack(procs, sim, sim_base, gateway, api, inbound, config, db, dict(options), prof)
    stack.options["serve_options"] = serve_options
    return stack


def restart_gateway(stack: Stack, *serve_options: str) -> None:
    """Start the gateway again on the same ports (after it was killed)."""
    options = dict(stack.options)
    options.pop("serve_options", None)
    options["api_port"] = _ports(stack.api)
    options["inbound_port"] = _ports(stack.inbound)
    sim_url = stack.sim_base + "/mm7"
    config, _ = write_config(stack.procs.workdir, sim_url, **options)
    stack.gateway, api, inbound = start_gateway(
        stack.procs, config, None, *(serve_options or stack.options["serve_options"])
    )
    assert api == stack.api and inbound == stack.inbound, (api, inbound)
    stack.restarts += 1


def stop_gateway(settings: SettingsLike, stack: Stack) -> None:
    """SIGTERM the gateway (its profile, when profiled, is written then) and print the profile."""
    stack.gateway.stop(60)
    if stack.profile is not None and settings.profile:
        print_profile(settings, stack.profile, "gateway")


def print_profile(settings: SettingsLike, path: Path, what: str) -> None:
    if not path.exists():
        settings.say(f"  (no {what} profile was written)")
        return
    keep = Path(tempfile.gettempdir()) / f"mm7-bench-{what}.prof"
    shutil.copyfile(path, keep)
    text = io.StringIO()
    stats = pstats.Stats(str(path), stream=text)
    text.write(f"\n  cProfile of the {what} process (kept in {keep}), by own time:\n")
    stats.strip_dirs().sort_stats("tottime").print_stats(settings.profile)
    text.write(f"\n  cProfile of the {what} process, by cumulative time:\n")
    stats.sort_stats("cumulative").print_stats(settings.profile)
    settings.say(text.getvalue().rstrip())


def pyspy() -> str | None:
    """The py-spy executable (beside this Python, or on PATH), if installed."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def start_pyspy(procs: Procs, pid: int, seconds: float, out: Path) -> Proc | None:
    """Sample every thread of ``pid`` for ``seconds`` with py-spy (raw collapsed stacks)."""
    exe = pyspy()
    if exe is None:
        return None
    argv = [exe, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds)))]
    argv += ["--rate", "250", "--format", "raw", "--threads", "--output", str(out)]
    if os.environ.get("MM7_BENCH_PYSPY_GIL") == "1":
        # only the thread holding the GIL: where Python time goes, without the waits for the GIL
        argv.append("--gil")
    return procs.start("py-spy", argv)


def print_pyspy(settings: SettingsLike, path: Path, what: str) -> None:
    """Per thread: its share of the samples and its top lines by own samples and inclusive."""
    import collections

    if not path.exists():
        settings.say(f"  (py-spy wrote no samples of the {what})")
        return
    keep = Path(tempfile.gettempdir()) / f"mm7-bench-{what}.pyspy.txt"
    shutil.copyfile(path, keep)
    per_thread: collections.Counter[str] = collections.Counter()
    own: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    inclusive: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        thread = frames[0]
        per_thread[thread] += n
        own[thread][frames[-1]] += n
        for frame in {re.sub(r":\d+\)", ")", f) for f in frames[1:]}:
            inclusive[thread][frame] += n
    total = sum(per_thread.values()) or 1
    settings.say(
        f"\n  py-spy of the {what} process, every thread ({total} samples; kept in {keep}):"
    )
    for thread, n in per_thread.most_common(4):
        settings.say(f"  {thread}: {n / total:.0%} of the samples")
        for frame, c in own[thread].most_common(max(5, settings.profile // 3)):
            settings.say(f"      own  {c / n:6.1%}  {frame}")
        # inclusive, without the frames every sample has (thread start, the event loop)
        shown = [(f, c) for f, c in inclusive[thread].most_common() if c < 0.9 * n]
        for frame, c in shown[: settings.profile]:
            settings.say(f"      incl {c / n:6.1%}  {frame}")


def durability(db: Path) -> str:
    """The store's durability string (SqliteStore.durability) read back from the database."""
    import asyncio

    from mm7.service.store.sqlite.store import SqliteStore

    async def read() -> str:
        store = await SqliteStore.open(db)
        try:
            return store.durability
        finally:
            await store.close()

    return asyncio.run(read())


def api_payload(image: bytes, *, delivery_report: bool = True) -> dict[str, Any]:
    return {
        "to": "+12025550001",
        "text": "Your order has shipped.",
        "media": [
            {"content_base64": base64.b64encode(image).decode(), "content_type": "image/jpeg"}
        ],
        "delivery_report": delivery_report,
    }


def api_load(
    procs: Procs,
    api: str,
    payload: dict[str, Any],
    *,
    seconds: float,
    concurrency: int,
    name: str,
    ids_out: Path | None = None,
    more_apis: tuple[str, ...] = (),
) -> Proc:
    """A tools/bench/load.py ``api`` process, ready: ``send("go")`` starts it, ``json_result``
    waits for its result. ``more_apis``: other instances' APIs, the workers spread over all."""
    spec = procs.workdir / f"{name}.json"
    spec.write_text(
        json.dumps(
            {
                "url": api + "/v1/messages",
                "urls": [base + "/v1/messages" for base in (api, *more_apis)],
                "key": API_KEY,
                "payload": payload,
                "seconds": seconds,
                "concurrency": concurrency,
                "prefix": name,
                "ids_out": None if ids_out is None else str(ids_out),
            }
        )
    )
    load = procs.python(name, "-m", "bench.load", "api", str(spec))
    if PIN_GATEWAY:
        pin(load.pid, OTHER_CPUS)
    load.wait_for("load ready", 60)
    return load


def read_ids(path: Path) -> list[tuple[str, float]]:
    out = []
    for line in path.read_text().splitlines():
        ident, _, at = line.partition(" ")
        out.append((ident, float(at)))
    return out


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def submit_latencies(api: str, ids: list[str]) -> tuple[list[float], dict[str, int]]:
    """Seconds from acceptance (the message's created_at: its commit before the 202) to the
    SubmitRsp (the time of its first ``submitted`` event), from GET /v1/messages/{id}; and the
    count of each recipient status seen."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    out: list[float] = []
    statuses: dict[str, int] = {}
    for ident in ids:
        view = http_json(f"{api}/v1/messages/{ident}", headers=headers)
        for r in view["recipients"]:
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        created = _time(view["created_at"])
        for event in view["events"]:
            if event["kind"] in SUBMITTED_EVENTS:
                out.append((_time(event["at"]) - created).total_seconds())
                break
    return out, statuses


#: event kinds that mean "the MMSC answered the SubmitReq with success"
SUBMITTED_EVENTS = {"submitted"}


if __name__ == "__main__":
    sys.exit("a helper of tools/bench.py")
