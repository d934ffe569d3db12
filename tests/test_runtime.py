"""The gateway runtime: everything wired from one TOML file, in process and as `mm7 serve`.

Real SQLite in tmp_path (a fresh PostgreSQL database for the PostgreSQL tests), real loopback
sockets, the bundled simulator as the MMSC; waits are on conditions, each bounded by a deadline
that only guards against a hang."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mm7.service.config.loader import load_config
from mm7.service.errors import StoreUnavailableError
from mm7.service.runtime import Gateway
from mm7.simulator.app import SIMULATOR
from tests.helpers.runtime import (
    AUTH,
    bound_socket,
    clean_env,
    message,
    read_until,
    serve,
    start_simulator,
    use_postgresql,
    wait_for,
    write_config,
)
from tests.helpers.stores import pg_database


async def test_gateway_submits_and_correlates_the_report(tmp_path: Path) -> None:
    lines: list[str] = []
    with bound_socket() as mmsc:
        config = load_config(write_config(tmp_path, mmsc.getsockname()[1]), env={})
        # a poll interval far beyond the test's deadline: only the API's wake() can be the
        # reason the message leaves at once
        gateway = Gateway(config, configure_logs=False, poll_interval=3600, announce=lines.append)
        await gateway.start()
        sim_app, sim_runner = await start_simulator(mmsc, gateway.inbound_url)
        try:
            assert gateway.api_url is not None and gateway.api_url.startswith("http://127.0.0.1:")
            assert not gateway.api_url.endswith(":0")
            assert any(gateway.api_url in line for line in lines)
            assert any(str(gateway.inbound_url) in line for line in lines)
            assert (tmp_path / "var" / "mm7.sqlite").exists()  # its folder was created
            async with aiohttp.ClientSession(headers=AUTH) as http:
                async with http.post(f"{gateway.api_url}/v1/messages", json=message()) as rsp:
                    assert rsp.status == 202, await rsp.text()
                    message_id = (await rsp.json())["id"]

                async def delivered() -> dict[str, Any] | None:
                    async with http.get(f"{gateway.api_url}/v1/messages/{message_id}") as rsp:
                        view: dict[str, Any] = await rsp.json()
                    return view if view["recipients"][0]["status"] == "delivered" else None

                view = await wait_for(delivered)
                mm7_id = view["recipients"][0]["mm7_message_id"]
                assert mm7_id in sim_app[SIMULATOR].submitted

                async with http.get(f"{gateway.api_url}/healthz") as rsp:
                    assert rsp.status == 200
                async with http.get(f"{gateway.api_url}/readyz") as rsp:
                    assert rsp.status == 200, await rsp.text()
                async with http.get(f"{gateway.api_url}/metrics") as rsp:
                    text = await rsp.text()
                assert 'mm7_queue_depth{link="main"} 0.0' in text
                assert 'mm7_link_breaker_state{link="main"} 0.0' in text
                # the dispatcher and the report handler feed the metrics too
                assert 'mm7_submits_total{link="main",outcome="success"} 1.0' in text
                assert 'mm7_submit_status_total{link="main",status_code="1000"} 1.0' in text
                assert 'mm7_submit_duration_seconds_count{link="main"} 1.0' in text
                assert 'mm7_delivery_reports_total{link="main",mm_status="Retrieved"} 1.0' in text

                gateway.health.shutting_down()
                async with http.get(f"{gateway.api_url}/readyz") as rsp:
                    assert rsp.status == 503
                    assert "shutting down" in (await rsp.json())["reason"]
            await sim_app[SIMULATOR].dlr.idle()
        finally:
            await gateway.stop()
            await sim_runner.cleanup()
    assert gateway.store is None and not gateway.dispatchers
    await gateway.stop()  # twice is harmless


async def test_stop_releases_what_could_not_be_sent(tmp_path: Path) -> None:
    """A link whose MMSC never answers: at stop the in-flight lease is released (the recipient
    is queued again, its attempt not counted) and a second gateway on the same store sends it."""
    with bound_socket() as mmsc:
        mmsc.listen()  # accepts connections but never answers: the submit hangs
        config = load_config(write_config(tmp_path, mmsc.getsockname()[1]), env={})
        gateway = Gateway(config, configure_logs=False, poll_interval=0.05, grace=0.1,
                          announce=lambda line: None)  # fmt: skip
        await gateway.start()
        try:
            async with (
                aiohttp.ClientSession(headers=AUTH) as http,
                http.post(f"{gateway.api_url}/v1/messages", json=message()) as rsp,
            ):
                assert rsp.status == 202
                message_id = (await rsp.json())["id"]
            dispatcher = gateway.dispatchers["main"]

            async def in_flight() -> bool:
                return dispatcher.in_flight == 1

            await wait_for(in_flight)
        finally:
            await gateway.stop()

    with bound_socket() as mmsc:
        config = load_config(write_config(tmp_path, mmsc.getsockname()[1]), env={})
        again = Gateway(config, configure_logs=False, poll_interval=0.05, announce=lambda x: None)
        await again.start()
        sim_app, sim_runner = await start_simulator(mmsc, again.inbound_url)
        try:
            store = again.store
            assert store is not None

            async def submitted() -> bool:
                record = await store.get_message(message_id)
                assert record is not None
                return record.recipients[0].mm7_message_id is not None

            await wait_for(submitted)
            record = await store.get_message(message_id)
            assert record is not None and record.recipients[0].attempts == 1
            await sim_app[SIMULATOR].dlr.idle()
        finally:
            await again.stop()
            await sim_runner.cleanup()


def _postgresql_config(tmp_path: Path, mmsc_port: int, dsn: str) -> Path:
    """The test configuration with ``[store] backend = "postgresql"`` on ``dsn`` (by env)."""
    path = write_config(tmp_path, mmsc_port)
    use_postgresql(path)
    return path


def test_an_unreachable_postgresql_server_fails_the_start_by_name(tmp_path: Path) -> None:
    dsn = "postgresql://mm7:not-shown@127.0.0.1:1/mm7"  # nothing listens on port 1
    config = load_config(_postgresql_config(tmp_path, 9, dsn), env={"MM7_TEST_DSN": dsn})
    assert config.store.backend == "postgresql"
    gateway = Gateway(config, configure_logs=False, announce=lambda x: None)
    with pytest.raises(StoreUnavailableError) as info:
        asyncio.run(gateway.start())
    assert "postgresql://127.0.0.1:1/mm7: cannot connect" in str(info.value)
    assert "not-shown" not in str(info.value)


# the simulator sends the report at once: it may be recorded before the SubmitRsp's outcome
# commits, and is then applied by that commit (mm7.service.store.early)
async def test_gateway_on_postgresql_submits_and_correlates_the_report(tmp_path: Path) -> None:
    async with pg_database() as dsn:
        with bound_socket() as mmsc:
            path = _postgresql_config(tmp_path, mmsc.getsockname()[1], dsn)
            config = load_config(path, env={"MM7_TEST_DSN": dsn})
            gateway = Gateway(config, configure_logs=False, poll_interval=3600,
                              announce=lambda x: None)  # fmt: skip
            await gateway.start()
            sim_app, sim_runner = await start_simulator(mmsc, gateway.inbound_url)
            try:
                assert not (tmp_path / "var" / "mm7.sqlite").exists()
                async with aiohttp.ClientSession(headers=AUTH) as http:
                    async with http.post(f"{gateway.api_url}/v1/messages", json=message()) as rsp:
                        assert rsp.status == 202, await rsp.text()
                        message_id = (await rsp.json())["id"]

                    async def delivered() -> dict[str, Any] | None:
                        url = f"{gateway.api_url}/v1/messages/{message_id}"
                        async with http.get(url) as rsp:
                            view: dict[str, Any] = await rsp.json()
                        return view if view["recipients"][0]["status"] == "delivered" else None

                    view = await wait_for(delivered)
                    assert view["recipients"][0]["mm7_message_id"] in sim_app[SIMULATOR].submitted
                    async with http.get(f"{gateway.api_url}/readyz") as rsp:
                        assert rsp.status == 200, await rsp.text()
                await sim_app[SIMULATOR].dlr.idle()
            finally:
                await gateway.stop()
                await sim_runner.cleanup()


# --------------------------------------------------------------------------- mm7 serve


async def test_mm7_serve_prints_a_generated_key_and_stops_on_sigterm(tmp_path: Path) -> None:
    with bound_socket() as mmsc:
        path = write_config(
            tmp_path,
            mmsc.getsockname()[1],
            key_line='key_env = "MM7_API_KEY"\ngenerate_if_unset = true',
        )
        proc = serve(path, tmp_path, clean_env())
        try:
            api = (await asyncio.to_thread(read_until, proc, r"sending API on (\S+)/v1/messages"))[
                1
            ]
            inbound = (await asyncio.to_thread(read_until, proc, r"inbound MM7 endpoint on (\S+)"))[
                1
            ]
            key = (await asyncio.to_thread(read_until, proc, r"API key 'app' generated.*: (\S+)$"))[
                1
            ]
            sim_app, sim_runner = await start_simulator(mmsc, inbound)
            try:
                async with aiohttp.ClientSession(
                    headers={"Authorization": f"Bearer {key}"}
                ) as http:
                    async with http.post(f"{api}/v1/messages", json=message()) as rsp:
                        assert rsp.status == 202, await rsp.text()
                        message_id = (await rsp.json())["id"]

                    async def delivered() -> bool:
                        async with http.get(f"{api}/v1/messages/{message_id}") as rsp:
                            view = await rsp.json()
                        return bool(view["recipients"][0]["status"] == "delivered")

                    await wait_for(delivered)
                await sim_app[SIMULATOR].dlr.idle()
            finally:
                await sim_runner.cleanup()
            proc.send_signal(signal.SIGTERM)
            out, err = await asyncio.to_thread(proc.communicate, timeout=30)
            assert proc.returncode == 0, err
            assert "stopped" in out
            assert key not in err  # the key is printed once on stdout, never logged
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_mm7_serve_with_a_bad_config_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text("[links.main]\nurl = 5\n")
    done = subprocess.run(
        [sys.executable, "-m", "mm7.cli.main", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "links.main.url" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
async def test_mm7_serve_runs_on_the_chosen_event_loop(tmp_path: Path, loop: str) -> None:
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    with bound_socket() as mmsc:
        path = write_config(tmp_path, mmsc.getsockname()[1])
        proc = serve(path, tmp_path, clean_env(), "--loop", loop)
        try:
            chosen = await asyncio.to_thread(read_until, proc, r"event loop (\S+)")
            assert chosen[1] == loop
            api = (await asyncio.to_thread(read_until, proc, r"sending API on (\S+)/v1/messages"))[
                1
            ]
            async with aiohttp.ClientSession(headers=AUTH) as http:
                async with http.post(f"{api}/v1/messages", json=message()) as rsp:
                    assert rsp.status == 202, await rsp.text()
                async with http.get(f"{api}/readyz") as rsp:
                    assert rsp.status in (200, 503)  # the link's MMSC is not listening
            proc.send_signal(signal.SIGTERM)
            out, err = await asyncio.to_thread(proc.communicate, timeout=30)
            assert proc.returncode == 0, err
            assert "stopped" in out
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_mm7_serve_on_a_port_in_use_is_one_line_and_logs_stopped_once(tmp_path: Path) -> None:
    with bound_socket() as mmsc, bound_socket() as held:
        held.listen()
        port = held.getsockname()[1]
        path = write_config(tmp_path, mmsc.getsockname()[1], api_port=port)
        path.write_text(path.read_text().replace('level = "warning"', 'level = "info"'))
        done = subprocess.run(
            [sys.executable, "-m", "mm7.cli.main", "serve", "--config", str(path)],
            cwd=tmp_path,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    errors = [line for line in lines if line.startswith("mm7 serve:")]
    assert len(errors) == 1 and "cannot start" in errors[0], done.stderr
    assert str(port) in errors[0]
    assert sum('"mm7.gateway.stopped"' in line for line in lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
