"""The README's two hosts behind a load balancer ("Two hosts behind a load balancer"): the example
file, as written, runs two gateways on one fresh PostgreSQL database (listeners and the MMSC moved
to loopback, each instance named as two hosts would name it). A message posted to the instance
that does not own the link is submitted by the owner, its report reaches the MM7 endpoint of the
first with the peer's Basic credentials, and either instance answers GET with the outcome."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from mm7.service.config.loader import load_config
from mm7.service.config.settings import GatewayConfig
from mm7.service.runtime import Gateway
from mm7.simulator.app import SIMULATOR
from tests.helpers.runtime import bound_socket, message, start_simulator, wait_for
from tests.helpers.stores import pg_database

ROOT = Path(__file__).resolve().parent.parent
KEY = "key-of-the-readme-example-0123456789"
PASSWORD = "inbound-password-of-the-example"


def readme_toml() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("```toml\n", text.index("#### Two hosts behind a load balancer"))
    start += len("```toml\n")
    return text[start : text.index("```", start)]


def host_config(tmp_path: Path, mmsc_port: int, dsn: str, instance: str) -> GatewayConfig:
    """The example on loopback: what a test may not bind (0.0.0.0) or reach (the carrier)."""
    toml = readme_toml()
    for public, local in (
        ('"0.0.0.0:8000"', '"127.0.0.1:0"'),
        ('"0.0.0.0:9000"', '"127.0.0.1:0"'),
        ('"https://mmsc.carrier.example/mm7"', f'"http://127.0.0.1:{mmsc_port}/mm7"'),
        ('["198.51.100.0/24"]', '["127.0.0.1/32"]'),
    ):
        assert public in toml, public
        toml = toml.replace(public, local)
    path = tmp_path / f"{instance}.toml"
    path.write_text(toml)
    env = {"MM7_STORE_DSN": dsn, "MM7_API_KEY": KEY, "MM7_INBOUND_PASSWORD": PASSWORD}
    config = load_config(path, env=env)
    # two hosts: <hostname>-<pid> differs; two gateways in one test process must be told apart
    return dataclasses.replace(
        config, cluster=dataclasses.replace(config.cluster, instance=instance)
    )


async def test_the_readme_example_runs_two_instances_on_one_database(tmp_path: Path) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    async with pg_database() as dsn:
        with bound_socket() as mmsc:
            configs = [
                host_config(tmp_path, mmsc.getsockname()[1], dsn, name)
                for name in ("host-a", "host-b")
            ]
            assert configs[0].store.backend == "postgresql"
            assert configs[0].relay.media_url_base == "https://mm7.example.net"
            first = Gateway(configs[0], configure_logs=False, announce=lambda line: None)
            await first.start()  # the first holds every lease
            second = Gateway(configs[1], configure_logs=False, announce=lambda line: None)
            runner: web.AppRunner | None = None
            try:
                await second.start()
                # the MMSC's reports reach one host
                sim, runner = await start_simulator(mmsc, first.inbound_url, ("carrier", PASSWORD))
                async with aiohttp.ClientSession(headers=auth) as http:
                    leases = [(await get(http, f"{g.api_url}/readyz"))["cluster"]["leases"]
                              for g in (first, second)]  # fmt: skip
                    assert leases == [{"link:carrier": 1, "relay": 1, "retention": 1}, {}]
                    # posted to the host that does not own the link
                    async with http.post(f"{second.api_url}/v1/messages", json=message()) as rsp:
                        assert rsp.status == 202, await rsp.text()
                        message_id = (await rsp.json())["id"]

                    async def delivered() -> bool:
                        view = await get(http, f"{second.api_url}/v1/messages/{message_id}")
                        return bool(view["status"] == "delivered")

                    await wait_for(delivered)
                    view = await get(http, f"{first.api_url}/v1/messages/{message_id}")
                    assert [r["status"] for r in view["recipients"]] == ["delivered"]
                assert len(sim[SIMULATOR].submitted) == 1
            finally:
                if runner is not None:
                    await runner.cleanup()
                await second.stop()
                await first.stop()


async def get(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(url) as rsp:
        assert rsp.status == 200, await rsp.text()
        body: dict[str, Any] = await rsp.json()
    return body
