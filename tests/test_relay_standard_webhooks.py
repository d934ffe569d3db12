"""The Standard Webhooks signature of the relay, checked by the ``standardwebhooks`` package.

The application is a real aiohttp server on loopback that verifies every request with
``standardwebhooks.Webhook(secret).verify(body, headers)``, exactly as an application would,
and answers 401 when that raises; the real relay worker, over a real SQLite outbox, delivers
to it. The library checks the timestamp against the wall clock, so the ManualClock the store
and the worker share starts at the real time and only moves by seconds.
"""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from mm7.service.config.loader import load_config
from mm7.service.config.settings import RelayHook, RelayRoute, RelaySettings, whsec_key
from mm7.service.errors import ConfigError
from mm7.service.relay.signing import signature_headers, verify, webhook_id
from mm7.service.relay.worker import RelayWorker
from mm7.service.store import (
    ManualClock,
    MoRelay,
    NewMessage,
    NewMo,
    RelayStatus,
    SqliteStore,
)
from mm7.transport.link import Secret

Server = Callable[..., Awaitable[Any]]
LINK = "carrier"
WHSEC = "whsec_" + base64.b64encode(bytes(range(1, 33))).decode()
OTHER_WHSEC = "whsec_" + base64.b64encode(bytes(range(2, 34))).decode()
API_SECRET = "api-key-secret-3"


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    raw: bytes
    status: int


