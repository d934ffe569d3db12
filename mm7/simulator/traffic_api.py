"""The traffic record over the control API: the list (filters, newest ``limit``), one exchange's
detail, the request's media parts, and the live stream (server-sent events) the console reads.

    GET /control/traffic?direction=in&operation=SubmitReq&status=4006&recipient=555&limit=200
    GET /control/traffic/<id>                    headers, SOAP pretty, parts, slides
    GET /control/traffic/<id>/parts/<n>          one media part's bytes
    GET /control/traffic/stream?<filters>        text/event-stream: "exchange" events (id =
                                                 exchange id; Last-Event-ID or ?after=N replays
                                                 from the ring), "reset", "dropped"
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from aiohttp import hdrs, web

from mm7.simulator.feed import RESET, Dropped
from mm7.simulator.store import Exchange, TrafficStore
from mm7.simulator.traffic_filter import FilterError, TrafficFilter
from mm7.simulator.wire import exchange_detail, request_split

#: seconds between keep-alive comments on an idle stream (and how soon a closed one is noticed)
HEARTBEAT = 15.0
#: the largest ``limit`` the list takes
MAX_LIMIT = 100_000


class TrafficApi:
    """Handlers over one ``TrafficStore``; ``queue``: how far a live subscriber may fall
    behind before it is dropped."""

    def __init__(
        self, store: TrafficStore, control_path: str, *, queue: int, heartbeat: float = HEARTBEAT
    ) -> None:
        self.store = store
        self.base = control_path.rstrip("/")
        self.queue = queue
        self.heartbeat = heartbeat
        self._closing = False

    def add_routes(self, app: web.Application) -> None:
        """Register the routes (the stream before ``<id>``) and the shutdown hook."""
        b = self.base
        app.router.add_get(f"{b}/traffic", self.list)
        app.router.add_get(f"{b}/traffic/stream", self.stream)
        app.router.add_get(rf"{b}/traffic/{{id:\d+}}", self.detail)
        app.router.add_get(rf"{b}/traffic/{{id:\d+}}/parts/{{index:\d+}}", self.part)
        app.on_shutdown.append(self._shutdown)

    async def _shutdown(self, app: web.Application) -> None:
        """Let open streams end so the server's shutdown does not wait on them."""
        self._closing = True
        self.store.feed.close()

    async def list(self, request: web.Request) -> web.Response:
        """GET: the exchanges that pass the filters, oldest first (the newest ``limit``)."""
        selected = _filter(request)
        raw_limit = request.query.get("limit", "")
        limit: int | None = None
        if raw_limit:
            if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
                raise _bad(f"limit: a whole number from 1 to {MAX_LIMIT}, got {raw_limit!r}")
            limit = int(raw_limit)
        found = [e for e in self.store.exchanges if selected.matches(e)]
        if limit is not None:
            found = found[-limit:]
        return web.json_response(
            {
                "exchanges": [e.to_json() for e in found],
                "capacity": self.store.max_exchanges,
                "subscribers_dropped": self.store.feed.dropped,
            }
        )

    def _exchange(self, request: web.Request) -> Exchange:
        found = self.store.exchange(int(request.match_info["id"]))
        if found is None:
            raise web.HTTPNotFound(
                text=json.dumps({"error": "no such exchange (never recorded, or out of the ring)"}),
                content_type="application/json",
            )
        return found

    async def detail(self, request: web.Request) -> web.Response:
        """GET: one exchange with headers (secrets masked), SOAP parts and media listed."""
        exchange = self._exchange(request)
        url = f"{self.base}/traffic/{exchange.id}/parts"
        return web.json_response(exchange_detail(exchange, url))

    async def part(self, request: web.Request) -> web.Response:
        """GET: the bytes of the request's media part ``index`` (as the detail lists them)."""
        exchange = self._exchange(request)
        leaves = request_split(exchange).leaves
        index = int(request.match_info["index"])
        if index >= len(leaves):
            raise web.HTTPNotFound(text="no such part (or the body is no longer kept whole)")
        part = leaves[index]
        headers = {
            hdrs.CONTENT_TYPE: part.content_type.header_value(),
            # a peer's bytes: never run as a page of ours, never re-typed by the browser
            "Content-Security-Policy": "sandbox; default-src 'none'",
            "X-Content-Type-Options": "nosniff",
        }
        return web.Response(body=part.body, headers=headers)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """GET: server-sent events of new exchanges passing the filters, until the client goes
        away or falls ``queue`` behind (then an ``dropped`` event; the browser reconnects)."""
        selected = _filter(request)
        after = _after(request)
        # subscribed before the replay is read: nothing can fall between the two
        subscription = self.store.feed.subscribe(self.queue)
        response = web.StreamResponse(
            headers={
                hdrs.CONTENT_TYPE: "text/event-stream; charset=utf-8",
                hdrs.CACHE_CONTROL: "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        try:
            await response.prepare(request)
            await response.write(b"retry: 1000\n\n")
            sent = 0
            if after is not None:
                replay = [e for e in self.store.exchanges if e.id > after]
                sent = after
                if replay:
                    await response.write(_events(replay, selected))
                    sent = replay[-1].id
            while not self._closing and not subscription.closed:
                try:
                    items = await subscription.next(self.heartbeat)
                except Dropped as exc:
                    data = json.dumps({"reason": str(exc), "last_id": sent})
                    await response.write(f"event: dropped\ndata: {data}\n\n".encode())
                    break
                if not items:
                    await response.write(b": keep-alive\n\n")
                    continue
                chunks: list[bytes] = []
                fresh: list[Exchange] = []
                for item in items:
                    if item is RESET:
                        chunks.append(_events(fresh, selected))
                        fresh = []
                        chunks.append(b"event: reset\ndata: {}\n\n")
                    elif isinstance(item, Exchange) and item.id > sent:
                        fresh.append(item)
                        sent = item.id
                chunks.append(_events(fresh, selected))
                await response.write(b"".join(chunks))
        except (ConnectionResetError, ConnectionError):
            pass  # the browser went away
        finally:
            self.store.feed.unsubscribe(subscription)
        return response


def _events(exchanges: Iterable[Exchange], selected: TrafficFilter) -> bytes:
    return b"".join(
        f"id: {e.id}\nevent: exchange\ndata: {json.dumps(e.to_json())}\n\n".encode()
        for e in exchanges
        if selected.matches(e)
    )


def _filter(request: web.Request) -> TrafficFilter:
    try:
        return TrafficFilter.from_query(request.query)
    except FilterError as exc:
        raise _bad(str(exc)) from None


def _after(request: web.Request) -> int | None:
    """Where a reconnecting stream resumes: Last-Event-ID (the browser's), else ?after=."""
    raw = request.headers.get("Last-Event-ID") or request.query.get("after")
    if raw is None or raw == "":
        return None
    if not raw.isdigit():
        raise _bad(f"after / Last-Event-ID: an exchange id (a whole number), got {raw!r}")
    return int(raw)


def _bad(text: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": text}), content_type="application/json")
