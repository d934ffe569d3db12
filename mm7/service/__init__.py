"""The gateway service: durable store, sending API, per-link dispatch and the inbound relay.

This layer sits on top of ``mm7.transport``, ``mm7.content`` and ``mm7.core`` and may import
them; nothing below imports from here. One room per concern:

- ``runtime`` (``Gateway``: every piece of ``mm7 serve`` wired together), ``cli`` (``mm7 serve``,
  ``send``, ``demo``, ``relay``), ``demo``: the process and its commands, on top;
- ``api/``: the application-facing HTTP API (send, read status, operate the relay);
- ``mt/``: application to handset: lease, build, submit, decide the outcome (``outcome``),
  correlate delivery reports;
- ``hosting/``: each MT message's content as a web page behind a signed, expiring link (the
  text + link sent when a message cannot fit its link's profile), below ``mt/`` and ``api/``;
- ``relay/``: handset to application: MO ingest, routing, and the signed delivery of MOs and
  status events to applications' hooks;
- ``store/``: the ``Store`` protocol, its records and its backends (``store/sqlite/``), the
  foundation the API, the dispatchers and the relay build on;
- ``config/``: gateway.toml read into typed settings; ``ops/``: metrics, health, logs;
- ``errors`` (the layer's error tree, all ``MM7Error``) and ``backoff`` (the retry delay the MT
  and relay paths share).
"""
