"""`mm7 interop ...` run as a real process from an async test (the servers it talks to run in
the test's event loop), and its JSON read back."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Ran:
    """A finished `mm7` process: exit status and both streams as text."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


async def run_mm7(*args: str, env: dict[str, str] | None = None, deadline: float = 120) -> Ran:
    """`python -m mm7.cli.main ARGS` as a subprocess; the deadline only guards a hang."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mm7.cli.main",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )
    try:
        async with asyncio.timeout(deadline):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return Ran(proc.returncode, out.decode(), err.decode())
