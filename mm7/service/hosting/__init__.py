"""Hosted media: an MT message's content as a small web page behind a signed, expiring link.

- ``links``: ``HostedLinks``, the tokens and URLs (``{base}/m/<token>``): ``page_url(message_id,
  created_at)`` and ``url_for(store, message_id)`` give a message's page URL, ``read`` checks a
  token;
- ``page``: the page's HTML (slides in order, media inline, every text escaped, a strict CSP);
- ``routes``: ``add_hosting_routes``, the page and its parts on the API's listener.

The dispatcher sends the page's URL as text when a link's profile says ``too_big = "link"`` and
nothing makes the message fit (``mm7.service.mt.submit_build``); ``GET /v1/messages/{id}``
shows it as ``hosted_url``. Retention removes a page with its message.
"""

from mm7.service.hosting.links import PAGE_PATH, HostedLinks, HostedToken
from mm7.service.hosting.routes import PresentationLoader, add_hosting_routes

__all__ = ["PAGE_PATH", "HostedLinks", "HostedToken", "PresentationLoader", "add_hosting_routes"]
