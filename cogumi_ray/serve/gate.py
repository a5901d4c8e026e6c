"""ASGI middleware in front of every /v1 route: request id, API key, rate limit, body size.

It runs before FastAPI reads or parses the body, so an unauthenticated or oversized request is
refused without any work (and a malformed body from a stranger gets 401, not 400).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cogumi_ray.serve.config import LimitsConfig
from cogumi_ray.serve.errors import ServeError
from cogumi_ray.serve.limits import Authenticator, RateLimiter, check_body_size

_CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")  # an x-request-id we echo back as given


def error_response(err: ServeError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers)


class Gate:
    def __init__(self, app: ASGIApp, auth: Authenticator, limiter: RateLimiter,
                 limits: LimitsConfig, protected_prefix: str = "/v1",
                 echo_request_id: bool = True) -> None:
        self.app = app
        self.echo = echo_request_id
        self.auth = auth
        self.limiter = limiter
        self.limits = limits
        self.prefix = protected_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        given = headers.get("x-request-id", "")
        rid = given if _CLIENT_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if self.echo and message["type"] == "http.response.start":
                MutableHeaders(scope=message)["x-request-id"] = rid
            await send(message)

        # Under a route prefix Serve keeps it in `path` and names it in `root_path`.
        path, root = scope["path"], scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        if not path.startswith(self.prefix):
            await self.app(scope, receive, send_with_id)
            return
        try:
            key = self.auth.check(headers.get("authorization"))
            client = scope.get("client") or ("?", 0)
            self.limiter.check(key or f"addr:{client[0]}")
            declared = headers.get("content-length")
            if declared is not None and declared.isdigit():
                check_body_size(int(declared), self.limits)
            body = await self._read_body(receive)
        except ServeError as e:
            await error_response(e)(scope, receive, send_with_id)
            return
        await self.app(scope, _replay(body, receive), send_with_id)

    async def _read_body(self, receive: Receive) -> bytes:
        """The whole body, refused as soon as it outgrows the limit (chunked uploads too)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            check_body_size(size, self.limits)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive() that hands the buffered body to the app once, then waits on the client."""
    sent = False

    async def replay() -> Any:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # http.disconnect, for streaming responses

    return replay
