"""Every listener of the gateway (API, inbound MM7, a metrics listener of its own) and of the
simulator is bounded as configured: real sockets on 127.0.0.1, short timeouts from the config
file or the command line. The gateway's ``/metrics`` says which timeout closed a connection,
and how many were evicted at the limit (``mm7_listener_*``).

No assertion measures time: a connection is closed by the server (an end of file, with a hang
guard only as a safety net), and ``/metrics`` names the timeout that closed it, so it was the
listener's own clock (aiohttp's backstop, 4x later, counts nothing). The listeners' clocks, to
the second, are tested on a moved event-loop clock in test_listener.py."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mm7.cli.main import main
from mm7.service.config.loader import load_config
from mm7.service.errors import ConfigError
from mm7.service.runtime import Gateway
from mm7.simulator.cli import SimulateError, build_limits
from tests.helpers.inbound import post_message, request_message
from tests.helpers.runtime import KEY, bound_socket, message, write_config
from tests.helpers.simulator import submit

LIMITS = """header_timeout = "0.4s"
body_timeout = 0.4
keepalive_timeout = "400ms"
max_connections = 3
"""
TIMEOUT = 0.4
#: a hang guard (seconds), only a safety net: nothing waits for it to pass
GUARD = 30.0


def _config(tmp_path: Path, mmsc_port: int, limits: str = LIMITS) -> Path:
    path = write_config(tmp_path, mmsc_port, extra='[metrics]\nlisten = "127.0.0.1:0"\n')
    text = path.read_text()
    text = text.replace("[inbound.peers.simulator]", limits + "[inbound.peers.simulator]")
    text = text.replace("[[api.keys]]", limits + "[[api.keys]]")
    path.write_text(text)
    return path


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    with bound_socket() as mmsc:
        config = load_config(_config(tmp_path, mmsc.getsockname()[1]), env={})
        gateway = Gateway(config, configure_logs=False, poll_interval=3600, announce=print)
        await gateway.start()
        try:
            yield gateway
        finally:
            await gateway.stop()


def _address(url: str | None) -> tuple[str, int]:
    assert url is not None
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


async def _closed_by_server(reader: asyncio.StreamReader, guard: float = GUARD) -> None:
    """The server closes the connection without answering."""
    try:
        data = await asyncio.wait_for(reader.read(), guard)
    except ConnectionResetError:
        data = b""
    assert data == b"", data


async def _scrape(gateway: Gateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The gateway's /metrics, as (series name, sorted labels) -> value."""
    assert gateway.metrics_url is not None
    async with (
        aiohttp.ClientSession() as session,
        session.get(gateway.metrics_url, timeout=aiohttp.ClientTimeout(total=GUARD)) as rsp,
    ):
        assert rsp.status == 200
        text = await rsp.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _listener_counts(
    scraped: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str
) -> dict[str, float]:
    """One listener's ``mm7_listener_*`` series: open, accepted, evicted, refused and each
    timeout (``timeout:header``...)."""
    out: dict[str, float] = {}
    for (series, labels), value in scraped.items():
        label = dict(labels)
        if not series.startswith("mm7_listener_") or label.get("listener") != name:
            continue
        key = series.removeprefix("mm7_listener_").removesuffix("_total")
        key = key.removeprefix("connections_")
        out[f"timeout:{label['timeout']}" if "timeout" in label else key] = value
    return out


#: no connection closed by a timeout
NO_TIMEOUTS = {"timeout:header": 0.0, "timeout:body": 0.0, "timeout:keepalive": 0.0}


def test_the_keys_are_read_into_each_listener(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, 9), env={})
    for limits in (config.api.limits, config.inbound.limits):
        assert (limits.header_timeout, limits.body_timeout) == (0.4, 0.4)
        assert (limits.keepalive_timeout, limits.max_connections) == (0.4, 3)


@pytest.mark.parametrize(
    ("limits", "where"),
    [
        ("max_connections = 0\n", "max_connections"),
        ('header_timeout = "soon"\n', "header_timeout"),
        ("body_timeout = -1\n", "body_timeout"),
    ],
)
def test_a_bad_limit_is_refused_by_name(tmp_path: Path, limits: str, where: str) -> None:
    with pytest.raises(ConfigError, match=rf"inbound\.{where}"):
        load_config(_config(tmp_path, 9, limits), env={})


