"""A store that cannot write: /readyz says so, the API answers JSON 503 with Retry-After and
writes nothing, and both recover without a restart once the disk does.

The failures are real even as root (who ignores file modes): the media directory replaced by a
file makes every media file write fail, and a second connection holding SQLite's write lock
makes every commit fail."""

from __future__ import annotations

import base64
import shutil
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from mm7.service.api.app import STORE_RETRY_AFTER, create_api_app
from mm7.service.errors import StoreUnavailableError
from mm7.service.ops.health import Health, store_check
from mm7.service.store.sqlite.store import SqliteStore
from tests.helpers.api import AUTH, Gateway, make_config, validate
from tests.helpers.media import png_bytes

INLINE_MAX = 64  # every test image is larger: it goes to a media file


@dataclass
class Setup:
    gw: Gateway
    health: TestClient[Any, Any]
    media_dir: Path


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    config = make_config(tmp_path, allow_private=False)
    media_dir = tmp_path / "media"
    store = await SqliteStore.open(
        config.store.path, media_dir=media_dir, inline_media_max=INLINE_MAX, probe_interval=0.0
    )
    client = TestClient(TestServer(create_api_app(config, store), host="127.0.0.1", port=0))
    await client.start_server()
    health = Health({"store": store_check(store)})
    health_client = TestClient(TestServer(health.application(), host="127.0.0.1", port=0))
    await health_client.start_server()
    yield Setup(Gateway(client, store, config.store.path), health_client, media_dir)
    await health_client.close()
    await client.close()
    await store.close()


def _with_image(n: int) -> dict[str, Any]:
    image = png_bytes(20 + n, 20)
    assert len(image) > INLINE_MAX
    part = {"content_base64": base64.b64encode(image).decode(), "content_type": "image/png"}
    return {"to": f"+1201555{100 + n:04d}", "media": [part]}


async def _ready(client: TestClient[Any, Any]) -> tuple[int, dict[str, Any]]:
    response = await client.get("/readyz")
    return response.status, await response.json()


async def _refused_503(gw: Gateway, body: dict[str, Any]) -> dict[str, Any]:
    before = gw.counts()
    response = await gw.client.post("/v1/messages", json=body, headers=AUTH)
    assert response.status == 503, await response.text()
    assert response.content_type == "application/json"
    assert response.headers["Retry-After"] == str(STORE_RETRY_AFTER)
    answer: dict[str, Any] = await response.json()
    validate("Error", answer)
    assert gw.counts()[:2] == before[:2]  # no message, no media row
    return answer


async def test_unwritable_media_directory_is_not_ready_503_then_recovers(setup: Setup) -> None:
    gw = setup.gw
    status, _ = await gw.post(_with_image(0))
    assert status == 202
    assert (await _ready(setup.health))[0] == 200

    shutil.rmtree(setup.media_dir)
    setup.media_dir.write_bytes(b"not a directory")
    answer = await _refused_503(gw, _with_image(1))
    message = answer["error"]["message"]
    assert "retry later" in message
    assert str(setup.media_dir) not in message and "Errno" not in message
    status, body = await _ready(setup.health)
    assert status == 503, body
    assert "cannot write media files" in body["checks"]["store"]
    assert str(setup.media_dir) not in body["reason"]

    setup.media_dir.unlink()  # the disk is back: no restart
    status, _ = await gw.post(_with_image(2))
    assert status == 202
    assert (await _ready(setup.health))[0] == 200
    assert gw.counts()[:2] == (2, 2)


async def test_commits_refused_by_a_held_lock_are_not_ready_503_then_recover(
    setup: Setup,
) -> None:
    gw = setup.gw
    setup.gw.store._busy_timeout_ms = 50  # fail fast instead of after 10 s
    blocker = sqlite3.connect(gw.db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        await _refused_503(gw, {"to": "+12015550100", "text": "locked out"})
        status, body = await _ready(setup.health)
        assert status == 503, body
        assert body["checks"]["store"] == "cannot commit: database is locked"
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    status, body = await _ready(setup.health)
    assert status == 200, body
    status, _ = await gw.post({"to": "+12015550100", "text": "unlocked"})
    assert status == 202
    assert gw.counts()[0] == 1


async def test_probe_runs_at_most_once_per_interval(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "db.sqlite", probe_interval=3600.0)
    try:
        store._last_probe = store._last_commit = float("-inf")  # idle since forever
        assert await store.writable() is None
        commits = store.stats().commits
        assert commits == 1  # the probe's commit
        assert await store.writable() is None
        assert store.stats().commits == commits  # no second probe within the interval
    finally:
        await store.close()


async def test_a_failed_media_write_raises_store_unavailable_without_a_path(
    tmp_path: Path,
) -> None:
    media_dir = tmp_path / "media"
    media_dir.write_bytes(b"a file where the directory goes")
    store = await SqliteStore.open(tmp_path / "db.sqlite", media_dir=media_dir, inline_media_max=4)
    try:
        with pytest.raises(StoreUnavailableError) as caught:
            await store.put_media(b"0123456789", "application/octet-stream")
        assert str(media_dir) not in str(caught.value)
        assert isinstance(caught.value.__cause__, OSError)
    finally:
        await store.close()
