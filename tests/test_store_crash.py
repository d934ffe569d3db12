"""Crash safety: every message id a writer printed after its await is there after SIGKILL.

A real subprocess enqueues messages from many concurrent tasks (so that commits are grouped)
and prints each id only after ``enqueue_message`` returned, i.e. after its commit. The test
kills it with SIGKILL mid-stream, reopens the database and looks every printed id up. On both
backends (tests/helpers/stores.py): on PostgreSQL the writer is a gateway process dying with
its pool, so this holds the store to acknowledging only what the server committed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.helpers.stores import Backend, PostgresBackend, SqliteBackend

REPO = Path(__file__).resolve().parent.parent

WRITER = r"""
import asyncio, sys
from mm7.service.store import MediaPart, NewMessage, SqliteStore

IMAGE = bytes(range(256)) * 120  # ~30 KB, shared by every message: stored once

async def main(where: str) -> None:
    if where.startswith("postgresql://"):
        from mm7.service.store.postgres import PostgresStore

        store = await PostgresStore.open(where)
    else:
        store = await SqliteStore.open(where, inline_media_max=64 * 1024)
    async def worker(w: int) -> None:
        i = 0
        while True:
            parts = [MediaPart("image/jpeg", data=IMAGE)]
            if i % 10 == 0:  # a large, distinct part: goes to a file
                parts.append(MediaPart("video/3gpp", data=f"{w}-{i}".encode() * 20000))
            made = await store.enqueue_message(
                NewMessage(link="mmsc1", fields={"w": w, "i": i}, idempotency_key=f"{w}-{i}"),
                ["4917000000", "4917000001"],
                parts,
            )
            sys.stdout.write(made.message_id + "\n")
            sys.stdout.flush()
            i += 1
    await asyncio.gather(*(worker(w) for w in range(16)))

asyncio.run(main(sys.argv[1]))
"""


async def test_acknowledged_messages_survive_sigkill(backend: Backend, tmp_path: Path) -> None:
    if isinstance(backend, SqliteBackend):
        where = str(backend.path)
    else:
        assert isinstance(backend, PostgresBackend)
        where = backend.dsn
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, str(script), where],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    printed: list[str] = []
    try:
        while len(printed) < 400:
            line = proc.stdout.readline()
            assert line, f"writer exited early: {proc.stderr.read() if proc.stderr else ''!r}"
            printed.append(line.decode().strip())
        proc.send_signal(signal.SIGKILL)
        # ids printed before the kill may still sit in the pipe: they count too
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    printed += [ln for ln in rest.decode().split("\n") if len(ln) == 28]

    store = await backend.open()
    missing = [mid for mid in printed if await store.get_message(mid) is None]
    assert missing == []
    print(f"{len(printed)} ids printed, {len(rest.splitlines())} after the kill")
    big = 0
    for mid in printed:
        got = await store.get_message(mid)
        assert got is not None and len(got.recipients) == 2
        for part in got.parts:
            blob = await store.get_media(part.sha256)
            assert blob is not None and len(blob.data) == part.size
            big += part.content_type == "video/3gpp"
    assert big > 0
