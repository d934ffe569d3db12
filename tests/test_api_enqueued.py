"""The API tells the runtime about each new message (``on_enqueued``) after its commit, once: a
retry with the same idempotency key and a refused request call nothing. Real SQLite, real
loopback server."""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from mm7.service.api.app import create_api_app
from mm7.service.config.loader import load_config
from mm7.service.store.sqlite.store import SqliteStore

KEY = "test-key-enqueued-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}

CONFIG = """
[links.one]
url = "http://127.0.0.1:9/mm7"
prefixes = ["+1201"]
[links.two]
url = "http://127.0.0.1:9/mm7"
default = true

[inbound]
listen = "127.0.0.1:0"
[inbound.peers.mmsc]
link = "one"
allow = ["127.0.0.1/32"]

[api]
listen = "127.0.0.1:0"
[[api.keys]]
name = "app"
key = "{key}"

[store]
path = "{db}"
"""


async def test_on_enqueued_names_the_link_after_commit_and_only_for_new_messages(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gateway.toml"
    db = tmp_path / "mm7.sqlite"
    path.write_text(CONFIG.format(key=KEY, db=db.as_posix()))
    config = load_config(path, env={})
    store = await SqliteStore.open(db)
    seen: list[str] = []
    api = TestClient(
        TestServer(create_api_app(config, store, on_enqueued=seen.append), host="127.0.0.1", port=0)
    )
    await api.start_server()
    try:
        body = {"to": "+12015550001", "text": "hi", "idempotency_key": "k1"}
        rsp = await api.post("/v1/messages", json=body, headers=AUTH)
        assert rsp.status == 202
        assert seen == ["one"]
        assert await store.queue_depth("one") == 1  # committed before the answer and the call

        again = await api.post("/v1/messages", json=body, headers=AUTH)
        assert again.status == 200  # a duplicate: nothing new to dispatch
        bad = await api.post("/v1/messages", json={"to": "not a number"}, headers=AUTH)
        assert bad.status == 422
        assert seen == ["one"]

        other = await api.post(
            "/v1/messages", json={"to": "+447400123456", "text": "x"}, headers=AUTH
        )
        assert other.status == 202
        assert seen == ["one", "two"]
    finally:
        await api.close()
        await store.close()
