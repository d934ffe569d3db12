"""A hook receiver for the mo benchmark: an application endpoint that answers 200 to every POST.

    PYTHONPATH=tools python -m bench.hook     # prints "hook receiver on http://127.0.0.1:PORT/hook"

``GET /count`` answers {"posts": n, "distinct": distinct Idempotency-Keys, "bytes": total body
bytes}: what the gateway's relay delivered, and how many of those were retries.
"""

from __future__ import annotations

import sys

from aiohttp import web

from bench.proc import serve_until_signalled


def main() -> int:
    posts = 0
    size = 0
    keys: set[str] = set()

    async def hook(request: web.Request) -> web.Response:
        nonlocal posts, size
        body = await request.read()
        posts += 1
        size += len(body)
        keys.add(request.headers.get("Idempotency-Key", f"none-{posts}"))
        return web.Response(text="ok")

    async def count(request: web.Request) -> web.Response:
        return web.json_response({"posts": posts, "distinct": len(keys), "bytes": size})

    app = web.Application(client_max_size=256 * 1024 * 1024)
    app.router.add_post("/hook", hook)
    app.router.add_get("/count", count)
    serve_until_signalled(app, "hook receiver on http://127.0.0.1:{port}/hook")
    return 0


if __name__ == "__main__":
    sys.exit(main())
