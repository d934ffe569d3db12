"""The sending API on a loopback port with its own SQLite store: a config writer (two sending API
keys and an admin key, two links, media fetching), ``Gateway`` to post and count rows, and the
OpenAPI schema check."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jsonschema
from aiohttp.test_utils import TestClient

from mm7.service.api.app import OPENAPI_PATH
from mm7.service.config.loader import load_config
from mm7.service.config.settings import GatewayConfig
from mm7.service.store.sqlite.store import SqliteStore

KEY = "test-key-app-0123456789"
OTHER_KEY = "test-key-other-0123456789"
#: role = "admin": the relay operations and the suppression list
ADMIN_KEY = "test-key-ops-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
OTHER_AUTH = {"Authorization": f"Bearer {OTHER_KEY}"}
ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
OPENAPI = json.loads(OPENAPI_PATH.read_text())

CONFIG = """
[links.main]
url = "http://127.0.0.1:9/mm7"
default = true
[links.uk]
url = "http://127.0.0.1:9/mm7"
prefixes = ["+44"]

[inbound]
listen = "127.0.0.1:0"
[inbound.peers.main]
allow = ["127.0.0.1/32"]

[api]
listen = "127.0.0.1:0"
max_request_bytes = 200000
[[api.keys]]
name = "app"
key = "{key}"
[[api.keys]]
name = "other"
key = "{other}"
[[api.keys]]
name = "ops"
key = "test-key-ops-0123456789"
role = "admin"
[api.fetch]
max_bytes = 60000
allow_private = {allow_private}

[store]
path = "{db}"
"""


def validate(schema_name: str, body: Any) -> None:
    """``body`` against a component schema of the OpenAPI document."""
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": OPENAPI["components"]}
    jsonschema.validate(body, schema, cls=jsonschema.Draft202012Validator)


def make_config(tmp_path: Path, *, allow_private: bool) -> GatewayConfig:
    """Write CONFIG into ``tmp_path`` and load it (media fetches may reach private addresses
    only with ``allow_private``)."""
    path = tmp_path / "gateway.toml"
    path.write_text(
        CONFIG.format(
            key=KEY,
            other=OTHER_KEY,
            allow_private="true" if allow_private else "false",
            db=(tmp_path / "mm7.sqlite").as_posix(),
        )
    )
    return load_config(path, env={})


class Gateway:
    """The API app on a loopback port with its SQLite store, plus row counting."""

    def __init__(self, client: TestClient[Any, Any], store: SqliteStore, db: Path) -> None:
        self.client = client
        self.store = store
        self.db = db

    def counts(self) -> tuple[int, int, int]:
        """(messages, media, store writes): all three stay put when a request is refused."""
        with sqlite3.connect(self.db) as conn:
            messages = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
            media = conn.execute("SELECT count(*) FROM media").fetchone()[0]
        return messages, media, self.store.stats().writes

    async def post(self, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        response = await self.client.post(
            "/v1/messages", json=body, headers=headers if headers is not None else AUTH
        )
        return response.status, await response.json()

    async def refused(self, body: Any, status: int, field: str | None) -> str:
        """POST ``body``, expect an error naming ``field``, and nothing written."""
        before = self.counts()
        got, answer = await self.post(body)
        assert got == status, answer
        validate("Error", answer)
        assert answer["error"]["field"] == field, answer
        assert self.counts() == before
        return str(answer["error"]["message"])


GatewayFactory = Callable[..., Awaitable[Gateway]]
