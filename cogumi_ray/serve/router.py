"""The Router deployment: asks the RoutingPolicy which option answers, then forwards the request
to the Generator deployment under that option's multiplexed model id.

With session memory, a turn the base answers in a session that has mostly needed a modifier so
far also pre-loads that modifier on a Generator replica (`warm`, not awaited): the session's next
turn, likely routed back to it, then finds its adapter loaded. The policy records a turn when it
decides; a request that then fails before any answer reaches the client (a Generator replica
killed under it: a 503 the client retries) has its turn deleted again, so the store holds the
answered turns only, each once.

A progressive learned policy starts every routed turn with the base, then re-decides after each of
its steps (`LearnedPolicy.progress`); a switch hands the whole answer to that modifier. When the
router was trained with the base's calibrated confidence (`route.confidence`) and
serve.calibrator_path is set, the Generator first runs one greedy probe of max(steps) base tokens
on the last user message (as the router stage read its rows) and the router reads the confidence
after each step. A cut policy, and every request a policy does not route, costs nothing extra; a
failed probe leaves the base answering.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from cogumi_ray.serve.config import ServeConfig
from cogumi_ray.serve.dispatch import on_replica_transport, relay, routed_counter, to_generator
from cogumi_ray.serve.policy import ROUTED, make_policy
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

        from cogumi_ray.route.policy import LearnedPolicy, ProgressivePolicy

        cfg = ServeConfig.model_validate(cfg_dict)
        self.policy = make_policy(cfg)
        learned = self.policy if isinstance(self.policy, LearnedPolicy) else None
        if learned is not None:
            learned.warm()  # the first routed request would otherwise load the embedding model
        # Only a learned policy with a session store knows sessions and request ids.
        self.learned: LearnedPolicy | None = learned if learned is not None and learned.memory else None
        # A progressive one re-decides a base start after each step, reading the base's confidence
        # when it was trained with it and a calibrator is configured.
        self.progressive: LearnedPolicy | None = (
            learned if learned is not None and isinstance(learned.rule, ProgressivePolicy) else None)
        self._probe = self.progressive is not None and self.progressive.reads_confidence
        if self._probe and not cfg.calibrator_path:
            log.warning("the router was trained with the base's confidence but serve.calibrator_path "
                        "is not set (the compress stage's calibrator.json): it decides with its "
                        "training mean instead")
            self._probe = False
        self.modifiers = frozenset(cfg.adapters)
        self.generator = on_replica_transport(generator)  # DeploymentHandle of the ModelServer
        self.routed = routed_counter()
        self._requests = 0  # complete + stream calls this replica took
        self._notes = 0  # forced turns recorded while the Ingress had them answered
        self._warmups_metric = metrics.Counter(
            "cogumi_adapter_warmups", tag_keys=("adapter",),
            description="Adapters pre-loaded for a session likely to need them again.")
        self._warmups: dict[str, int] = {}
        self._switch_metric = metrics.Counter(
            "cogumi_progressive_switches", tag_keys=("option", "step"),
            description="Routed turns a progressive policy switched from the base to a modifier.")
        self._probe_metric = metrics.Histogram(
            "cogumi_confidence_probe_seconds", description="The base-confidence probe of a routed turn.",
            boundaries=[0.01, 0.03, 0.1, 0.3, 1.0, 3.0])
        self._switches: dict[str, int] = {}  # "<option>@<step tokens>" -> turns
        self._probe_failures = 0
        self._warming: set[asyncio.Task[None]] = set()  # referenced until done (else collected)

    def _decide(self, request: GenerationRequest, rid: str | None) -> tuple[Decision, str | None]:
        """The decision, and the option this session has most needed (None = unknown)."""
        messages = conversation(request)
        if self.learned is None:
            return self.policy.decide(messages, request.model), None
        likely = self.learned.likely_option(messages)  # read before this turn is recorded
        return self.learned.decide(messages, request.model, request_id=rid), likely

    async def models(self) -> list[str]:
        return self.policy.models()

    async def stats(self) -> dict[str, Any]:
        """This replica's counters (tests and operators reach it with a deployment handle)."""
        return {"requests": self._requests, "notes": self._notes, "warmups": dict(self._warmups),
                "expired_sessions": self.learned.expired if self.learned is not None else 0,
                "progressive_switches": dict(self._switches),
                "confidence_probe_failures": self._probe_failures}

    async def _decide_off_loop(self, request: GenerationRequest, stream: bool,
                               rid: str | None) -> Decision:
        # A learned policy embeds the query (~20 ms of CPU) and writes SQLite: keep the replica's
        # event loop free.
        decision, likely = await asyncio.to_thread(self._decide, request, rid)
        if self.progressive is not None and request.model == ROUTED and decision.option == BASE:
            decision = await self._progress(conversation(request), decision)
        self.routed.inc(tags={"option": decision.option, "stream": str(stream).lower()})
        if decision.option == BASE and likely in self.modifiers:
            self._warm(likely)  # type: ignore[arg-type]
        return decision

    async def _progress(self, messages: Messages, start: Decision) -> Decision:
        """The progressive policy after each step: the first modifier it switches to, or `start`
        (the base). A failed probe or re-decision keeps the base: the client still gets an answer."""
        policy = self.progressive
        assert policy is not None
        steps: tuple[int, ...] = policy.rule.steps  # type: ignore[union-attr]
        confidence: dict[int, float] = {}  # step tokens -> the base's confidence by then
        if self._probe:
            try:
                confidence = await self._probe_confidence(messages, steps)
            except Exception as e:  # replica gone, prompt too long, ...: not worth a failed request
                self._probe_failures += 1
                log.warning("base-confidence probe failed, the base answers: %s: %s",
                            type(e).__name__, e)
                return start

        def redecide() -> Decision | None:  # embeds and writes SQLite: off the event loop
            for step, k in enumerate(steps):
                switch = policy.progress(messages, step, policy.confidence_extras(confidence.get(k)))
                if switch is not None:
                    return dataclasses.replace(switch, switched_after=k)
            return None

        try:
            switched = await asyncio.to_thread(redecide)
        except Exception:
            log.exception("progressive re-decision failed; the base answers")
            return start
        if switched is None:
            return start
        key = f"{switched.option}@{switched.switched_after}"
        self._switches[key] = self._switches.get(key, 0) + 1
        self._switch_metric.inc(tags={"option": switched.option, "step": str(switched.switched_after)})
        return switched

    async def _probe_confidence(self, messages: Messages, steps: tuple[int, ...]) -> dict[int, float]:
        """{k: the base's calibrated confidence after k tokens} for each step k >= 1 (after 0 tokens
        nothing is known). The Generator reads the last user message alone, chat-formatted, as the
        router stage read its training rows; {} when it cannot probe (it logs why)."""
        from cogumi_ray.route.policy import last_user_text

        ks = [k for k in steps if k >= 1]
        if not ks:
            return {}
        t0 = time.perf_counter()
        query = [{"role": "user", "content": last_user_text(messages)}]
        got = await self.generator.options().base_confidence.remote(query, ks)
        self._probe_metric.observe(time.perf_counter() - t0)
        if got is None:
            log.warning("the Generator cannot read the base's confidence (see its log); the "
                        "router decides with its training mean from now on")
            self._probe = False
            return {}
        if len(got) != len(ks):
            raise ValueError(f"the probe returned {len(got)} confidences for steps {ks}")
        return dict(zip(ks, (float(c) for c in got), strict=True))

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
        self._requests += 1
        rid = request_id()
        decision = await self._decide_off_loop(request, False, rid)
        try:
            results = await to_generator(self.generator, decision).generate.remote(request)
        except BaseException:  # failed, timed out or cancelled: the client got no answer
            await asyncio.shield(self._forget(rid))
            raise
        return Routed(decision, results)

    async def note(self, request: GenerationRequest, stream: bool) -> None:
        """A forced request that the Ingress sends to the Generator itself: its turn is recorded
        here (session state, request id, counters, adapter pre-load) while it is answered."""
        self._notes += 1
        await self._decide_off_loop(request, stream, request_id())

    async def forget(self) -> None:
        """Undo this request's noted turn: the Generator failed before answering it."""
        await self._forget(request_id())

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Decision | Piece]:
        self._requests += 1
        rid = request_id()
        decision = await self._decide_off_loop(request, True, rid)
        yield decision
        answered = False  # once a piece is out, the client has (part of) the answer: keep the turn
        try:
            call = to_generator(self.generator, decision, stream=True).stream.remote(request)
            async with aclosing(relay(call)) as pieces:  # a hang-up stops the model server
                async for piece in pieces:
                    answered = True
                    yield piece
        except Exception:
            if not answered:
                await self._forget(rid)
            raise
