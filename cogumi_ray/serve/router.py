"""The Router deployment: asks the RoutingPolicy which option answers, then forwards the request
to the Generator deployment under that option's multiplexed model id."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from cogumi_ray.serve.config import ServeConfig
from cogumi_ray.serve.policy import make_policy
from cogumi_ray.serve.protocol import BASE, Decision, GenerationRequest, Messages, Piece, Routed


def conversation(request: GenerationRequest) -> Messages:
    """What the policy reads: the chat messages, or a completion prompt as one user turn."""
    p = request.prompt
    return [{"role": "user", "content": p}] if isinstance(p, str) else p


class Router:
    def __init__(self, cfg_dict: dict[str, Any], generator: Any) -> None:
        from ray.serve import metrics

        self.policy = make_policy(ServeConfig.model_validate(cfg_dict))
        self.generator = generator  # DeploymentHandle of the ModelServer
        # Which option answers how often, in the Ray dashboard / Prometheus.
        self.routed = metrics.Counter("cogumi_routed_requests", tag_keys=("option", "stream"),
                                      description="Requests routed, by option (base or modifier).")

    def _decide(self, request: GenerationRequest, stream: bool) -> Decision:
        decision = self.policy.decide(conversation(request), request.model)
        self.routed.inc(tags={"option": decision.option, "stream": str(stream).lower()})
        return decision

    def _to(self, decision: Decision, stream: bool = False) -> Any:
        if decision.option == BASE:  # no model id: any replica may answer with the base
            return self.generator.options(stream=stream)
        return self.generator.options(multiplexed_model_id=decision.option, stream=stream)

    async def models(self) -> list[str]:
        return self.policy.models()

    async def _decide_off_loop(self, request: GenerationRequest, stream: bool) -> Decision:
        # A learned policy embeds the query (~20 ms of CPU): keep the replica's event loop free.
        import asyncio

        return await asyncio.to_thread(self._decide, request, stream)

    async def complete(self, request: GenerationRequest) -> Routed:
        decision = await self._decide_off_loop(request, stream=False)
        results = await self._to(decision).generate.remote(request)
        return Routed(decision, results)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Decision | Piece]:
        decision = await self._decide_off_loop(request, stream=True)
        yield decision
        async for piece in self._to(decision, stream=True).stream.remote(request):
            yield piece
