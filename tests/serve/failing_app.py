"""An ASGI app whose start-up fails, as a worker's does when its model cannot be served after all;
spawned workers import it by name."""

from __future__ import annotations

from typing import Any


def create() -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.failed", "message": "no model to serve"})

    return app
