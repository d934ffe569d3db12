"""Several gateway instances on one shared store (issue 14).

- ``ownership``: the named leases an instance holds (``link:<name>``, ``relay``, ``retention``):
  one instance at a time dispatches a link, relays, runs retention; claimed, renewed, lost and
  given up on the store's ``claim`` / ``give_up``;
- ``dedupe``: inbound duplicate detection over the store's request keys, so that a retry is
  recognised whichever instance answered the first attempt;
- ``urls``: the URL base keys a cluster needs set (``[relay] media_url_base``, ``[hosting]
  url_base``), warned about once at start when unset on PostgreSQL;
- ``workers``: ``mm7 serve --workers N``, N processes on one host sharing the listeners
  (SO_REUSEPORT) under a supervising parent.
"""
