"""The Ingress deployment: the FastAPI app of `api.py` over deployment handles of the Router
(and of the Generator, which a request naming its option reaches directly: `serve.direct_forced`;
a Router that keeps sessions records that turn meanwhile).

Ray's exceptions stop here: a ServeError raised anywhere downstream (policy, model server)
arrives wrapped in RayTaskErrors and is unwrapped so the client gets its status and message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from cogumi_ray.serve.config import ServeConfig
from cogumi_ray.serve.dispatch import on_replica_transport, relay, routed_counter, to_generator
from cogumi_ray.serve.errors import ServeError
from cogumi_ray.serve.policy import ROUTED, NamePolicy
from cogumi_ray.serve.protocol import Decision, GenerationRequest, Piece, Routed
from cogumi_ray.serve.router import conversation

log = logging.getLogger(__name__)


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
    """`protocol.Upstream` over the Router's DeploymentHandle. Given the Generator's handle and
    the name lookup, a request that names its option goes to the Generator directly; with
    `notes`, the Router records its turn meanwhile (and forgets it if no answer comes)."""

    def __init__(self, router: Any, generator: Any = None, names: NamePolicy | None = None,
                 notes: bool = False) -> None:
        self.router, self.generator, self.names, self.notes = router, generator, names, notes
        self.routed = routed_counter() if names is not None and not notes else None

    def _forced(self, request: GenerationRequest, stream: bool) -> tuple[Decision, Any] | None:
        """(the option a request names, the Router's note of its turn or None) when the request
        skips the Router; None when the Router decides."""
        if self.names is None or request.model == ROUTED:
            return None
        decision = self.names.decide(conversation(request), request.model)  # 404 if unknown
        if self.notes:  # the Router counts it as it records it, on its own replica
            return decision, self.router.note.remote(request, stream)
        assert self.routed is not None
        self.routed.inc(tags={"option": decision.option, "stream": str(stream).lower()})
        return decision, None

    @staticmethod
    async def _settle(note: Any) -> None:
        """The answer is out: a turn the Router failed to record costs the client nothing."""
        try:
            await note
        except Exception as e:
            log.warning("recording a forced turn failed: %s: %s", type(e).__name__, unwrap(e))

    async def _unnote(self, note: Any) -> None:
        """The Generator failed: once the note is written, the Router deletes the turn."""
        with contextlib.suppress(Exception):  # the client's error matters more than this row
            await note
            await self.router.forget.remote()

    async def models(self) -> list[str]:
        try:
            return await self.router.models.remote()
        except Exception as e:
            raise unwrap(e) from None

    async def complete(self, request: GenerationRequest) -> Routed:
        try:
            forced = self._forced(request, False)
            if forced is None:
                return await self.router.complete.remote(request)
            decision, note = forced
            try:
                results = await to_generator(self.generator, decision).generate.remote(request)
            except BaseException:  # failed, timed out or cancelled: no answer, no turn
                if note is not None:
                    await asyncio.shield(self._unnote(note))
                raise
            if note is not None:
                await self._settle(note)
            return Routed(decision, results)
        except Exception as e:
            raise unwrap(e) from None

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Decision | Piece]:
        try:
            forced = self._forced(request, True)
            if forced is None:
                note = None
                gen = self.router.options(stream=True).stream.remote(request)
            else:
                decision, note = forced
                gen = to_generator(self.generator, decision, stream=True).stream.remote(request)
                try:
                    yield decision  # as the Router does: the decision first, then the pieces
                except BaseException:  # the client left already
                    gen.cancel()
                    raise
            answered = False  # once a piece is out the client has (part of) the answer: keep it
            try:
                async with aclosing(relay(gen)) as items:  # abandoned (client gone): cancels it
                    async for item in items:
                        answered = True
                        yield item
            except Exception:
                if note is not None and not answered:
                    await self._unnote(note)
                raise
            if note is not None:
                await self._settle(note)
        except Exception as e:
            raise unwrap(e) from None


class Ingress:
    def __init__(self, cfg_dict: dict[str, Any], key_digests: list[str], router: Any,
                 generator: Any = None) -> None:
        self.cfg = ServeConfig.model_validate(cfg_dict)
        self.key_digests = frozenset(key_digests)
        names = None
        if generator is not None:  # bound only when cfg.direct_forced
            names = NamePolicy(self.cfg.served_base_name(), list(self.cfg.adapters))
            generator = on_replica_transport(generator)
        self.upstream = HandleUpstream(on_replica_transport(router), generator, names,
                                       self.cfg.router_keeps_sessions)

    def __serve_build_asgi_app__(self) -> Any:
        from cogumi_ray.serve.api import build_api

        return build_api(self.cfg, self.upstream, self.key_digests, echo_request_id=False)
