"""`mm7 serve --workers N`: refused on SQLite for N > 1, ports reserved and shared, and the
supervision (restart, failed starts, graceful stop) with real processes.

The supervisor is run on small Python workers written by the tests (they print READY, exit,
ignore SIGTERM... as told), then on a real `mm7 serve --workers 1` on SQLite (the one worker
count SQLite allows) whose worker is SIGKILLed, and on `mm7 serve --workers 2` on a fresh
PostgreSQL database (both workers answer on the one port, one owns the link, every message is
delivered). Waits are on conditions, bounded only against a hang."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
from aiohttp import web

from mm7.service.cluster.workers import READY, Supervisor, WorkerSpec, reserve_ports, worker_config
from mm7.service.config.loader import load_config
from mm7.simulator.app import SIMULATOR
from mm7.transport.listener import ListenerLimits, serve
from tests.helpers.runtime import (
    AUTH,
    bound_socket,
    clean_env,
    drain,
    message,
    read_until,
    start_simulator,
    wait_for,
    write_config,
)
from tests.helpers.runtime import serve as mm7_serve
from tests.helpers.runtime import stop as stop_process
from tests.helpers.stores import pg_database

# A worker that does what its file says, once per start: "ready" (print READY and wait for
# SIGTERM), "crash" (print READY, then exit 3), "fail" (exit 1 without READY), "stubborn"
# (print READY and ignore SIGTERM). Each start appends its pid to starts.txt.
WORKER = f"""
import os, signal, sys, time
from pathlib import Path
here = Path(sys.argv[1])
index = int(sys.argv[2])
plan = (here / f"plan-{{index}}.txt").read_text().split()
starts = here / f"starts-{{index}}.txt"
with starts.open("a") as f:
    f.write(f"{{os.getpid()}}\\n")
n = len(starts.read_text().split())
step = plan[min(n, len(plan)) - 1]
if step == "fail":
    sys.exit(1)
if step == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
def stop(sig, frame):
    (here / f"stopped-{{index}}.txt").write_text("SIGTERM")
    sys.exit(0)
if step == "ready":
    signal.signal(signal.SIGTERM, stop)
print("{READY}: w" + str(index), flush=True)
if step == "crash":
    sys.exit(3)
while True:
    time.sleep(0.05)
