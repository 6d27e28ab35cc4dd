"""The request body limit of POST /graphql, enforced before the body reaches strawberry.

A declared Content-Length over the limit is refused without reading a byte; a chunked body is
read only up to the limit. Other routes keep their own limits (the bulk route allows 20 MB).
"""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.gateway.limits import MAX_REQUEST_BYTES


def _too_large(limit: int) -> bytes:
    return orjson.dumps(
        {
            "type": "about:blank",
            "title": "Payload too large",
            "status": 413,
            "detail": f"request body is larger than the limit of {limit} bytes",
            "errors": [{"path": "$", "message": f"max_request_bytes={limit}"}],
            "code": "PAYLOAD_TOO_LARGE",
        }
    )


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, path: str = "/graphql", limit: int = MAX_REQUEST_BYTES):
        self.app, self.path, self.limit = app, path, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") != self.path:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.limit:
                await self._refuse(send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        body = _too_large(self.limit)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
