"""Which hook an MO goes to (the ``[[relay.routes]]``, in order), and stop/start words.

A route matches when every criterion it names matches (criteria it leaves empty match
anything); the first matching route wins, else ``[relay.default_route]``, else none (the MO is
stored as ``unrouted`` and answered 1000 all the same: the MMSC must not retry it forever).

- ``recipient_prefixes``: a recipient's number starts with one of them ('+', spaces, dashes,
  ``tel:`` and ``/TYPE=PLMN`` ignored; an e-mail address never matches);
- ``short_codes``: a recipient is exactly one of them (``/TYPE=...`` ignored);
- ``service_codes``: the MO's ServiceCode (a vendor element some MMSCs add) is one of them;
- ``applic_ids``: its ApplicID or ReplyApplicID is one of them;
- ``keywords``: the first word of its text, upper-cased, is one of them;
- ``links``: it arrived on one of these links.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from mm7.service.config.settings import RelayRoute, RelaySettings, RouteMatch

__all__ = ["MoFacts", "choose_route", "first_word", "opt_out_word", "status_hook_for"]

_WORD = re.compile(r"\S+")
_TRIM = ".,;:!?\"'()[]{}"


@dataclass(frozen=True, slots=True)
class MoFacts:
    """What routing looks at in an MO."""

    link: str
    recipients: Sequence[str]
    text: str | None = None
    service_code: str | None = None
    applic_id: str | None = None
    reply_applic_id: str | None = None


def first_word(text: str | None) -> str | None:
    """The first word of ``text``, upper-cased, without surrounding punctuation; None if none."""
    if not text:
        return None
    match = _WORD.search(text)
    if match is None:
        return None
    word = match.group(0).strip(_TRIM).upper()
    return word or None


_TYPE_SUFFIX = re.compile(r"/TYPE=[^/]*$", re.IGNORECASE)
_NUMBER = re.compile(r"\+?[0-9][0-9 ().-]*")


def _bare(address: str) -> str:
    """``address`` without its ``/TYPE=...`` suffix (any case) and surrounding blanks."""
    return _TYPE_SUFFIX.sub("", address.strip()).strip()


def _digits(address: str) -> str:
    """The digits of a phone number ("tel:" allowed); "" for anything else (an e-mail address's
    digits are not a number: "4915fan@example.com" must not match prefix 4915)."""
    text = _bare(address)
    if text[:4].lower() == "tel:":
        text = text[4:]
    return re.sub(r"[^0-9]", "", text) if _NUMBER.fullmatch(text) else ""


def _matches(match: RouteMatch, mo: MoFacts) -> bool:
    if match.links and mo.link not in match.links:
        return False
    if match.recipient_prefixes:
        prefixes = [p.lstrip("+") for p in match.recipient_prefixes]
        if not any(_digits(r).startswith(p) for r in mo.recipients for p in prefixes):
            return False
    if match.short_codes:
        bare = {_bare(r) for r in mo.recipients}
        if not bare & set(match.short_codes):
            return False
    if match.service_codes and mo.service_code not in match.service_codes:
        return False
    if match.applic_ids and not (
        mo.applic_id in match.applic_ids or mo.reply_applic_id in match.applic_ids
    ):
        return False
    return not (match.keywords and first_word(mo.text) not in match.keywords)


def choose_route(settings: RelaySettings, mo: MoFacts) -> RelayRoute | None:
    """The first route ``mo`` matches, else the default route, else None."""
    for route in settings.routes:
        if _matches(route.match, mo):
            return route
    return settings.default_route


def opt_out_word(
    settings: RelaySettings, text: str | None
) -> tuple[Literal["stop", "start"], str] | None:
    """("stop", word) or ("start", word) when the WHOLE text is one of the configured words.

    Only the whole text counts (trimmed, case-insensitive, trailing punctuation ignored): "stop"
    opts out, "Stop sending me ads" is an ordinary message for the application to read.
    """
    if not text:
        return None
    word = text.strip().strip(_TRIM).upper()
    if not word or _WORD.fullmatch(word) is None:
        return None
    if word in settings.stop_words:
        return "stop", word
    if word in settings.start_words:
        return "start", word
    return None


def status_hook_for(settings: RelaySettings, link: str | None) -> str | None:
    """The hook for status events of ``link``'s messages that have no callback_url.

    The first route with a ``status_hook`` whose ``links`` name the link, else the default
    route's ``status_hook``.
    """
    for route in settings.routes:
        if route.status_hook and link is not None and link in route.match.links:
            return route.status_hook
    if settings.default_route is not None:
        return settings.default_route.status_hook
    return None
