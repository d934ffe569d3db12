"""The SMS links of ``[sms_links.NAME]`` as the gateway runs them for the fallback: made from
their settings, their dlr-url endpoints mounted on the API's listener (HTTP links), and how long
one send can take (the fallback's ``sending`` lease outlives it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from urllib.parse import quote

from aiohttp import web

from mm7.service.config.settings import HttpSmsSettings, SmppSettings, SmsLinkSettings
from mm7.service.errors import ConfigError
from mm7.service.sms.http import DLR_PATH, HttpSmsLink
from mm7.service.sms.link import SmsLink

__all__ = ["add_dlr_routes", "make_sms_links", "no_plus", "send_ttl"]

#: added to the longest a send can take, for the ``sending`` lease
SEND_MARGIN = 30.0
#: parts of a long text counted in the longest send (each part waits up to the link's timeout)
_PARTS = 4


def make_sms_links(settings: Sequence[SmsLinkSettings]) -> dict[str, SmsLink]:
    """One ``SmsLink`` per entry, by name (not started). SMPP needs the ``sms`` extra."""
    links: dict[str, SmsLink] = {}
    for entry in settings:
        if isinstance(entry, HttpSmsSettings):
            links[entry.name] = HttpSmsLink(entry)
            continue
        try:
            from mm7.service.sms.smpp import SmppLink
        except ImportError:
            raise ConfigError(
                f'sms_links.{entry.name}: type = "smpp" needs the smpp34 package '
                "(pip install 'mm7[sms]')"
            ) from None
        links[entry.name] = SmppLink(entry)
    return links


def add_dlr_routes(app: web.Application, links: Mapping[str, SmsLink]) -> list[str]:
    """Mount each HTTP link's dlr-url endpoint (``DLR_PATH``) on ``app``; the paths mounted."""
    paths = []
    for name, link in links.items():
        if isinstance(link, HttpSmsLink):
            path = DLR_PATH.format(link=quote(name, safe=""), sms_id="{sms_id}")
            app.router.add_get(path, link.dlr_handler)
            paths.append(path)
    return paths


def no_plus(settings: Sequence[SmsLinkSettings]) -> frozenset[str]:
    """SMPP links whose destinations are international numbers (TON 1): written without '+'."""
    return frozenset(s.name for s in settings if isinstance(s, SmppSettings) and s.dest_ton == 1)


def send_ttl(settings: Sequence[SmsLinkSettings]) -> timedelta:
    """Longer than any send can take on these links (a long text's parts each wait up to the
    link's timeout), plus ``SEND_MARGIN``."""
    longest = max(
        (s.send_timeout if isinstance(s, SmppSettings) else s.timeout for s in settings),
        default=10.0,
    )
    return timedelta(seconds=longest * _PARTS + SEND_MARGIN)
