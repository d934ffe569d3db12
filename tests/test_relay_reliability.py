"""The relay with real processes: `mm7 serve` as a subprocess, the bundled simulator originating
MOs (DeliverReq with an image) into the gateway's inbound endpoint, and an application's hook
written as a user would write it from the README (it verifies the signature with the README's
own five lines, deduplicates on Idempotency-Key and counts).

* The hook is down (connection refused) while a stream of MOs arrives: every MO is answered
  1000, nothing is lost, everything arrives once the hook listens, each once per key.
* The gateway is SIGKILLed while relaying to a slow hook and restarted on the same database:
  every MO acknowledged to the MMSC reaches the hook.

Waits are on conditions, each bounded by a deadline that only guards against a hang."""

from __future__ import annotations

import asyncio
import base64
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.helpers.runtime import (
    bound_socket,
    clean_env,
    drain,
    jpeg,
    read_until,
    serve,
    start_simulator,
    stop,
    wait_for,
    write_config,
)

README = Path(__file__).resolve().parent.parent / "README.md"
HOOK_SECRET = "hook-secret-for-the-reliability-test"
MOS = 24


def readme_verifier() -> Callable[[bytes, str, bytes], bool]:
    """The signature check exactly as the README shows it (the block after "verifies it")."""
    text = README.read_text()
    start = text.index("```python\n", text.index("X-MM7-Signature")) + len("```python\n")
    code = text[start : text.index("```", start)]
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    verified: Callable[[bytes, str, bytes], bool] = namespace["verified"]
    return verified


@dataclass
class HookApp:
    """The application: verifies, deduplicates by Idempotency-Key, counts; optionally slow."""

    delay: float = 0.0
    verified: Callable[[bytes, str, bytes], bool] = field(default_factory=readme_verifier)
    posts: int = 0
    bad_signatures: int = 0
    seen: dict[str, dict[str, Any]] = field(default_factory=dict)
    per_key: Counter[str] = field(default_factory=Counter)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.posts += 1
        if not self.verified(HOOK_SECRET.encode(), request.headers["X-MM7-Signature"], body):
            self.bad_signatures += 1
            return web.Response(status=401)
        if self.delay:
            await asyncio.sleep(self.delay)
        key = request.headers["Idempotency-Key"]
        self.per_key[key] += 1
        if key not in self.seen:
            self.seen[key] = await request.json()
        return web.Response(status=204)

    def texts(self) -> set[str]:
        return {e["text"] for e in self.seen.values() if e.get("type") == "mo"}


RELAY = """
[relay]
initial_backoff = "0.05s"
max_backoff = "0.3s"
[relay.hooks.app]
url = "http://127.0.0.1:{hook_port}/hook"
secret_env = "MM7_TEST_HOOK_SECRET"
concurrency = {concurrency}
timeout = "5s"
[relay.default_route]
hook = "app"
media = "url"
"""


def gateway_config(tmp_path: Path, hook_port: int, concurrency: int = 4) -> Path:
    # the link points at a port nobody listens on: this test is about the MO path only
    with bound_socket() as unused:
        dead_port = unused.getsockname()[1]
    return write_config(
        tmp_path,
        dead_port,
        extra=RELAY.format(hook_port=hook_port, concurrency=concurrency),
    )


def gateway(config: Path, cwd: Path) -> subprocess.Popen[str]:
    env = {**clean_env(), "MM7_TEST_HOOK_SECRET": HOOK_SECRET}
    return serve(config, cwd, env, "--poll-interval", "0.1", "--lease-ttl", "2")


async def inbound_url(proc: subprocess.Popen[str]) -> str:
    found = await asyncio.wait_for(
        asyncio.to_thread(read_until, proc, r"inbound MM7 endpoint on (\S+)"), 30
    )
    drain(proc)  # a retry logs a line: a full pipe would stop the gateway mid-test
    return found[1]