@dataclass
class App:
    """Verifies each request with the Standard Webhooks library; 401 when it refuses one."""

    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    #: statuses to answer, in order, before the verification decides
    script: list[int] = field(default_factory=list)

    async def receive(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            Webhook(WHSEC).verify(raw, dict(request.headers))
            status = self.script.pop(0) if self.script else 204
        except WebhookVerificationError:
            status = 401
        self.seen.append(Seen(request.path, dict(request.headers), raw, status))
        return web.Response(status=status)


@dataclass
class Rig:
    store: SqliteStore
    clock: ManualClock
    app: App
    workers: list[RelayWorker] = field(default_factory=list)

    def worker(self) -> RelayWorker:
        hooks = tuple(
            RelayHook(name=name, url=f"{self.app.url}/{name}", secret=Secret(WHSEC), signature=name)
            for name in ("mm7", "standard", "both")
        )
        settings = RelaySettings(
            hooks=hooks,
            default_route=RelayRoute(name="default", hook="standard", status_hook="standard"),
            initial_backoff=2.0,
            max_backoff=4.0,
        )
        worker = RelayWorker(
            self.store,
            settings,
            api_key_secret={"dev": Secret(API_SECRET)}.get,
            allows_private=lambda name: True,  # the callback listens on 127.0.0.1
        )
        worker.sender.clock = self.clock
        self.workers.append(worker)
        return worker

    async def mo(self, hook: str) -> str:
        result = await self.store.store_mo(
            NewMo(
                link=LINK,
                transaction_id=None,
                mm7_message_id=None,
                fields={"from": "+15550001", "text": "hi"},
                parts=(),
                relay=MoRelay(
                    hook=hook, route="r1", media="url", event={"type": "mo", "text": "hi"}
                ),
            )
        )
        return result.mo_id

    async def run(self, worker: RelayWorker) -> int:
        count = await worker.run_once()
        await worker.idle()
        return count


@pytest.fixture
async def rig(aiohttp_server: Server, tmp_path: Path) -> AsyncIterator[Rig]:
    clock = ManualClock(datetime.now(UTC))
    # every status is relayed, also of messages without a callback_url (to the status hook)
    store = await SqliteStore.open(tmp_path / "gw.db", clock=clock, relay_all_statuses=True)
    app = App()
    web_app = web.Application()
    web_app.router.add_post("/{hook}", app.receive)
    server = await aiohttp_server(web_app)
    app.url = str(server.make_url("")).rstrip("/")
    the_rig = Rig(store, clock, app)
    try:
        yield the_rig
    finally:
        for worker in the_rig.workers:
            await worker.stop(grace=5)
        await store.close()


def refused(secret: str, body: bytes, headers: dict[str, str]) -> bool:
    try:
        Webhook(secret).verify(body, headers)
    except WebhookVerificationError:
        return True
    return False


async def test_a_standard_hook_verifies_with_the_library_and_keeps_its_id_on_retries(
    rig: Rig,
) -> None:
    mo_id = await rig.mo("standard")
    rig.app.script = [503]
    worker = rig.worker()
    assert await rig.run(worker) == 1
    [record] = await rig.store.relay_events()
    assert record.status is RelayStatus.PENDING and record.last_http_status == 503
    rig.clock.set(record.next_attempt_at + timedelta(seconds=1))
    assert await rig.run(worker) == 1
    first, second = rig.app.seen
    # both attempts passed the library's verification (a refusal answers 401)
    assert [s.status for s in rig.app.seen] == [503, 204]
    [record] = await rig.store.relay_events()
    assert record.status is RelayStatus.DELIVERED
    # the id is the same on the retry; the timestamp is the attempt's own
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.headers["webhook-id"] == webhook_id(f"mo:{mo_id}")
    assert re.fullmatch(r"msg_[0-9a-f]{32}", first.headers["webhook-id"])
    assert first.headers["webhook-timestamp"] != second.headers["webhook-timestamp"]
    assert first.headers["webhook-signature"] != second.headers["webhook-signature"]
    assert second.headers["Idempotency-Key"] == f"mo:{mo_id}"
    # only the Standard Webhooks headers: no X-MM7-Signature
    assert "X-MM7-Signature" not in second.headers
    # a changed body, a wrong secret, or another attempt's signature do not verify
    assert not refused(WHSEC, second.raw, second.headers)
    assert refused(WHSEC, second.raw.replace(b'"hi"', b'"ho"'), second.headers)
    assert refused(WHSEC, second.raw + b" ", second.headers)
    assert refused(OTHER_WHSEC, second.raw, second.headers)
    mixed = {**second.headers, "webhook-signature": first.headers["webhook-signature"]}
    assert refused(WHSEC, second.raw, mixed)


async def test_both_sends_both_header_sets_and_mm7_sends_only_its_own(rig: Rig) -> None:
    await rig.mo("both")
    await rig.mo("mm7")
    assert await rig.run(rig.worker()) == 2
    by_path = {s.path: s for s in rig.app.seen}
    both, mm7 = by_path["/both"], by_path["/mm7"]
    assert both.status == 204
    now = datetime.now(UTC).timestamp()
    # X-MM7-Signature is keyed with the whole secret string, as for any mm7 hook
    assert verify(WHSEC.encode(), both.headers["X-MM7-Signature"], both.raw, now=now)
    stamp = both.headers["X-MM7-Signature"].split(",")[0]
    assert stamp == "t=" + both.headers["webhook-timestamp"]
    # the mm7 hook has no Standard Webhooks headers: the library refuses it
    assert mm7.status == 401 and not any(k.startswith("webhook-") for k in mm7.headers)
    assert verify(WHSEC.encode(), mm7.headers["X-MM7-Signature"], mm7.raw, now=now)


async def test_status_events_use_the_status_hooks_scheme_and_callbacks_stay_mm7(
    rig: Rig,
) -> None:
    for callback in (None, rig.app.url + "/callback"):
        await rig.store.enqueue_message(
            NewMessage(link=LINK, fields={"api_key": "dev"}, callback_url=callback),
            ["+15551230001"],
        )
    for item in await rig.store.lease(LINK, "dispatcher", 10, timedelta(seconds=60)):
        assert await rig.store.complete(item, "MM7-1", 1000, "Success")
    assert await rig.run(rig.worker()) == 2
    by_path = {s.path: s for s in rig.app.seen}
    status, callback = by_path["/standard"], by_path["/callback"]
    assert status.status == 204 and status.headers["X-MM7-Event-Type"] == "status"
    assert callback.status == 401 and "webhook-signature" not in callback.headers
    now = datetime.now(UTC).timestamp()
    assert verify(API_SECRET.encode(), callback.headers["X-MM7-Signature"], callback.raw, now=now)


def test_the_webhook_id_never_holds_a_full_stop_and_depends_on_the_key_alone() -> None:
    key = "dlr:carrier:msg.1@mmsc.example:+15551230001:Retrieved"
    assert webhook_id(key) == webhook_id(key) != webhook_id(key + "x")
    assert re.fullmatch(r"msg_[0-9a-f]{32}", webhook_id(key))


def test_the_signature_matches_the_librarys_own_signing() -> None:
    body = '{"type":"mo","text":"héllo"}'.encode()
    at = 1_767_225_600
    headers = signature_headers("standard", WHSEC, "mo:1", at, body)
    expected = Webhook(WHSEC).sign(webhook_id("mo:1"), datetime.fromtimestamp(at, UTC), body)
    assert headers["webhook-signature"] == expected
    assert headers["webhook-timestamp"] == str(at)


# --------------------------------------------------------------------------- configuration

CONFIG = """
[links.carrier]
url = "https://mmsc.example/mm7"

[inbound.peers.carrier]
allow = ["10.0.0.0/8"]

[[api.keys]]
name = "app"
key_env = "APP_KEY"

[relay.hooks.app]
url = "https://app.example/mo"
secret_env = "HOOK_SECRET"
{signature}
"""


def load(tmp_path: Path, signature: str, secret: str) -> RelaySettings:
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG.format(signature=signature), encoding="utf-8")
    env = {"APP_KEY": "app-key-value-1", "HOOK_SECRET": secret}
    return load_config(path, env=env).relay


