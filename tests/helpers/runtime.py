"""The gateway run for real: a TOML config written into tmp_path (loopback ports, SQLite,
one API key), the bundled simulator started on a held socket as the MMSC, `mm7 serve` as a
subprocess, and the polling and reading helpers the runtime and reliability tests share."""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import io
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from aiohttp import web
from PIL import Image

from mm7.simulator.app import SIMULATOR, SimulatorConfig, create_simulator_app
from mm7.simulator.dlr import DlrPlan, RetryPolicy
from mm7.simulator.personas import load_persona

#: the API key of the one key in CONFIG, and the header that presents it
KEY = "test-key-runtime-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}

CONFIG = """
[links.main]
url = "http://127.0.0.1:{mmsc_port}/mm7"
default = true
vasp_id = "vasp"
vas_id = "vas"
sender_address = "12345"
tps = 100
request_timeout = "5s"
connect_timeout = "2s"
retry = {{ initial_backoff = "0.05s", max_backoff = "0.2s" }}

[inbound]
listen = "127.0.0.1:{inbound_port}"
[inbound.peers.simulator]
link = "main"
allow = ["127.0.0.1/32"]

[api]
listen = "127.0.0.1:{api_port}"
[[api.keys]]
name = "app"
{key_line}

[store]
path = "{db}"

[logging]
level = "warning"
json = true
"""


def write_config(
    tmp_path: Path,
    mmsc_port: int,
    *,
    inbound_port: int = 0,
    api_port: int = 0,
    key_line: str = f'key = "{KEY}"',
    extra: str = "",
) -> Path:
    """Write CONFIG plus ``extra`` TOML to tmp_path/gateway.toml (ports 0: free ones)."""
    path = tmp_path / "gateway.toml"
    db = (tmp_path / "var" / "mm7.sqlite").as_posix()
    path.write_text(
        CONFIG.format(
            mmsc_port=mmsc_port,
            inbound_port=inbound_port,
            api_port=api_port,
            key_line=key_line,
            db=db,
        )
        + extra
    )
    return path


def use_postgresql(path: Path, dsn_env: str = "MM7_TEST_DSN") -> None:
    """Point the configuration at ``write_config`` wrote at PostgreSQL: ``[store] backend =
    "postgresql"``, the DSN read from the environment variable ``dsn_env``."""
    text = path.read_text()
    store = '[store]\npath = "'
    if store not in text:
        raise AssertionError(f"{path}: no [store] path to replace")
    path.write_text(
        text.replace(store, f'[store]\nbackend = "postgresql"\ndsn_env = "{dsn_env}"\n#', 1)
    )


def jpeg() -> bytes:
    """A small real JPEG (32x24, Pillow): the photo the API messages carry."""
    out = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 40, 40)).save(out, "JPEG")
    return out.getvalue()


def message(to: str = "+12025550001", **extra: Any) -> dict[str, Any]:
    """A POST /v1/messages body: text, one JPEG, a delivery report asked for."""
    return {
        "to": to,
        "text": "hello",
        "media": [
            {"content_base64": base64.b64encode(jpeg()).decode(), "content_type": "image/jpeg"}
        ],
        "delivery_report": True,
        **extra,
    }


@contextmanager
def bound_socket() -> Iterator[socket.socket]:
    """A loopback socket bound to a free port and held (the simulator is started on it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock
    finally:
        sock.close()


async def start_simulator(
    sock: socket.socket, vasp_url: str | None, vasp_auth: tuple[str, str] | None = None
) -> tuple[web.Application, web.AppRunner]:
    """The strict-3gpp simulator on ``sock``, reporting every message at once to ``vasp_url``
    (with Basic ``vasp_auth`` when given)."""
    app = create_simulator_app(
        SimulatorConfig(
            persona=load_persona("strict-3gpp"),
            vasp_url=vasp_url,
            vasp_auth=vasp_auth,
            dlr=DlrPlan(when="always", delay=0.0, final_delay=0.0),
            retry=RetryPolicy(max_attempts=3, backoff=0.0, timeout=5.0),
            ui_path=None,
            seed=1,
        )
    )
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return app, runner


async def start_quiet_simulator(sock: socket.socket) -> tuple[web.Application, web.AppRunner]:
    """The strict-3gpp simulator on ``sock``: accepts every SubmitReq, sends no reports."""
    app = create_simulator_app(
        SimulatorConfig(
            persona=load_persona("strict-3gpp"),
            dlr=DlrPlan(when="never"),
            ui_path=None,
            max_exchanges=1000,
            seed=3,
        )
    )
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return app, runner


async def wait_for(check: Any, deadline: float = 20.0) -> Any:
    """Poll ``check()`` until it returns something truthy (the deadline is only a guard)."""
    async with asyncio.timeout(deadline):
        while True:
            value = await check()
            if value:
                return value
            await asyncio.sleep(0.02)


# --------------------------------------------------------------------------- mm7 serve


def serve(config: Path, cwd: Path, env: dict[str, str], *options: str) -> subprocess.Popen[str]:
    """`mm7 serve --config CONFIG OPTIONS` as a subprocess, stdout and stderr piped as text."""
    return subprocess.Popen(
        [sys.executable, "-m", "mm7.cli.main", "serve", "--config", str(config), *options],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_until(proc: subprocess.Popen[str], pattern: str) -> re.Match[str]:
    """Read stdout lines until one matches (the process's start is bounded by the caller)."""
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        found = re.search(pattern, line)
        if found:
            return found
    raise AssertionError(f"{pattern!r} never printed; stdout: {seen}; stderr: {proc.stderr}")


def drain(proc: subprocess.Popen[str], keep: int = 2000) -> collections.deque[str]:
    """Keep reading ``proc``'s piped stdout and stderr on daemon threads, so that a process
    that logs a lot never blocks writing to a full pipe (64 KiB) once the test stops reading;
    the last ``keep`` lines of both, in arrival order, for a failure's message."""
    lines: collections.deque[str] = collections.deque(maxlen=keep)

    def pump(stream: IO[str]) -> None:
        with contextlib.suppress(ValueError, OSError):  # closed by stop()
            for line in stream:
                lines.append(line)

    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            threading.Thread(target=pump, args=(stream,), daemon=True).start()
    return lines


def clean_env() -> dict[str, str]:
    """This process's environment without any MM7_ variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MM7_")}
    return env


def stop(proc: subprocess.Popen[str]) -> None:
    """Kill ``proc`` if it still runs, wait for it, close its pipes."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def accepted(app: web.Application) -> collections.Counter[str]:
    """TransactionIDs of the SubmitReqs the simulator answered 1000, with how often."""
    return collections.Counter(
        e.transaction_id
        for e in app[SIMULATOR].store.exchanges
        if e.direction == "in" and e.operation == "SubmitReq" and e.status_code == 1000
    )