@pytest.mark.parametrize("listener", ["api", "inbound", "metrics"])
async def test_each_listener_closes_half_a_request_line(gateway: Gateway, listener: str) -> None:
    assert gateway._listeners[listener].limits.header_timeout == TIMEOUT  # the configured one
    url = {"api": gateway.api_url, "inbound": gateway.inbound_url, "metrics": gateway.metrics_url}
    reader, writer = await asyncio.open_connection(*_address(url[listener]))
    writer.write(b"POST /v1/mess")
    await _closed_by_server(reader)
    writer.close()
    counts = _listener_counts(await _scrape(gateway), listener)
    assert counts["timeout:header"] == 1  # by the listener's header clock
    assert counts["timeout:body"] == counts["timeout:keepalive"] == 0
    assert counts["accepted"] >= 1


@pytest.mark.parametrize(("listener", "path"), [("api", "/v1/messages"), ("inbound", "/mm7")])
async def test_a_stalled_body_is_closed(gateway: Gateway, listener: str, path: str) -> None:
    url = gateway.api_url if listener == "api" else gateway.inbound_url
    reader, writer = await asyncio.open_connection(*_address(url))
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
        'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"to"'.encode()
    )
    await _closed_by_server(reader)
    writer.close()
    counts = _listener_counts(await _scrape(gateway), listener)
    assert counts["timeout:body"] == 1  # by the listener's body clock
    assert counts["timeout:header"] == counts["timeout:keepalive"] == 0


async def test_an_idle_keep_alive_connection_is_closed_and_counted(gateway: Gateway) -> None:
    reader, writer = await asyncio.open_connection(*_address(gateway.api_url))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GUARD)
    assert head.startswith(b"HTTP/1.1 200")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    await asyncio.wait_for(reader.readexactly(length), GUARD)
    await _closed_by_server(reader)
    writer.close()
    counts = _listener_counts(await _scrape(gateway), "api")
    assert counts == {**counts, **NO_TIMEOUTS, "timeout:keepalive": 1.0}


#: limits whose timeouts no test waits for: an answer at the limit can only come from eviction
FULL = """header_timeout = 60
body_timeout = 60
keepalive_timeout = 60
max_connections = 3
"""


async def test_the_api_answers_while_full_of_stalled_connections_and_metrics_count_it(
    tmp_path: Path,
) -> None:
    """Full of stalled connections, the API answers a health check; /metrics shows the
    listener full, then one connection evicted (none timed out: they would stay a minute)."""
    with bound_socket() as mmsc:
        config = load_config(_config(tmp_path, mmsc.getsockname()[1], FULL), env={})
        gateway = Gateway(config, configure_logs=False, poll_interval=3600, announce=print)
        await gateway.start()
        try:
            host, port = _address(gateway.api_url)
            before = _listener_counts(await _scrape(gateway), "api")
            assert before == {
                "open": 0.0, "accepted": 0.0, "evicted": 0.0, "refused": 0.0, **NO_TIMEOUTS
            }  # fmt: skip
            stalled = []
            for _ in range(3):
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(b"GET /heal")
                stalled.append((reader, writer))
            full = _listener_counts(await _scrape(gateway), "api")
            assert (full["open"], full["accepted"], full["evicted"]) == (3, 3, 0)

            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            status = await asyncio.wait_for(reader.readuntil(b"\r\n"), GUARD)
            assert status.startswith(b"HTTP/1.1 200")
            await _closed_by_server(stalled[0][0])  # the one waiting longest made room
            after = _listener_counts(await _scrape(gateway), "api")
            assert (after["open"], after["accepted"], after["evicted"]) == (3, 4, 1)
            assert after == {**after, **NO_TIMEOUTS, "refused": 0.0}
            for _, w in (*stalled, (reader, writer)):
                w.close()
        finally:
            await gateway.stop()


Stalled = list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]


async def _stall(host: str, port: int, path: str, count: int) -> Stalled:
    """``count`` connections that stop: half a request line, or a body to ``path`` (read by
    its handler) that never comes."""
    stalled = []
    for index in range(count):
        reader, writer = await asyncio.open_connection(host, port)
        if index % 2:
            writer.write(b"POST /mm")
        else:
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                'Content-Type: application/json\r\nContent-Length: 900\r\n\r\n{"to"'.encode()
            )
        stalled.append((reader, writer))
    await asyncio.sleep(0.1)
    return stalled


async def _closed(stalled: Stalled) -> list[asyncio.StreamReader]:
    """The stalled connections the server has closed (reset or ended) by now."""
    await asyncio.sleep(0.2)  # lets the loop take in what the sockets already hold
    return [r for r, _ in stalled if r.at_eof() or r.exception() is not None]