def test_the_signature_key_defaults_to_mm7_and_takes_a_whsec_secret(tmp_path: Path) -> None:
    assert load(tmp_path, "", "plain-secret").hook("app").signature == "mm7"
    hook = load(tmp_path, 'signature = "standard"', WHSEC).hook("app")
    assert hook.signature == "standard" and hook.secret.reveal() == WHSEC
    assert load(tmp_path, 'signature = "both"', WHSEC).hook("app").signature == "both"
    # unpadded base64 is what some tools print: decoded as the libraries decode it
    unpadded = "whsec_" + base64.b64encode(bytes(range(1, 26))).decode().rstrip("=")
    assert whsec_key(unpadded) == bytes(range(1, 26))
    assert Webhook(unpadded)._whsecret == whsec_key(unpadded)


@pytest.mark.parametrize(
    ("signature", "secret", "where", "problem"),
    [
        ('"standard"', "plain-secret-value", "secret_env", "whsec_<base64"),
        ('"both"', "plain-secret-value", "secret_env", "does not start with whsec_"),
        ('"standard"', "whsec_not*base64!", "secret_env", "not base64"),
        ('"standard"', "whsec_" + base64.b64encode(b"short").decode(), "secret_env", "5 bytes"),
        ('"hmac"', WHSEC, "signature", "mm7, standard, both"),
    ],
)
def test_a_standard_hook_without_a_whsec_secret_is_refused(
    tmp_path: Path, signature: str, secret: str, where: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, f"signature = {signature}", secret)
    message = str(info.value)
    assert f": relay.hooks.app.{where}: " in message, message
    assert problem in message, message
    assert secret.removeprefix("whsec_") not in message


def test_the_readme_snippet_verifies_a_relayed_request_and_refuses_a_changed_one() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    start = readme.index("```python\nfrom standardwebhooks") + len("```python\n")
    code = readme[start : readme.index("```", start)]
    body = b'{"type":"mo","text":"hi"}'
    now = int(datetime.now(UTC).timestamp())
    headers = signature_headers("standard", WHSEC, "mo:1", now, body)
    namespace: dict[str, Any] = {"secret": WHSEC, "body": body, "headers": headers}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["event"] == {"type": "mo", "text": "hi"}
    namespace["body"] = body.replace(b"hi", b"ho")
    with pytest.raises(WebhookVerificationError):
        exec(compile(code, "README.md", "exec"), namespace)
