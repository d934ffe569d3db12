"""The message's SMS fallback, resolved at intake (``mm7.service.fallback``): the request's
``fallback`` ("sms" | "none") over its link's, stored in the message's ``fields["fallback"]``
as the SMS link and text length to use, so that a later change of the configuration does not
change what an accepted message asked for."""

from __future__ import annotations

from typing import Any

from mm7.service.config.settings import LinkSettings
from mm7.service.errors import ApiError

__all__ = ["resolve_fallback"]


def resolve_fallback(link: LinkSettings, asked: str | None) -> dict[str, Any] | None:
    """``{"sms_link", "text_max"}`` when the message falls back to SMS, else None; 422 naming
    ``fallback`` when "sms" is asked but the link has no SMS link (``fallback_sms_link``)."""
    mode = asked if asked is not None else link.fallback
    if mode != "sms":
        return None
    if link.fallback_sms_link is None:
        raise ApiError(
            422,
            "fallback",
            f'"sms" asked, but link {link.name!r} has no SMS link to send it through '
            "(fallback_sms_link in its configuration)",
        )
    return {"sms_link": link.fallback_sms_link, "text_max": link.fallback_text_max}