async def originate(http: aiohttp.ClientSession, control: str, n: int) -> dict[str, Any]:
    """One MO through the simulator: a JPEG and a unique text; the VASP's answer."""
    body = {
        "to": "12345",
        "from": f"+1555000{n:04d}",
        "text": f"mo number {n}",
        "media": [{"data": base64.b64encode(jpeg()).decode(), "filename": "p.jpg"}],
    }
    async with http.post(f"{control}/mo", json=body) as rsp:
        assert rsp.status == 200, await rsp.text()
        result: dict[str, Any] = await rsp.json()
        return result


async def start_hook(sock: socket.socket, hook: HookApp) -> web.AppRunner:
    runner = web.AppRunner(hook.app(), handle_signals=False)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return runner


async def test_hook_down_during_a_stream_of_mos_loses_nothing(tmp_path: Path) -> None:
    hook = HookApp()
    with bound_socket() as hook_sock, bound_socket() as mmsc_sock:
        # bound but not listening: connections to the hook are refused until it starts
        proc = gateway(gateway_config(tmp_path, hook_sock.getsockname()[1]), tmp_path)
        runners: list[web.AppRunner] = []
        try:
            vasp_url = await inbound_url(proc)
            _, sim = await start_simulator(mmsc_sock, vasp_url)
            runners.append(sim)
            control = f"http://127.0.0.1:{mmsc_sock.getsockname()[1]}/control"
            async with aiohttp.ClientSession() as http:
                answers = [await originate(http, control, n) for n in range(MOS)]
                assert [a["status_code"] for a in answers] == [1000] * MOS
                assert all(a["ok"] and a["attempts"] == 1 for a in answers)
                await asyncio.sleep(0.5)  # several retries fail while the hook is down
                assert hook.posts == 0
                runners.append(await start_hook(hook_sock, hook))

                async def all_arrived() -> bool:
                    return len(hook.texts()) == MOS

                await wait_for(all_arrived, 60)  # 3 s alone; 15 s and more on a loaded machine
                # fetch one MO's image through its signed media URL: the exact bytes
                event = next(iter(hook.seen.values()))
                (image,) = [m for m in event["media"] if m["content_type"] == "image/jpeg"]
                async with http.get(image["url"]) as rsp:
                    assert rsp.status == 200 and await rsp.read() == jpeg()
        finally:
            stop(proc)
            for runner in runners:
                await runner.cleanup()
    assert hook.bad_signatures == 0
    assert hook.texts() == {f"mo number {n}" for n in range(MOS)}
    assert len(hook.seen) == MOS and set(hook.per_key.values()) == {1}
    assert all(key.startswith("mo:") for key in hook.seen)


async def test_sigkill_while_relaying_loses_nothing_acknowledged(tmp_path: Path) -> None:
    hook = HookApp(delay=0.15)
    with bound_socket() as hook_sock, bound_socket() as mmsc_sock:
        hook_sock.listen()
        hook_runner = await start_hook(hook_sock, hook)
        config = gateway_config(tmp_path, hook_sock.getsockname()[1], concurrency=1)
        proc = gateway(config, tmp_path)
        sim: web.AppRunner | None = None
        try:
            vasp_url = await inbound_url(proc)
            _, sim = await start_simulator(mmsc_sock, vasp_url)
            control = f"http://127.0.0.1:{mmsc_sock.getsockname()[1]}/control"
            async with aiohttp.ClientSession() as http:
                answers = [await originate(http, control, n) for n in range(MOS)]
            acknowledged = {
                f"mo number {n}" for n, a in enumerate(answers) if a["status_code"] == 1000
            }
            assert len(acknowledged) == MOS

            async def some_arrived() -> bool:
                return len(hook.texts()) >= 3

            await wait_for(some_arrived, 30)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            arrived_before = len(hook.texts())
            assert arrived_before < MOS  # the kill happened while relaying
            started = time.monotonic()
            proc = gateway(config, tmp_path)
            await inbound_url(proc)

            async def all_arrived() -> bool:
                return hook.texts() >= acknowledged

            await wait_for(all_arrived, 60)
            assert time.monotonic() - started < 60
        finally:
            stop(proc)
            if sim is not None:
                await sim.cleanup()
            await hook_runner.cleanup()
    assert hook.bad_signatures == 0
    assert hook.texts() == acknowledged
    # at least once: a delivery the kill cut short comes again, under the same key
    assert len(hook.seen) == MOS
