"""Headless Chromium driven over the DevTools protocol (a WebSocket on loopback), so a test can
click through a page and read its DOM as a person would see it, without a driver package:
``async with Browser.start(tmp_path) as b: await b.open(url); await b.wait("expr")``.

Skips the test, saying why, when no chromium binary is on PATH (``.ci/run`` installs Debian's).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def browser_binary() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    looked = ", ".join(BROWSERS)
    pytest.skip(f"no chromium binary on PATH (looked for {looked}); .ci/run installs it")


class BrowserError(AssertionError):
    """A script in the page threw, or the protocol answered an error."""


class Browser:
    """One headless Chromium with one page, spoken to over the DevTools WebSocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read())
        #: console messages and exceptions the page reported (to show when a check fails)
        self.console: list[str] = []

    @classmethod
    @contextlib.asynccontextmanager
    async def start(cls, profile: Path) -> AsyncIterator[Browser]:
        """Start the browser (its profile in ``profile``) and attach to its first page."""
        binary = browser_binary()
        profile.mkdir(parents=True, exist_ok=True)
        log = (profile / "chromium.log").open("wb")  # read when it fails to start
        proc = await asyncio.create_subprocess_exec(
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "--window-size=1400,1000",
            f"--user-data-dir={profile}",
            "about:blank",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log,
            env={**os.environ, "HOME": str(profile)},
        )
        log.close()
        session = aiohttp.ClientSession()
        browser: Browser | None = None
        try:
            port = await _devtools_port(profile, proc)
            async with session.get(f"http://127.0.0.1:{port}/json/list") as r:
                targets = await r.json(content_type=None)
            page = next(t for t in targets if t.get("type") == "page")
            ws = await session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
            browser = cls(ws)
            await browser.call("Runtime.enable")
            await browser.call("Page.enable")
            yield browser
        finally:
            if browser is not None:
                await browser.close()
            await session.close()
            if proc.returncode is None:
                proc.kill()
            await proc.wait()

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._ws.close()

    async def _read(self) -> None:
        async for message in self._ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            if "id" in data:
                future = self._waiting.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
            elif data.get("method") == "Runtime.consoleAPICalled":
                args = data["params"].get("args", [])
                self.console.append(
                    " ".join(str(a.get("value", a.get("description"))) for a in args)
                )
            elif data.get("method") == "Runtime.exceptionThrown":
                self.console.append(json.dumps(data["params"].get("exceptionDetails", {}))[:500])

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; its result (BrowserError on an error answer)."""
        number = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[number] = future
        await self._ws.send_str(json.dumps({"id": number, "method": method, "params": params}))
        async with asyncio.timeout(30):  # a guard against a hung browser, not a timing check
            answer = await future
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    async def open(self, url: str) -> None:
        """Navigate to ``url`` and wait for its document (and deferred scripts) to load."""
        await self.call("Page.navigate", url=url)
        await self.wait("document.readyState === 'complete'")

    async def js(self, expression: str) -> Any:
        """Evaluate ``expression`` in the page (promises awaited); its value as JSON."""
        result = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait(self, expression: str, deadline: float = 20.0) -> Any:
        """Evaluate ``expression`` until it is truthy; its value. The deadline only guards
        against a hang (AssertionError naming the expression and the page's console)."""
        try:
            async with asyncio.timeout(deadline):
                while True:
                    value = await self.js(expression)
                    if value:
                        return value
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise AssertionError(f"never true: {expression}; console: {self.console}") from None

    async def click(self, selector: str) -> None:
        """Click the element ``selector`` finds (as the user would: a click event on it)."""
        found = await self.js(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return false; e.click(); return true; })()"
        )
        assert found, f"nothing to click at {selector}"

    async def choose(self, selector: str, value: str) -> None:
        """Set a select's or an input's value and fire ``change``, as picking it would."""
        done = await self.js(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            f" if (!e) return false; e.value = {json.dumps(value)};"
            " e.dispatchEvent(new Event('input', {bubbles: true}));"
            " e.dispatchEvent(new Event('change', {bubbles: true})); return true; })()"
        )
        assert done, f"no element at {selector}"

    async def texts(self, selector: str) -> list[str]:
        """The text of every element ``selector`` finds, in document order."""
        value = await self.js(
            f"Array.from(document.querySelectorAll({json.dumps(selector)})).map(e => e.textContent)"
        )
        assert isinstance(value, list)
        return [str(v) for v in value]


async def _devtools_port(profile: Path, proc: asyncio.subprocess.Process) -> int:
    """The port Chromium chose, from the DevToolsActivePort file it writes in its profile."""
    marker = profile / "DevToolsActivePort"
    async with asyncio.timeout(60):  # a guard against a browser that never starts
        while True:
            if proc.returncode is not None:
                err = (profile / "chromium.log").read_text(errors="replace")
                raise AssertionError(f"chromium exited: {err[-2000:]}")
            if marker.is_file():
                first = marker.read_text().split("\n", 1)[0].strip()
                if first.isdigit():
                    return int(first)
            await asyncio.sleep(0.05)
