"""The Router deployment: asks the RoutingPolicy which option answers, then forwards the request
to the Generator deployment under that option's multiplexed model id.

With session memory, a turn the base answers in a session that has mostly needed a modifier so
far also pre-loads that modifier on a Generator replica (`warm`, not awaited): the session's next
turn, likely routed back to it, then finds its adapter loaded. The policy records a turn when it
decides; a request that then fails before any answer reaches the client (a Generator replica
killed under it: a 503 the client retries) has its turn deleted again, so the store holds the
answered turns only, each once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from cogumi_ray.serve.config import ServeConfig
from cogumi_ray.serve.policy import make_policy
from cogumi_ray.serve.protocol import (
    BASE,
    Decision,
    GenerationRequest,
    Messages,
    Piece,
    Routed,
)

if TYPE_CHECKING:
    from cogumi_ray.route.policy import LearnedPolicy

log = logging.getLogger(__name__)


def conversation(request: GenerationRequest) -> Messages:
    """What the policy reads: the chat messages, or a completion prompt as one user turn."""
    p = request.prompt
    return [{"role": "user", "content": p}] if isinstance(p, str) else p


def request_id() -> str | None:
    """The HTTP request's id (Serve carries the proxy's x-request-id along handle calls); the
    answer's `id` is built from the same one, so a rating of it can find this turn."""
    try:
        from ray.serve.context import _get_serve_request_context

        return _get_serve_request_context().request_id or None
    except Exception:  # outside a replica, or Ray moved its internals: the turn just has none
        return None


class Router:
    def __init__(self, cfg_dict: dict[str, Any], generator: Any) -> None:
        from ray.serve import metrics

        from cogumi_ray.route.policy import LearnedPolicy

        cfg = ServeConfig.model_validate(cfg_dict)
        self.policy = make_policy(cfg)
        # Only a learned policy with a session store knows sessions and request ids.
        self.learned: LearnedPolicy | None = (
            self.policy if isinstance(self.policy, LearnedPolicy) and self.policy.memory else None)
        self.modifiers = frozenset(cfg.adapters)
        self.generator = generator  # DeploymentHandle of the ModelServer
        # Which option answers how often, in the Ray dashboard / Prometheus.
        self.routed = metrics.Counter("cogumi_routed_requests", tag_keys=("option", "stream"),
                                      description="Requests routed, by option (base or modifier).")
        self._warmups_metric = metrics.Counter(
            "cogumi_adapter_warmups", tag_keys=("adapter",),
            description="Adapters pre-loaded for a session likely to need them again.")
        self._warmups: dict[str, int] = {}
        self._warming: set[asyncio.Task[None]] = set()  # referenced until done (else collected)

    def _decide(self, request: GenerationRequest, stream: bool,
                rid: str | None) -> tuple[Decision, str | None]:
        """The decision, and the modifier to pre-load (None = none)."""
        messages = conversation(request)
        if self.learned is None:
            decision = self.policy.decide(messages, request.model)
            likely = None
        else:
            likely = self.learned.likely_option(messages)  # read before this turn is recorded
            decision = self.learned.decide(messages, request.model, request_id=rid)
        self.routed.inc(tags={"option": decision.option, "stream": str(stream).lower()})
        warm = likely if decision.option == BASE and likely in self.modifiers else None
        return decision, warm

    def _to(self, decision: Decision, stream: bool = False) -> Any:
        if decision.option == BASE:  # no model id: any replica may answer with the base
            return self.generator.options(stream=stream)
        return self.generator.options(multiplexed_model_id=decision.option, stream=stream)

    async def models(self) -> list[str]:
        return self.policy.models()

    async def stats(self) -> dict[str, Any]:
        """This replica's counters (tests and operators reach it with a deployment handle)."""
        return {"warmups": dict(self._warmups),
                "expired_sessions": self.learned.expired if self.learned is not None else 0}

    async def _decide_off_loop(self, request: GenerationRequest, stream: bool,
                               rid: str | None) -> Decision:
        # A learned policy embeds the query (~20 ms of CPU) and writes SQLite: keep the replica's
        # event loop free.
        decision, warm = await asyncio.to_thread(self._decide, request, stream, rid)
        if warm is not None:
            self._warm(warm)
        return decision

    async def _forget(self, rid: str | None) -> None:
        """Undo the turn recorded for request `rid`, which got no answer."""
        if self.learned is None or self.learned.memory is None or rid is None:
            return
        try:
            gone = await asyncio.to_thread(self.learned.memory.forget, rid)
        except Exception as e:  # the error the client gets matters more than this row
            log.warning("request %s failed; deleting its recorded turn failed too: %s", rid, e)
            return
        log.info("request %s failed before answering; %d recorded turn(s) deleted", rid, gone)

    def _warm(self, adapter: str) -> None:
        self._warmups[adapter] = self._warmups.get(adapter, 0) + 1
        self._warmups_metric.inc(tags={"adapter": adapter})
        task = asyncio.get_running_loop().create_task(self._warm_call(adapter))
        self._warming.add(task)
        task.add_done_callback(self._warming.discard)

    async def _warm_call(self, adapter: str) -> None:
        try:
            await self.generator.options(multiplexed_model_id=adapter).warm.remote()
        except Exception as e:  # a missed pre-load only costs the next turn the load
            log.warning("pre-loading adapter %s failed: %s", adapter, e)

    async def complete(self, request: GenerationRequest) -> Routed:
        rid = request_id()
        decision = await self._decide_off_loop(request, False, rid)
        try:
            results = await self._to(decision).generate.remote(request)
        except BaseException:  # failed, timed out or cancelled: the client got no answer
            await asyncio.shield(self._forget(rid))
            raise
        return Routed(decision, results)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Decision | Piece]:
        rid = request_id()
        decision = await self._decide_off_loop(request, True, rid)
        yield decision
        answered = False  # once a piece is out, the client has (part of) the answer: keep the turn
        try:
            async for piece in self._to(decision, stream=True).stream.remote(request):
                answered = True
                yield piece
        except Exception:
            if not answered:
                await self._forget(rid)
            raise
