"""`mm7 simulate`: the server as a real process (its printed address, a report reaching a VASP,
SIGTERM), `simulate mo` against a running simulator, and configuration errors in one line."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from mm7.cli.main import main
from mm7.core.model import DeliverReq, DeliveryReportReq
from mm7.simulator.app import SimulatorConfig, create_simulator_app
from mm7.simulator.dlr import RetryPolicy
from mm7.transport.classify import Outcome
from mm7.transport.client import MM7Client
from mm7.transport.errors import MM7ClientError
from mm7.transport.link import LinkConfig, TLSConfig
from tests.helpers.simulator import Vasp, submit
from tests.helpers.tls_ca import Issued, make_ca

Server = Callable[..., Awaitable[Any]]


async def test_simulate_mo_posts_through_the_control_api(
    aiohttp_server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vasp = Vasp()
    vasp_server = await aiohttp_server(vasp.app())
    config = SimulatorConfig(
        vasp_url=str(vasp_server.make_url("/vasp")), retry=RetryPolicy(backoff=0)
    )
    sim = await aiohttp_server(create_simulator_app(config))
    image = tmp_path / "photo.png"
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (0, 0, 255)).save(buf, "PNG")
    image.write_bytes(buf.getvalue())
    argv = [
        "simulate", "mo", "--simulator", str(sim.make_url("")), "--to", "12345",
        "--from", "+15551230009", "--text", "hello from the handset", "--media", str(image),
    ]  # fmt: skip
    code = await asyncio.to_thread(main, argv)
    assert code == 0, capsys.readouterr()
    assert '"ok": true' in capsys.readouterr().out
    message = vasp.hits[0].message
    assert isinstance(message, DeliverReq) and message.content is not None
    assert message.sender.value == "+15551230009"
    assert buf.getvalue() in vasp.hits[0].body


async def test_simulate_mo_without_a_simulator_is_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["simulate", "mo", "--simulator", "http://127.0.0.1:9", "--to", "1", "--from", "2"]
    code = await asyncio.to_thread(main, argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "cannot reach" in err


def test_bad_config_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "sim.toml"
    conf.write_text('persona = "nokia"\n[dlr]\ndelay = "soon"\n')
    assert main(["simulate", "--listen", "127.0.0.1:0", "--config", str(conf)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "dlr.delay" in err
    assert main(["simulate", "--listen", "127.0.0.1:0", "--persona", "nope"]) == 2
    assert "unknown persona 'nope'" in capsys.readouterr().err
    assert main(["simulate", "--vasp-url", "http://127.0.0.1:1/"]) == 2
    assert "--listen" in capsys.readouterr().err


async def test_simulate_runs_as_a_process(aiohttp_server: Server, tmp_path: Path) -> None:
    vasp = Vasp()
    vasp_server = await aiohttp_server(vasp.app())
    conf = tmp_path / "sim.toml"
    conf.write_text("[retry]\nbackoff = 0\n[faults]\ntps = 100\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mm7.cli.main", "simulate", "--listen", "127.0.0.1:0",
        "--vasp-url", str(vasp_server.make_url("/vasp")), "--persona", "nokia",
        "--dlr-delay", "0", "--config", str(conf),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            line = (await proc.stdout.readline()).decode()
        assert "nokia" in line and "lenient" in line, line
        url = line.split(" on ", 1)[1].split(";", 1)[0]
        async with MM7Client(LinkConfig(name="sim", url=url)) as client:
            rsp = await client.submit(submit())
        hits = await vasp.wait(1)
        assert isinstance(hits[0].message, DeliveryReportReq)
        assert hits[0].message.message_id == rsp.message_id
        assert b"<mm7p6a0:DeliveryReportReq" in hits[0].body
    finally:
        proc.terminate()
        async with asyncio.timeout(20):
            await proc.wait()
    assert proc.returncode == 0


async def test_simulate_serves_mutual_tls(
    aiohttp_server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vasp = Vasp()
    vasp_server = await aiohttp_server(vasp.app())
    ca = make_ca(tmp_path / "pki")
    server, client, stranger = (
        ca.issue("mmsc", server=True),
        ca.issue("vasp"),
        make_ca(tmp_path / "pki", "other").issue("vasp"),
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mm7.cli.main", "simulate", "--listen", "127.0.0.1:0",
        "--tls-cert", str(server.cert), "--tls-key", str(server.key),
        "--client-ca", str(ca.cert_path), "--vasp-url", str(vasp_server.make_url("/vasp")),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            line = (await proc.stdout.readline()).decode()
        assert " on https://127.0.0.1:" in line, line
        url = line.split(" on ", 1)[1].split(";", 1)[0]

        def tls(who: Issued | None) -> TLSConfig:
            return TLSConfig(
                ca_file=ca.cert_path,
                cert_file=who.cert if who else None,
                key_file=who.key if who else None,
            )

        async with MM7Client(LinkConfig(name="sim", url=url, tls=tls(client))) as c:
            assert (await c.submit(submit(report=False))).status.code == 1000
        for who in (None, stranger):
            async with MM7Client(LinkConfig(name="sim", url=url, tls=tls(who))) as c:
                with pytest.raises(MM7ClientError) as info:
                    await c.submit(submit(report=False))
            assert info.value.outcome in (Outcome.TLS_ERROR, Outcome.CONNECTION_RESET)
        # `simulate mo` reaches the control API behind the same mutual TLS
        base = url.rsplit("/mm7", 1)[0]
        argv = [
            "simulate", "mo", "--simulator", base, "--to", "12345", "--from", "+15551230009",
            "--text", "over mTLS", "--cacert", str(ca.cert_path),
        ]  # fmt: skip
        code = await asyncio.to_thread(main, argv)
        assert code == 2 and "cannot reach the simulator" in capsys.readouterr().err
        creds = ["--cert", str(client.cert), "--key", str(client.key)]
        code = await asyncio.to_thread(main, [*argv, *creds])
        assert code == 0, capsys.readouterr()
        assert isinstance(vasp.hits[0].message, DeliverReq)
        assert b"over mTLS" in vasp.hits[0].body
    finally:
        proc.terminate()
        async with asyncio.timeout(20):
            await proc.wait()
    assert proc.returncode == 0


def test_tls_options_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["simulate", "--listen", "127.0.0.1:0"]
    assert main([*base, "--client-ca", str(tmp_path / "ca.crt")]) == 2
    assert "client_ca" in capsys.readouterr().err
    missing = ["--tls-cert", str(tmp_path / "no.crt"), "--tls-key", str(tmp_path / "no.key")]
    assert main([*base, *missing]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "TLS: cannot load" in err


def test_simulate_on_a_port_in_use_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        code = main(["simulate", "--listen", f"127.0.0.1:{port}"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith("mm7 simulate: cannot start:") and str(port) in captured.err
    assert captured.out == ""


@pytest.mark.parametrize("json_lines", [False, True])
async def test_simulate_logs_utc_iso_timestamps_on_stderr(json_lines: bool) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mm7.cli.main", "simulate", "--listen", "127.0.0.1:0",
        *(["--log-json"] if json_lines else []),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            line = (await proc.stdout.readline()).decode()
            page = (await proc.stdout.readline()).decode()
        assert line.startswith("mm7 simulator"), line
        # the simulator's page, named at start (README's quick start)
        base = line.split(" on ", 1)[1].split("/mm7", 1)[0]
        assert page.strip() == f"mm7 simulator: page {base}/ui", page
    finally:
        proc.terminate()
        async with asyncio.timeout(20):
            out, err = await proc.communicate()
    assert proc.returncode == 0
    assert b"mm7.simulator" not in out  # logs never mix with what stdout prints
    lines = err.decode().splitlines()
    started = [entry for entry in lines if "mm7.simulator.started" in entry]
    assert len(started) == 1 and any("mm7.simulator.stopped" in entry for entry in lines), err
    if json_lines:
        entry = json.loads(started[0])
        stamp = entry["timestamp"]
        assert entry["ui"].endswith("/ui") and entry["level"] == "info"
    else:
        stamp = started[0].split(" ", 1)[0]
    parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert parsed.utcoffset() == timedelta(0), stamp
    assert abs(datetime.now(UTC) - parsed) < timedelta(minutes=5)
