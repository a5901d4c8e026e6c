"""The Ingress deployment: the FastAPI app of `api.py` over deployment handles of the Router.

Ray's exceptions stop here: a ServeError raised anywhere downstream (policy, model server)
arrives wrapped in RayTaskErrors and is unwrapped so the client gets its status and message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from cogumi_ray.serve.config import ServeConfig
from cogumi_ray.serve.errors import ServeError
from cogumi_ray.serve.protocol import Decision, GenerationRequest, Piece, Routed
from cogumi_ray.serve.relay import relay


def unwrap(error: BaseException) -> BaseException:
    """The exception a replica raised, out of Ray's wrappers; Serve's overload errors and a
    replica that died under the request as 503 (retryable: Serve is starting a new one)."""
    from ray.exceptions import RayActorError, RayTaskError
    from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

    seen = 0
    while isinstance(error, RayTaskError) and error.cause is not None and seen < 8:
        error, seen = error.cause, seen + 1
    if isinstance(error, ServeError):
        return ServeError(*error.args)  # a plain copy, not Ray's dual-class wrapper
    if isinstance(error, (BackPressureError, DeploymentUnavailableError)):
        return ServeError(503, f"The model server is overloaded or starting: {error}",
                          type="server_error", code="unavailable", headers={"retry-after": "1"})
    if isinstance(error, RayActorError):  # a replica killed mid-request (OOM, node lost)
        return ServeError(503, "The model server restarted while answering; retry the request.",
                          type="server_error", code="unavailable", headers={"retry-after": "1"})
    return error


class HandleUpstream:
    """`protocol.Upstream` over the Router's DeploymentHandle."""

    def __init__(self, router: Any) -> None:
        self.router = router

    async def models(self) -> list[str]:
        try:
            return await self.router.models.remote()
        except Exception as e:
            raise unwrap(e) from None

    async def complete(self, request: GenerationRequest) -> Routed:
        try:
            return await self.router.complete.remote(request)
        except Exception as e:
            raise unwrap(e) from None

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Decision | Piece]:
        gen = self.router.options(stream=True).stream.remote(request)
        try:
            async with aclosing(relay(gen)) as items:  # abandoned (client gone): cancels it
                async for item in items:
                    yield item
        except Exception as e:
            raise unwrap(e) from None


class Ingress:
    def __init__(self, cfg_dict: dict[str, Any], key_digests: list[str], router: Any) -> None:
        self.cfg = ServeConfig.model_validate(cfg_dict)
        self.key_digests = frozenset(key_digests)
        self.upstream = HandleUpstream(router)

    def __serve_build_asgi_app__(self) -> Any:
        from cogumi_ray.serve.api import build_api

        return build_api(self.cfg, self.upstream, self.key_digests, echo_request_id=False)
