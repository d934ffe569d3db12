"""The application-facing HTTP API: send messages, read their status, operate the relay.

- ``app``: ``create_api_app``: ``POST /v1/messages`` (JSON or multipart), ``GET`` of a message,
  the Kannel/Mbuni-style ``sendmms``, the OpenAPI document (``openapi.json`` beside it);
- ``validate``: every request field checked, each refusal a 4xx naming the field (``ApiError``);
- ``numbers``: recipients as the carrier takes them (libphonenumber, E.164, short codes, e-mail);
- ``relay_ops``: the relay's operator endpoints (events, dead letters, suppressions, MOs);
- ``media_fetch``: media given by URL, fetched under size, time and address limits;
- ``backlog``: back-pressure, 503 + Retry-After while a link's queue is over ``max_backlog``.
"""

from mm7.service.api.app import OPENAPI_PATH, create_api_app, message_view

__all__ = ["OPENAPI_PATH", "create_api_app", "message_view"]
