"""Back-pressure: with [api] max_backlog the API refuses new messages for a link whose queue is
too long (503 + Retry-After, nothing written), and takes them again once the queue drains."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from mm7.service.api.app import BACKLOG_KEY, create_api_app
from mm7.service.api.backlog import Backlog
from mm7.service.config.loader import load_config
from mm7.service.errors import ConfigError
from mm7.service.store.sqlite.store import SqliteStore
from tests.helpers.api import AUTH, Gateway, make_config, validate

LIMIT = 3


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    config = make_config(tmp_path, allow_private=False)
    config = dataclasses.replace(config, api=dataclasses.replace(config.api, max_backlog=LIMIT))
    store = await SqliteStore.open(config.store.path)
    app = create_api_app(config, store)
    app[BACKLOG_KEY] = Backlog(store, LIMIT, refresh=0.0)  # read the queue at every request
    client = TestClient(TestServer(app, host="127.0.0.1", port=0))
    await client.start_server()
    yield Gateway(client, store, config.store.path)
    await client.close()
    await store.close()


async def test_a_full_link_answers_503_with_retry_after_and_writes_nothing(gw: Gateway) -> None:
    for n in range(LIMIT):
        status, _ = await gw.post({"to": f"+1201555{100 + n:04d}", "text": "hi"})
        assert status == 202
    before = gw.counts()
    response = await gw.client.post(
        "/v1/messages", json={"to": "+12015550199", "text": "one too many"}, headers=AUTH
    )
    answer = await response.json()
    assert response.status == 503, answer
    assert response.headers["Retry-After"] == "1"
    validate("Error", answer)
    assert "max_backlog" in answer["error"]["message"] and "main" in answer["error"]["message"]
    assert gw.counts() == before
    # the dispatcher takes the queue away: new messages are accepted again
    taken = await gw.store.lease("main", "w", 10, timedelta(seconds=60))
    for item in taken:
        assert await gw.store.complete(item, f"mm7-{item.recipient_id}", 1000, "Success")
    status, _ = await gw.post({"to": "+12015550199", "text": "room again"})
    assert status == 202


async def test_a_campaign_larger_than_the_bound_passes_an_empty_queue(gw: Gateway) -> None:
    many = [f"+1201555{200 + n:04d}" for n in range(LIMIT + 2)]
    status, _ = await gw.post({"to": many, "text": "campaign"})
    assert status == 202
    status, answer = await gw.post({"to": "+12015550299", "text": "behind it"})
    assert status == 503, answer


def test_max_backlog_is_read_from_the_config(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    make_config(tmp_path, allow_private=False)
    text = path.read_text().replace("max_request_bytes = 200000\n", "max_backlog = 5000\n", 1)
    path.write_text(text)
    config = load_config(path, env={})
    assert config.api.max_backlog == 5000
    path.write_text(text.replace("max_backlog = 5000", "max_backlog = 0"))
    with pytest.raises(ConfigError, match=r"api\.max_backlog"):
        load_config(path, env={})


async def test_the_retry_of_an_accepted_message_is_a_duplicate_even_when_full(
    gw: Gateway,
) -> None:
    body = {"to": "+12015550301", "text": "once", "idempotency_key": "k-301"}
    status, first = await gw.post(body)
    assert status == 202
    for n in range(LIMIT):
        await gw.post({"to": f"+1201555{310 + n:04d}", "text": "fill"})
    status, again = await gw.post(body)  # the client did not see the 202 and retries
    assert status == 200 and again == {"id": first["id"], "status": "duplicate"}
    status, _ = await gw.post({**body, "idempotency_key": "k-302"})
    assert status == 503