@pytest.mark.parametrize("listener", ["api", "inbound"])
async def test_valid_requests_are_answered_at_the_connection_limit(
    tmp_path: Path, listener: str
) -> None:
    """Full of stalled connections that would stay a minute, each listener still answers valid
    requests (an MO delivery report on the inbound endpoint; a send on the API): the stalled
    connection waiting longest makes room, so the answer cannot have waited for a timeout."""
    with bound_socket() as mmsc:
        path = _config(tmp_path, mmsc.getsockname()[1], FULL)
        config = load_config(path, env={})
        gateway = Gateway(config, configure_logs=False, poll_interval=3600, announce=print)
        await gateway.start()
        try:
            url = gateway.api_url if listener == "api" else gateway.inbound_url
            path = "/mm7" if listener == "inbound" else "/v1/messages"
            stalled = await _stall(*_address(url), path, 3)
            for n in range(3):
                async with asyncio.timeout(20):  # a hang guard: the stalled ones stay 60 s
                    if listener == "inbound":
                        report = request_message("DeliveryReportReq", "REL-6-MM7-1-4", tid=f"t{n}")
                        reply = await post_message(gateway.inbound_url, report)
                        assert reply.status == 200
                        status = getattr(reply.decoded.message, "status", None)
                        assert status is not None and status.code == 1000
                    else:
                        async with (
                            aiohttp.ClientSession() as session,
                            session.post(
                                f"{gateway.api_url}/v1/messages",
                                json=message(to=f"+1202555010{n}"),
                                headers={"Authorization": f"Bearer {KEY}"},
                            ) as rsp,
                        ):
                            assert rsp.status == 202, await rsp.text()
            assert await _closed(stalled)  # made room: closed by the listener, not by a clock
            for _, writer in stalled:
                writer.close()
        finally:
            await gateway.stop()


def test_simulator_limits_from_options_and_config(tmp_path: Path) -> None:
    conf = tmp_path / "sim.toml"
    conf.write_text("header_timeout = 2.5\nmax_connections = 7\n")
    args = argparse.Namespace(
        config=conf, header_timeout=None, body_timeout=3.0, keepalive_timeout=None,
        max_connections=None,
    )  # fmt: skip
    limits = build_limits(args)
    assert (limits.header_timeout, limits.body_timeout, limits.max_connections) == (2.5, 3.0, 7)
    args.max_connections = 0
    with pytest.raises(SimulateError, match="max_connections"):
        build_limits(args)


def test_simulate_refuses_a_bad_limit_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["simulate", "--listen", "127.0.0.1:0", "--header-timeout", "0"])
    assert code == 2
    assert "header_timeout" in capsys.readouterr().err


@contextlib.asynccontextmanager
async def _simulator(*options: str) -> AsyncIterator[str]:
    """A real ``mm7 simulate`` process on 127.0.0.1 with these options; its MM7 URL."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mm7.cli.main", "simulate", "--listen", "127.0.0.1:0", *options,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            line = (await proc.stdout.readline()).decode()
        yield line.split(" on ", 1)[1].split(";", 1)[0]
    finally:
        proc.terminate()
        async with asyncio.timeout(20):
            await proc.wait()
    assert proc.returncode == 0


#: the hang guard of the simulator process test: generous next to the 0.4 s configured, and
#: short of the defaults (10 s header, 15 s body), so options the process ignored would fail
SIMULATOR_GUARD = 8.0


async def test_the_simulator_process_closes_a_stalled_request() -> None:
    async with _simulator("--header-timeout", "0.4", "--body-timeout", "0.4") as url:
        reader, writer = await asyncio.open_connection(*_address(url))
        writer.write(b"POST /mm7 HTTP/1.1\r\nContent-")
        await _closed_by_server(reader, SIMULATOR_GUARD)
        writer.close()
        reader, writer = await asyncio.open_connection(*_address(url))
        writer.write(b"POST /mm7 HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\n\r\n<env:")
        await _closed_by_server(reader, SIMULATOR_GUARD)
        writer.close()


async def test_the_simulator_process_answers_submits_at_the_connection_limit() -> None:
    """Full of stalled connections that would stay a minute, the simulator still accepts
    SubmitReqs: the stalled connection waiting longest makes room for each."""
    limits = ("--header-timeout", "60", "--body-timeout", "60", "--keepalive-timeout", "60")
    async with _simulator(*limits, "--max-connections", "3") as url:
        stalled = await _stall(*_address(url), "/mm7", 3)
        for n in range(3):
            async with asyncio.timeout(20):  # a hang guard: the stalled ones stay 60 s
                reply = await post_message(url, submit("+12015550123", tid=f"t{n}"))
            assert reply.status == 200
            status = getattr(reply.decoded.message, "status", None)
            assert status is not None and status.code == 1000
        assert await _closed(stalled)  # made room: closed by the listener, not by a clock
        for _, writer in stalled:
            writer.close()
