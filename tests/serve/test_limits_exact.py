"""The body-size limit as ASGI sees it: what is refused, when, and the exact 413 sent."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from kiln.serve.limits import BodyLimitMiddleware, _content_length

Message = dict[str, Any]


class Echo:
    """An ASGI app that reads the whole body, then answers 200 with its length."""

    def __init__(self, respond_first: bool = False) -> None:
        self.calls = 0
        self.respond_first = respond_first
        self.scopes: list[Any] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        self.scopes.append(scope)
        if self.respond_first:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        if not self.respond_first:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(size).encode()})


def _call(app: Any, chunks: list[bytes], headers: list[tuple[bytes, bytes]], kind: str = "http") -> list[Message]:
    messages: list[Message] = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)
    ]
    sent: list[Message] = []
    received = 0

    async def receive() -> Message:
        nonlocal received
        received += 1
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app({"type": kind, "headers": headers}, receive, send))
    sent.append({"type": "test.received", "count": received})
    return sent


def _refusal(limit: int, what: str) -> list[Message]:
    mb = limit / 2**20
    body = json.dumps({
        "error": f"{what}, over the limit of {limit} bytes ({mb:g} MiB, --max-body-mb); "
                 "send fewer instances per request",
    }).encode()
    return [
        {"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]},
        {"type": "http.response.body", "body": body},
    ]


def test_declared_length_over_the_limit_is_refused_unread() -> None:
    app = Echo()
    sent = _call(BodyLimitMiddleware(app, 10), [b"x" * 11], [(b"content-length", b"11")])
    assert sent[:-1] == _refusal(10, "the request body is 11 bytes")
    assert sent[-1]["count"] == 0 and app.calls == 0
    assert json.loads(sent[1]["body"])["error"] == (
        "the request body is 11 bytes, over the limit of 10 bytes (9.53674e-06 MiB, --max-body-mb); "
        "send fewer instances per request"
    )


def test_exactly_the_limit_passes() -> None:
    app = Echo()
    sent = _call(BodyLimitMiddleware(app, 10), [b"x" * 4, b"y" * 6], [(b"content-length", b"10")])
    assert [m.get("status") for m in sent[:2]] == [200, None] and sent[1]["body"] == b"10"
    assert app.scopes[0]["type"] == "http" and app.scopes[0]["headers"] == [(b"content-length", b"10")]


def test_an_undeclared_stream_is_cut_when_it_passes_the_limit() -> None:
    app = Echo()
    sent = _call(BodyLimitMiddleware(app, 2**20), [b"x" * 2**19, b"x" * 2**19, b"x", b"x"], [])
    assert sent[:-1] == _refusal(2**20, "the request body exceeds 1048576 bytes")
    assert b"(1 MiB, --max-body-mb)" in sent[1]["body"]
    assert sent[-1]["count"] == 3  # the fourth chunk is never read
    assert app.calls == 1


def test_an_under_declared_stream_is_cut_too() -> None:
    sent = _call(BodyLimitMiddleware(Echo(), 5), [b"abc", b"def"], [(b"content-length", b"3")])
    assert sent[:-1] == _refusal(5, "the request body exceeds 5 bytes")


def test_after_the_response_started_the_error_propagates() -> None:
    with pytest.raises(Exception) as err:
        _call(BodyLimitMiddleware(Echo(respond_first=True), 2), [b"abc"], [])
    assert type(err.value).__name__ == "_TooLarge"


def test_non_http_scopes_pass_through() -> None:
    app = Echo()
    sent = _call(BodyLimitMiddleware(app, 1), [b"abcdef"], [(b"content-length", b"6")], kind="websocket")
    assert app.calls == 1 and sent[1]["body"] == b"6" and app.scopes[0]["type"] == "websocket"


def test_content_length() -> None:
    assert _content_length({"headers": [(b"host", b"x"), (b"content-length", b"42")]}) == 42
    assert _content_length({"headers": [(b"content-length", b"lots")]}) is None
    assert _content_length({"headers": [(b"Content-Length", b"42")]}) is None  # ASGI lower-cases names
    assert _content_length({"headers": None}) is None
    assert _content_length({}) is None
