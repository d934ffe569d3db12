"""The inbound endpoint's DeliverReq handler: store the MO durably, then answer 1000.

    ingest = MoIngest(store, config.relay, link_of=reports.link_of, wake_relay=worker.wake)
    app = create_inbound_app(inbound_config, reports.handlers(on_deliver=ingest.on_deliver))

One transaction (``Store.store_mo``) holds the MO with every media part, the relay event for
the route's hook and the opt-out change of a stop/start word; DeliverRsp 1000 is sent only
after it committed. A store failure answers 4006 (service unavailable: the MMSC retries). A
duplicate (the endpoint's in-memory dedupe saw it answered, or the store finds the same
MessageID, or TransactionID within its window, from the same link) is answered 1000 and not
stored or relayed again. An MO no route matches is stored (``unrouted``) and answered 1000 too.
"""

from __future__ import annotations

from collections.abc import Callable

from mm7.core.model import DeliverReq, Status
from mm7.service.config.settings import RelaySettings
from mm7.service.relay.mo_event import mo_content
from mm7.service.relay.routing import choose_route, opt_out_word
from mm7.service.store.base import Clock, Store, SystemClock
from mm7.service.store.outbox import MoRelay, OptOut
from mm7.service.store.records import NewMo, normalize_address
from mm7.transport.errors import HandlerError
from mm7.transport.logs import LazyLog
from mm7.transport.server import InboundContext

__all__ = ["MoIngest"]

_LOGGER = "mm7.service.relay.ingest"


class MoIngest:
    """``on_deliver`` for the inbound endpoint (module docstring)."""

    def __init__(
        self,
        store: Store,
        settings: RelaySettings,
        *,
        link_of: Callable[[str], str] = lambda peer: peer,
        wake_relay: Callable[[], None] | None = None,
        clock: Clock | None = None,
        on_stored: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self._link_of = link_of
        self._wake_relay = wake_relay
        self._clock = clock or SystemClock()
        self._on_stored = on_stored

    async def on_deliver(self, ctx: InboundContext[DeliverReq]) -> Status:
        link = self._link_of(ctx.peer.name)
        bound = LazyLog(_LOGGER, link=link, transaction_id=ctx.message.transaction_id)
        if ctx.duplicate:
            bound.info("mm7.mo.duplicate", seen="endpoint")
            return Status.of(1000)
        content = mo_content(ctx, link, self._clock.now())
        event = content.event
        sender = ctx.message.sender
        # without a Sender there is nobody to opt out (nor to order by, nor to reply to)
        opt = opt_out_word(self.settings, content.facts.text) if sender is not None else None
        opt_out = None
        if opt is not None and sender is not None:
            event["opt_out"] = opt[0]
            opt_out = OptOut(opt[0], sender.value, opt[1])
        route = choose_route(self.settings, content.facts)
        relay = None
        if route is not None:
            hook = self.settings.hook(route.hook)
            relay = MoRelay(
                hook=route.hook,
                route=route.name,
                media=route.media,
                event={**event, "route": route.name},
                sender_key=(
                    normalize_address(sender.value) if hook.ordered and sender is not None else None
                ),
            )
        try:
            result = await self.store.store_mo(
                NewMo(
                    link=link,
                    transaction_id=content.transaction_id,
                    mm7_message_id=content.mm7_message_id,
                    fingerprint=content.fingerprint,
                    fields=event,
                    parts=content.parts,
                    relay=relay,
                    opt_out=opt_out,
                )
            )
        except Exception:
            bound.exception("mm7.mo.store_failed")
            raise HandlerError(4006, "the message could not be stored now; retry later") from None
        if self._on_stored is not None:
            self._on_stored(link, result.duplicate)
        if result.duplicate:
            bound.info("mm7.mo.duplicate", seen="store", mo_id=result.mo_id)
            return Status.of(1000)
        bound.info(
            "mm7.mo.stored",
            mo_id=result.mo_id,
            route=route.name if route is not None else None,
            parts=len(content.parts),
            opt_out=opt[0] if opt is not None else None,
        )
        if route is None:
            bound.warning("mm7.mo.unrouted", mo_id=result.mo_id)
        elif self._wake_relay is not None:
            self._wake_relay()
        return Status.of(1000)
