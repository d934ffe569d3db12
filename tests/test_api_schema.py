"""The sending API checked against its OpenAPI document with schemathesis.

The API (real aiohttp server on 127.0.0.1, real SQLite store in a temporary directory) runs in a
thread with its own event loop; schemathesis generates requests from mm7/service/api/openapi.json
for every operation and checks that the server never fails (5xx), answers only documented status
codes and content types, and that every JSON body matches its documented schema (all the
default checks except "schema-valid data is accepted", see the test). Media URLs are
never fetched here (generated URLs would leave the machine): the app gets a fetcher that refuses
every URL, which the API answers as a documented 422. The store starts with relay events (a dead
letter, a pending one, a status event with a callback URL) and an opt-out, so that the relay
endpoints answer real events, not only empty lists and 404s. The operations endpoints the
gateway serves beside the API (``/healthz``, ``/readyz``, ``/metrics``, ``/media/...``, the
hosted pages ``/m/...``) are
mounted as ``mm7.service.runtime`` mounts them, so the document is checked for them too.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from mm7.service.api.app import OPENAPI_PATH, create_api_app
from mm7.service.api.media_fetch import Fetched
from mm7.service.config.loader import load_config
from mm7.service.errors import FetchError
from mm7.service.hosting import HostedLinks, add_hosting_routes
from mm7.service.mt.submit_build import stored_presentation
from mm7.service.ops.health import Health, store_check
from mm7.service.ops.metrics import GatewayMetrics
from mm7.service.relay.media_urls import MediaUrls, add_media_route
from mm7.service.store.outbox import MoRelay, OptOut
from mm7.service.store.records import NewMessage, NewMo
from mm7.service.store.sqlite.store import SqliteStore
from tests.helpers.api import ADMIN_AUTH, AUTH, CONFIG, KEY, OTHER_KEY

# positive_data_acceptance is off: JSON Schema cannot say that an address must be a number or an
# e-mail address or that an expiry lies ahead, so schema-valid requests may rightly get a 422.
# Invalid requests must be refused with one of the API's documented 4xx (413 included).
CONFIG_ST = SchemathesisConfig.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {"enabled": False},
            "negative_data_rejection": {
                "expected-statuses": [400, 401, 403, 404, 405, 413, 415, 422]
            },
        }
    }
)
schema = schemathesis.openapi.from_dict(json.loads(OPENAPI_PATH.read_text()), config=CONFIG_ST)


class OfflineFetcher:
    """Refuses every URL: these tests must not reach the network."""

    async def fetch(self, url: str, *, allow_private: bool = False) -> Fetched:
        raise FetchError("offline in this test")

    async def close(self) -> None:
        return None


async def seed_relay(store: SqliteStore) -> None:
    """Relay events in every interesting state, and a suppressed address."""
    for n, text in enumerate(("hello", "STOP", "again")):
        event = {"type": "mo", "from": f"+1555000{n}", "to": ["12345"], "text": text}
        await store.store_mo(
            NewMo(
                link="main",
                transaction_id=f"seed-{n}",
                mm7_message_id=f"MID-{n}" if n else None,
                fields=event,
                relay=MoRelay(hook="app", route="r", media="url", event=event),
                opt_out=OptOut("stop", f"+1555000{n}", "STOP") if text == "STOP" else None,
            )
        )
    leased = await store.lease_relay("seed", 1, timedelta(minutes=1))
    await store.relay_outcome(leased[0], "dead", http_status=503, error="HTTP 503")
    await store.enqueue_message(
        NewMessage(
            link="main",
            fields={"api_key": "app"},
            callback_url="https://u:p@app.example/cb?token=x",
        ),
        ["+15550100"],
    )
    [item] = await store.lease("main", "seed", 1, timedelta(minutes=1))
    await store.complete(item, "MMSC-1", 1000, "Success")


class ServerThread:
    """The API on a loopback port, served from a thread with its own event loop."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.base_url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(60)
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to the test thread
            self.error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        path = self.tmp / "gateway.toml"
        path.write_text(
            CONFIG.format(
                key=KEY,
                other=OTHER_KEY,
                allow_private="false",
                db=(self.tmp / "mm7.sqlite").as_posix(),
            )
        )
        config = load_config(path, env={})
        store = await SqliteStore.open(config.store.path)
        await seed_relay(store)
        hosting = HostedLinks(b"hosting-key", "http://127.0.0.1", 3600.0)
        app = create_api_app(config, store, fetcher=OfflineFetcher(), hosting=hosting)
        add_media_route(app, MediaUrls(b"media-url-key", "http://127.0.0.1", 60.0), store)
        add_hosting_routes(app, hosting, store, stored_presentation)
        Health({"store": store_check(store)}).add_to(app)
        GatewayMetrics().add_to(app)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        self._stop = asyncio.Event()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()
            await store.close()


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = ServerThread(tmp_path_factory.mktemp("api-schema"))
    server.start()
    yield server.base_url
    server.stop()


@schema.parametrize()
@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_openapi(case: Any, api_url: str) -> None:
    # the others take no API key; the relay operations need an admin key (a sending key's
    # 403s are checked against the document in test_api_roles)
    headers = AUTH if case.path.startswith("/v1/") else None
    if case.path.startswith(("/v1/relay/", "/v1/suppressions")):
        headers = ADMIN_AUTH
    case.call_and_validate(base_url=api_url, headers=headers)
