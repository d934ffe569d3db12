"""The inbound MM7 endpoint on loopback for tests: ``start`` serves it with a ``Recorder`` of
handler calls, ``post``/``post_message`` play the MMSC and return a decoded ``Reply``, and
``request_message`` makes a full request of any accepted operation and version."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from mm7.core.codec import Decoded, decode, encode
from mm7.core.dialect import Dialect
from mm7.core.model import Fault, Message, Status, VASPErrorRsp
from mm7.core.spec import OPERATION_BY_NAME
from mm7.core.versions import get_version
from mm7.transport.server import (
    InboundConfig,
    InboundContext,
    InboundHandlers,
    Peer,
    create_inbound_app,
)
from tests.helpers.samples import full_message

ServerFactory = Callable[..., Awaitable[Any]]
#: writes requests as any peer might: any MM7Version under any namespace
LAX = Dialect(strict=False, allow_any_mm7_version=True)
OPEN = (Peer("mmsc"),)  # one peer without authentication: these tests are about MM7


def request_message(
    op: str, token: str, *, mm7_version: str | None = None, tid: str | None = None
) -> Message:
    """A full ``op`` request in version ``token`` (every element set), optionally re-labelled."""
    version = get_version(token)
    message = full_message(OPERATION_BY_NAME[op], version)
    changes: dict[str, Any] = {"transaction_id": tid or f"tx-{op}-{token}"}
    if mm7_version is not None:
        changes["mm7_version"] = mm7_version
    return dataclasses.replace(message, **changes)


class Recorder:
    """Handlers that record their contexts and answer what the test sets."""

    def __init__(self, answer: Any = None) -> None:
        self.contexts: list[InboundContext[Any]] = []
        self.answer: Any = answer if answer is not None else Status.of(1000)

    async def __call__(self, ctx: InboundContext[Any]) -> Any:
        self.contexts.append(ctx)
        if isinstance(self.answer, BaseException):
            raise self.answer
        if callable(self.answer):
            return await self.answer(ctx)
        return self.answer

    def handlers(self) -> InboundHandlers:
        return InboundHandlers(on_deliver=self, on_delivery_report=self, on_read_reply=self)


@dataclasses.dataclass
class Reply:
    """What came back: HTTP status, headers, bytes, and the decoded message."""

    status: int
    headers: Any
    body: bytes
    decoded: Decoded

    @property
    def message(self) -> Message:
        return self.decoded.message

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def fault_status(self) -> Status:
        """The status inside the VASPErrorRsp of a fault (asserting the spec shape)."""
        assert isinstance(self.message, Fault), self.message
        assert isinstance(self.message.error, VASPErrorRsp), self.message
        return self.message.error.status


async def post(
    url: Any,
    body: bytes,
    content_type: str | None,
    *,
    headers: dict[str, str] | None = None,
    session: aiohttp.ClientSession | None = None,
    **kwargs: Any,
) -> Reply:
    """POST ``body`` as the MMSC would, read the whole answer and decode it."""
    hdrs = dict(headers or {})
    if content_type is not None:
        hdrs["Content-Type"] = content_type
    own = session is None
    s = session or aiohttp.ClientSession()
    try:
        async with s.post(url, data=body, headers=hdrs, **kwargs) as resp:
            raw = await resp.read()
            ctype = resp.headers.get("Content-Type")
            return Reply(resp.status, resp.headers, raw, decode(raw, ctype))
    finally:
        if own:
            await s.close()


async def post_message(url: Any, message: Message, **kwargs: Any) -> Reply:
    encoded = encode(message, LAX)
    return await post(url, encoded.body, encoded.content_type, **kwargs)


async def start(
    aiohttp_server: ServerFactory,
    recorder: Recorder | None = None,
    *,
    config: InboundConfig | None = None,
    handlers: InboundHandlers | None = None,
    dedupe: Any = None,
    **server_kwargs: Any,
) -> Any:
    """A real server on 127.0.0.1 (ephemeral port) serving the endpoint (``ssl=`` for TLS)."""
    if handlers is None:
        handlers = (recorder or Recorder()).handlers()
    app = create_inbound_app(config or InboundConfig(peers=OPEN), handlers, dedupe=dedupe)
    return await aiohttp_server(app, **server_kwargs)
