"""API keys' quotas with a real gateway: ``max_per_day`` and ``max_per_second`` answered 429
with Retry-After and a body naming the quota, counted in recipients, before anything is
committed; the day's count holds across a restart on the same store (SQLite and PostgreSQL) and
between two instances on one PostgreSQL database; sendmms answers its own text. The bundled
simulator is the MMSC (it accepts, sends no reports).

Waits are on conditions, each bounded by a deadline that only guards against a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mm7.service.config.loader import load_config
from mm7.service.config.settings import GatewayConfig
from mm7.service.runtime import Gateway
from mm7.service.store import NewMo, OptOut
from tests.helpers.api import validate
from tests.helpers.runtime import (
    AUTH,
    KEY,
    bound_socket,
    start_quiet_simulator,
    wait_for,
    write_config,
)
from tests.helpers.stores import pg_database

Answer = tuple[int, dict[str, str], Any]


def quota_config(tmp_path: Path, mmsc_port: int, quota: str, dsn: str | None = None) -> Path:
    """The runtime test configuration with ``quota`` lines on the API key (and the store on
    PostgreSQL ``dsn`` by environment variable, when given)."""
    path = write_config(tmp_path, mmsc_port, key_line=f'key = "{KEY}"\n{quota}')
    if dsn is not None:
        path.write_text(
            path.read_text().replace(
                '[store]\npath = "', '[store]\nbackend = "postgresql"\ndsn_env = "MM7_TEST_DSN"\n#'
            )
        )
    return path


def load(path: Path, dsn: str | None, instance: str = "gw-a") -> GatewayConfig:
    config = load_config(path, env={"MM7_TEST_DSN": dsn} if dsn else {})
    return dataclasses.replace(
        config, cluster=dataclasses.replace(config.cluster, instance=instance)
    )


@contextlib.asynccontextmanager
async def started(config: GatewayConfig) -> AsyncIterator[Gateway]:
    """A started gateway (stopped after)."""
    gateway = Gateway(config, configure_logs=False, poll_interval=0.2, announce=lambda x: None)
    await gateway.start()
    try:
        assert gateway.api_url is not None
        yield gateway
    finally:
        await gateway.stop()


@contextlib.asynccontextmanager
async def running(config: GatewayConfig) -> AsyncIterator[str]:
    """A started gateway (stopped after); its API URL."""
    async with started(config) as gateway:
        assert gateway.api_url is not None
        yield gateway.api_url


async def send(api: str, to: list[str], **extra: Any) -> Answer:
    async with (
        aiohttp.ClientSession(headers=AUTH) as http,
        http.post(f"{api}/v1/messages", json={"to": to, "text": "hi", **extra}) as rsp,
    ):
        return rsp.status, dict(rsp.headers), await rsp.json()


def numbers(start: int, count: int) -> list[str]:
    return [f"+1202555{start + n:04d}" for n in range(count)]


def assert_quota_refusal(answer: Answer, quota: str, limit: int) -> int:
    """A 429 as documented, naming ``quota`` and ``limit``; its Retry-After."""
    status, headers, body = answer
    assert status == 429, body
    validate("QuotaExceeded", body)
    error = body["error"]
    assert (error["quota"], error["limit"], error["field"]) == (quota, limit, None)
    assert f"over its {quota} quota ({limit} recipients" in error["message"]
    assert headers["Retry-After"] == str(error["retry_after"])
    return int(error["retry_after"])


def sqlite_messages(tmp_path: Path) -> int:
    with sqlite3.connect(tmp_path / "var" / "mm7.sqlite") as conn:
        return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_the_day_quota_refuses_past_it_and_holds_across_a_restart(
    tmp_path: Path, backend: str
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        dsn = await stack.enter_async_context(pg_database()) if backend == "postgresql" else None
        mmsc = stack.enter_context(bound_socket())
        _, sim_runner = await start_quiet_simulator(mmsc)
        stack.push_async_callback(sim_runner.cleanup)
        path = quota_config(tmp_path, mmsc.getsockname()[1], "max_per_day = 5", dsn)

        async with running(load(path, dsn)) as api:
            first = await send(api, numbers(0, 3), idempotency_key="first")
            assert first[0] == 202, first
            # a repeat of an accepted message is no new recipient: it counts nothing
            again = await send(api, numbers(0, 3), idempotency_key="first")
            assert again[0] == 200 and again[2]["id"] == first[2]["id"], again
            assert (await send(api, numbers(10, 2)))[0] == 202
            refused = await send(api, numbers(20, 1))
            retry_after = assert_quota_refusal(refused, "max_per_day", 5)
            assert 0 < retry_after <= 86400
            # over quota, the retry of an accepted message is still answered as accepted
            repeat = await send(api, numbers(0, 3), idempotency_key="first")
            assert repeat[0] == 200 and repeat[2]["id"] == first[2]["id"], repeat
            # more recipients than a whole day allows: never a 429 to wait out
            too_many = await send(api, numbers(30, 6))
            assert too_many[0] == 422 and too_many[2]["error"]["field"] == "to", too_many
            assert "max_per_day 5" in too_many[2]["error"]["message"]
            if backend == "sqlite":
                assert sqlite_messages(tmp_path) == 2  # nothing refused was written

        # the same store, a new process: the day's count is where it was
        async with running(load(path, dsn, instance="gw-b")) as api:
            assert_quota_refusal(await send(api, numbers(40, 1)), "max_per_day", 5)
            async with (
                aiohttp.ClientSession() as http,
                http.get(
                    f"{api}/cgi-bin/sendmms",
                    params={"username": "app", "password": KEY, "to": "+12025550050", "text": "x"},
                ) as rsp,
            ):
                text = await rsp.text()
                assert rsp.status == 429, text
                assert text.startswith("Error: API key 'app' is over its max_per_day quota (5 "), (
                    text
                )
                assert int(rsp.headers["Retry-After"]) >= 1
            async with (
                aiohttp.ClientSession(headers=AUTH) as http,
                http.get(f"{api}/metrics") as rsp,
            ):
                metrics = await rsp.text()
            assert 'mm7_api_quota_refusals_total{api_key="app",quota="max_per_day"} 2.0' in metrics


async def test_two_instances_on_one_database_share_the_day_quota(tmp_path: Path) -> None:
    async with contextlib.AsyncExitStack() as stack:
        dsn = await stack.enter_async_context(pg_database())
        mmsc = stack.enter_context(bound_socket())
        _, sim_runner = await start_quiet_simulator(mmsc)
        stack.push_async_callback(sim_runner.cleanup)
        path = quota_config(tmp_path, mmsc.getsockname()[1], "max_per_day = 7", dsn)
        one = await stack.enter_async_context(running(load(path, dsn, "gw-1")))
        two = await stack.enter_async_context(running(load(path, dsn, "gw-2")))
        # 16 one-recipient messages at once, half to each instance: exactly 7 pass
        answers = await asyncio.gather(
            *(send((one, two)[n % 2], numbers(100 + n, 1)) for n in range(16))
        )
        statuses = sorted(a[0] for a in answers)
        assert statuses == [202] * 7 + [429] * 9, statuses
        for answer in answers:
            if answer[0] == 429:
                assert_quota_refusal(answer, "max_per_day", 7)


async def test_the_per_second_quota_refuses_then_lets_through(tmp_path: Path) -> None:
    with bound_socket() as mmsc:
        _, sim_runner = await start_quiet_simulator(mmsc)
        try:
            path = quota_config(tmp_path, mmsc.getsockname()[1], "max_per_second = 3")
            async with running(load(path, None)) as api:
                # three recipients fill one second; the next is refused for about a second
                assert (await send(api, numbers(0, 3)))[0] == 202
                refused = await send(api, numbers(10, 1))
                assert assert_quota_refusal(refused, "max_per_second", 3) == 1

                async def passes() -> bool:
                    return (await send(api, numbers(20, 1)))[0] == 202

                await wait_for(passes, deadline=10)

                # a message larger than the bucket passes when it is full (never refused for
                # ever), and the key then waits it out
                async def big_passes() -> Answer | None:
                    answer = await send(api, numbers(30, 5))
                    return answer if answer[0] == 202 else None

                await wait_for(big_passes, deadline=10)
                after = await send(api, numbers(40, 1))
                assert assert_quota_refusal(after, "max_per_second", 3) >= 1
        finally:
            await sim_runner.cleanup()


async def test_recipients_who_opted_out_are_not_counted(tmp_path: Path) -> None:
    with bound_socket() as mmsc:
        _, sim_runner = await start_quiet_simulator(mmsc)
        try:
            path = quota_config(tmp_path, mmsc.getsockname()[1], "max_per_day = 3")
            async with started(load(path, None)) as gateway:
                assert gateway.store is not None and gateway.api_url is not None
                stop = {"type": "mo", "from": "+12025550000", "to": ["12345"], "text": "STOP"}
                await gateway.store.store_mo(
                    NewMo("main", "tx-stop", None, stop,
                          opt_out=OptOut("stop", "+12025550000", "STOP")),
                )  # fmt: skip
                first = await send(gateway.api_url, numbers(0, 3))
                assert first[0] == 202 and first[2]["suppressed"] == ["+12025550000"], first
                # two were sent and counted; the one who opted out was not
                assert (await send(gateway.api_url, numbers(10, 1)))[0] == 202
                refused = await send(gateway.api_url, numbers(20, 1))
                assert_quota_refusal(refused, "max_per_day", 3)
        finally:
            await sim_runner.cleanup()
