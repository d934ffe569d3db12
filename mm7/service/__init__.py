"""The gateway service: durable store, sending API, per-link dispatch and the inbound relay.

This layer sits on top of ``mm7.transport``, ``mm7.content`` and ``mm7.core`` and may import
them; nothing below imports from here. ``mm7.service.store`` is the persistence foundation that
the API, the dispatchers and the relay build on.
"""
