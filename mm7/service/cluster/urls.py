"""URLs a cluster hands out must name the load balancer, not the instance that made them.

    keys = unset_url_bases(config)   # e.g. ("relay.media_url_base",): warn once at start

Unset, ``[relay] media_url_base`` (MO media URLs given to applications) and ``[hosting]
url_base`` (hosted pages' links sent to handsets; it falls back to ``media_url_base`` first)
name the API listen address of whichever instance made the URL. With one process that is the
gateway; with several instances on PostgreSQL such a URL breaks while that one is down, though
any instance could serve it (media and pages are in the store).
"""

from __future__ import annotations

from mm7.service.config.settings import GatewayConfig

__all__ = ["HOSTING_URL_BASE", "MEDIA_URL_BASE", "unset_url_bases"]

#: the key of MO media URLs' base, as configuration errors name keys
MEDIA_URL_BASE = "relay.media_url_base"
#: the key of hosted pages' base
HOSTING_URL_BASE = "hosting.url_base"


def unset_url_bases(config: GatewayConfig) -> tuple[str, ...]:
    """The URL base keys a cluster needs and ``config`` leaves unset, for features in use:
    media URLs when a relay route delivers media as URLs, pages when hosting is enabled.
    Empty on SQLite (one process: its own address is the gateway's)."""
    if config.store.backend != "postgresql":
        return ()
    relay = config.relay
    keys: list[str] = []
    routes = (*relay.routes, *((relay.default_route,) if relay.default_route else ()))
    if relay.media_url_base is None and any(route.media == "url" for route in routes):
        keys.append(MEDIA_URL_BASE)
    hosting = config.hosting
    if hosting.enabled and not hosting.url_base and not relay.media_url_base:
        keys.append(HOSTING_URL_BASE)
    return tuple(keys)