"""


def supervisor(tmp_path: Path, plans: dict[int, str], **kw: object) -> Supervisor:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    for index, plan in plans.items():
        (tmp_path / f"plan-{index}.txt").write_text(plan)
    lines: list[str] = []
    sup = Supervisor(
        len(plans),
        lambda index: [sys.executable, str(script), str(tmp_path), str(index)],
        out=lines.append,
        err=lines.append,
        **kw,  # type: ignore[arg-type]
    )
    sup.lines = lines  # type: ignore[attr-defined]
    return sup


def starts(tmp_path: Path, index: int) -> int:
    path = tmp_path / f"starts-{index}.txt"
    return len(path.read_text().split()) if path.exists() else 0


# --------------------------------------------------------------------------- supervision


async def test_a_dead_worker_is_restarted_and_sigterm_stops_them_all(tmp_path: Path) -> None:
    sup = supervisor(tmp_path, {1: "ready", 2: "crash ready"}, restart_delay=0.01)
    stop = asyncio.Event()
    run = asyncio.create_task(sup.run(stop.wait()))

    async def restarted() -> bool:
        return starts(tmp_path, 2) == 2 and sum(READY in line for line in sup.lines) == 3  # type: ignore[attr-defined]

    await wait_for(restarted)
    stop.set()
    assert await run == 0
    assert sup.starts == {1: 1, 2: 2}
    for index in (1, 2):
        assert (tmp_path / f"stopped-{index}.txt").read_text() == "SIGTERM"
    lines = sup.lines  # type: ignore[attr-defined]
    assert any("worker 2 exited (status 3); restarting it" in line for line in lines)
    assert "[worker 1] " + READY + ": w1" in lines


async def test_a_worker_that_cannot_start_stops_the_others_and_fails(tmp_path: Path) -> None:
    sup = supervisor(tmp_path, {1: "ready", 2: "fail"})
    assert await sup.run(asyncio.Event().wait()) == 1
    assert any("worker 2 could not start (exit status 1)" in line for line in sup.lines)  # type: ignore[attr-defined]
    assert starts(tmp_path, 2) == 1  # not retried: the start itself failed


async def test_restarts_that_never_start_give_up(tmp_path: Path) -> None:
    sup = supervisor(tmp_path, {1: "crash fail"}, restart_delay=0.01, failed_starts=2)
    assert await sup.run(asyncio.Event().wait()) == 1
    assert starts(tmp_path, 1) == 3  # started, died, then two restarts that never got ready
    assert any("failed to start 2 times in a row" in line for line in sup.lines)  # type: ignore[attr-defined]


async def test_a_worker_ignoring_sigterm_is_killed_after_the_stop_timeout(tmp_path: Path) -> None:
    sup = supervisor(tmp_path, {1: "stubborn"}, stop_timeout=0.5)
    stop = asyncio.Event()
    run = asyncio.create_task(sup.run(stop.wait()))

    async def ready() -> bool:
        return any(READY in line for line in sup.lines)  # type: ignore[attr-defined]

    await wait_for(ready)
    stop.set()
    assert await run == 1
    assert any("did not stop; killing it" in line for line in sup.lines)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- ports and specs


async def test_reserved_ports_are_shared_by_listeners_with_reuse_port(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, 9), env={})
    ports, held = reserve_ports(config)
    try:
        assert ports["api"] > 0 and ports["inbound"] > 0 and ports["api"] != ports["inbound"]
        other = socket.socket()
        try:
            try:
                other.bind(("127.0.0.1", ports["api"]))
            except OSError:
                pass  # the reservation keeps the port from a process that does not share it
            else:
                raise AssertionError("the reserved port was taken")
        finally:
            other.close()
        answered: list[str] = []
        listeners = []
        for name in ("one", "two"):

            async def handler(request: web.Request, name: str = name) -> web.Response:
                answered.append(name)
                return web.Response(text=name)

            app = web.Application()
            app.router.add_get("/", handler)
            listeners.append(
                await serve(app, "127.0.0.1", ports["api"], ListenerLimits(), reuse_port=True)
            )
        try:
            for _ in range(64):  # a new connection each: the kernel spreads them
                async with (
                    aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s,
                    s.get(f"http://127.0.0.1:{ports['api']}/") as rsp,
                ):
                    assert rsp.status == 200
        finally:
            for listener in listeners:
                await listener.close()
        assert set(answered) == {"one", "two"}
    finally:
        for sock in held:
            sock.close()


def test_a_worker_runs_the_config_under_its_name_and_the_reserved_ports(tmp_path: Path) -> None:
    path = write_config(tmp_path, 9, extra='[metrics]\nlisten = "127.0.0.1:9100"\n')
    config = load_config(path, env={})
    spec = WorkerSpec.from_json(WorkerSpec(2, 3, "gw-a", {"api": 8001, "inbound": 9001}).to_json())
    mine = worker_config(config, spec)
    assert mine.cluster.instance == "gw-a-2"
    assert (mine.api.listen.port, mine.inbound.listen.port) == (8001, 9001)
    assert mine.metrics.listen is not None and mine.metrics.listen.port == 9101
    assert mine.links == config.links and mine.store == config.store


# --------------------------------------------------------------------------- mm7 serve


def test_workers_over_one_on_sqlite_are_refused_by_name(tmp_path: Path) -> None:
    path = write_config(tmp_path, 9)
    done = subprocess.run(
        [sys.executable, "-m", "mm7.cli.main", "serve", "--config", str(path), "--workers", "2"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--workers 2" in done.stderr and 'store.backend is "sqlite"' in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "var").exists()  # nothing was started


def test_a_worker_that_cannot_listen_fails_the_start(tmp_path: Path) -> None:
    with bound_socket() as taken:
        taken.listen()
        port = taken.getsockname()[1]
        path = write_config(tmp_path, 9, extra=f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "mm7.cli.main",
                "serve",
                "--config",
                str(path),
                "--workers",
                "1",
                "--grace",
                "1",
            ],  # fmt: skip
            cwd=tmp_path,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 1, done.stderr
    assert "worker 1 could not start" in done.stderr


async def test_mm7_serve_workers_restarts_a_killed_worker_on_the_same_port(
    tmp_path: Path,
) -> None:
    path = write_config(tmp_path, 9)
    proc = mm7_serve(path, tmp_path, clean_env(), "--workers", "1", "--poll-interval", "0.1")
    try:
        api = (await asyncio.to_thread(read_until, proc, r"sending API on (\S+)/v1/messages"))[1]
        await asyncio.to_thread(read_until, proc, r"1 workers ready")
        assert not api.endswith(":0")
        async with aiohttp.ClientSession(headers=AUTH) as http:
            async with http.get(f"{api}/readyz") as rsp:
                body = await rsp.json()
            worker = body["cluster"]["instance"]
            assert worker.endswith("-1") and body["cluster"]["leases"]["link:main"] == 1
            pid = int(worker.rsplit("-", 2)[-2])
            assert pid == proc.pid  # <hostname>-<parent pid>-<index>
            children = subprocess.run(
                ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True, check=True
            ).stdout.split()
            (child,) = children
            await asyncio.to_thread(subprocess.run, ["kill", "-KILL", child], check=True)

            async def answered_again() -> bool:
                try:
                    async with http.post(f"{api}/v1/messages", json=message()) as rsp:
                        return rsp.status == 202
                except aiohttp.ClientError:
                    return False

            await wait_for(answered_again, deadline=60)
            after = subprocess.run(
                ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True, check=True
            ).stdout.split()
            assert after != children
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.to_thread(proc.communicate, timeout=60)
        assert proc.returncode == 0, err
        assert "worker 1 exited (status -9); restarting it" in err
        assert "[worker 1] mm7 gateway: stopped" in out
    finally:
        stop_process(proc)


async def test_mm7_serve_two_workers_on_postgresql_share_the_ports_and_the_work(
    tmp_path: Path,
) -> None:
    """Two real workers on one fresh PostgreSQL database: one API port and one MM7 port that the
    kernel spreads over both, one link owner, and the reports of what it sent correlated by
    whichever worker the simulator's connection reached."""
    async with pg_database() as dsn:
        with bound_socket() as mmsc:
            path = write_config(tmp_path, mmsc.getsockname()[1])
            text = path.read_text()
            db_line = f'path = "{(tmp_path / "var" / "mm7.sqlite").as_posix()}"'
            assert db_line in text
            path.write_text(
                text.replace(db_line, 'backend = "postgresql"\ndsn_env = "MM7_TEST_DSN"')
            )
            env = {**clean_env(), "MM7_TEST_DSN": dsn}
            proc = mm7_serve(path, tmp_path, env, "--workers", "2", "--poll-interval", "0.1")
            runner: web.AppRunner | None = None
            try:
                read = asyncio.to_thread
                api = (await read(read_until, proc, r"sending API on (\S+)/v1/messages"))[1]
                inbound = (await read(read_until, proc, r"inbound MM7 endpoint on (\S+)"))[1]
                await read(read_until, proc, r"2 workers ready")
                lines = drain(proc)
                sim, runner = await start_simulator(mmsc, inbound)
                # a new connection per request, as from many clients: SO_REUSEPORT spreads them
                fresh = aiohttp.TCPConnector(force_close=True)
                async with aiohttp.ClientSession(headers=AUTH, connector=fresh) as http:
                    held: dict[str, dict[str, int]] = {}

                    async def both_answered() -> bool:
                        async with http.get(f"{api}/readyz") as rsp:
                            assert rsp.status == 200, await rsp.text()
                            cluster = (await rsp.json())["cluster"]
                        held[cluster["instance"]] = cluster["leases"]
                        return len(held) == 2

                    await wait_for(both_answered, deadline=60)
                    assert sorted(name[-2:] for name in held) == ["-1", "-2"]
                    owners = [name for name, leases in held.items() if "link:main" in leases]
                    assert len(owners) == 1, held

                    ids = []
                    for n in range(6):
                        body = message(to=f"+1202555{n:04d}")
                        async with http.post(f"{api}/v1/messages", json=body) as rsp:
                            assert rsp.status == 202, await rsp.text()
                            ids.append((await rsp.json())["id"])

                    async def all_delivered() -> bool:
                        for message_id in ids:
                            async with http.get(f"{api}/v1/messages/{message_id}") as rsp:
                                if (await rsp.json())["status"] != "delivered":
                                    return False
                        return True

                    await wait_for(all_delivered, deadline=60)
                assert len(sim[SIMULATOR].submitted) == len(ids)
                proc.send_signal(signal.SIGTERM)
                assert await read(proc.wait, 60) == 0, "".join(lines)
            finally:
                if runner is not None:
                    await runner.cleanup()
                stop_process(proc)
