"""A request-body size limit that holds before the body is read (frameworks set none by default).

A declared ``Content-Length`` over the limit is refused at once, without reading a byte of the
body. A chunked or under-declared body is counted as it streams in and refused as soon as the count
passes the limit, so the server never buffers more than ``limit`` bytes of one request.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class _TooLarge(Exception):
    """Raised from ``receive`` inside the app; caught by the middleware, never seen by a user."""


class BodyLimitMiddleware:
    """Pure ASGI middleware answering 413 for bodies over ``limit`` bytes."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await self._refuse(send, f"the request body is {declared} bytes")
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if started:  # too late to answer; the connection is dropped instead
                raise
            await self._refuse(send, f"the request body exceeds {self.limit} bytes")

    async def _refuse(self, send: Send, what: str) -> None:
        mb = self.limit / 2**20
        body = json.dumps({
            "error": f"{what}, over the limit of {self.limit} bytes ({mb:g} MiB, --max-body-mb); "
                     "send fewer instances per request",
        }).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    headers: Any = scope.get("headers") or []
    for key, value in headers:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
