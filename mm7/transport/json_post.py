"""A blocking JSON POST for command-line tools talking to a local control API (mm7 send,
mm7 simulate mo): one place for the request, the error mapping and the JSON-object check."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from mm7.core.errors import MM7Error

__all__ = ["JSONPostError", "post_json"]


class JSONPostError(MM7Error):
    """The POST failed: ``http_status`` and ``body`` when the server answered with an error."""

    def __init__(self, message: str, *, http_status: int | None = None, body: bytes = b"") -> None:
        super().__init__(message)
        self.http_status = http_status
        self.body = body


def post_json(
    url: str,
    payload: Mapping[str, Any],
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    context: ssl.SSLContext | None = None,
    who: str = "the server",
) -> dict[str, Any]:
    """POST ``payload`` as JSON to ``url``: the JSON object answered, or JSONPostError (why)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    try:
        # an operator-given URL of a tool's own API, not user input
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310
            raw = response.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
        raise JSONPostError(
            f"{who} answered HTTP {exc.code}", http_status=exc.code, body=body
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        raise JSONPostError(f"cannot reach {who} at {url}: {exc}") from None
    try:
        answer = json.loads(raw)
    except ValueError:
        raise JSONPostError(f"{who}'s answer is not JSON") from None
    if not isinstance(answer, dict):
        raise JSONPostError(f"{who}'s answer is not a JSON object")
    return answer
