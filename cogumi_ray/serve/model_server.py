"""The Generator deployment: one backend per replica, adapters multiplexed by Ray Serve.

The multiplexed model id is the modifier name ("" = the base). Serve sends a request for a
modifier to a replica that already holds it and, past `max_adapters_per_replica`, evicts the
least recently used adapter of that replica (its `_Held.__del__` unloads it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from cogumi_ray.generate.config import GenParams
from cogumi_ray.serve.config import ServeConfig
from cogumi_ray.serve.protocol import (
    BASE,
    ConfidenceProbe,
    GenerationRequest,
    Generator,
    GenResult,
    Messages,
    Piece,
)
from cogumi_ray.serve.threads import iterate_in_thread

log = logging.getLogger(__name__)


class _Held:
    """An adapter as Serve's multiplexer sees it; unloaded once when evicted."""

    def __init__(self, backend: Generator, name: str) -> None:
        self.backend = backend
        self.name = name
        self.released = False

    def __del__(self) -> None:
        # Serve calls this on eviction, and Python again when the object is collected.
        if not self.released:
            self.released = True
            self.backend.unload_adapter(self.name)


def choice_params(params: GenParams, i: int) -> GenParams:
    return params if i == 0 else params.model_copy(update={"seed": params.seed + i})


class ModelServer:
    def __init__(self, cfg_dict: dict[str, Any]) -> None:
        from ray import serve
        from ray.serve import metrics

        from cogumi_ray.serve.backends import make_generator

        cfg = ServeConfig.model_validate(cfg_dict)
        if cfg.backend == "llama_cpp" and cfg.llama_cpp.n_threads is None:
            # Serve sets OMP_NUM_THREADS to the replica's CPUs but llama.cpp ignores it.
            threads = max(1, int(cfg.generator.num_cpus))
            cfg.llama_cpp = cfg.llama_cpp.model_copy(update={"n_threads": threads})
        self.backend = make_generator(cfg)
        # Adapter loads (a multiplexer miss): per request would mean the swap is not working.
        self._loads_metric = metrics.Counter(
            "cogumi_adapter_loads", description="LoRA adapters loaded into a Generator replica.",
            tag_keys=("adapter",))
        self._load_seconds = metrics.Histogram(
            "cogumi_adapter_load_seconds", description="Time to load one LoRA adapter.",
            boundaries=[0.001, 0.005, 0.02, 0.1, 0.5, 2.0], tag_keys=("adapter",))
        self._loads: dict[str, int] = {}
        self._in_flight = 0  # generate/stream calls running now

        async def hold(name: str) -> _Held:
            t0 = time.perf_counter()
            await asyncio.to_thread(self.backend.load_adapter, name)
            self._loads[name] = self._loads.get(name, 0) + 1
            self._loads_metric.inc(tags={"adapter": name})
            self._load_seconds.observe(time.perf_counter() - t0, tags={"adapter": name})
            return _Held(self.backend, name)

        # Wired here, not as a decorated method, because N comes from the config.
        self._hold = serve.multiplexed(max_num_models_per_replica=cfg.max_adapters_per_replica)(hold)
        # Streams abandoned mid-way (client gone, request cancelled): proof that a disconnect
        # stops decoding, in Prometheus and, per replica, through `stats()`.
        self._cancelled_metric = metrics.Counter(
            "cogumi_cancelled_generations",
            description="Streamed generations stopped before their end (client gone).")
        self._cancelled = 0
        self._cancelled_pieces: list[int] = []  # pieces sent before each cancel, last 100
        self._warmed: dict[str, int] = {}  # warm() calls per adapter
        # The router's base-confidence probe: a backend that can read it, with a calibrator.
        self._probes = 0
        self._can_probe = isinstance(self.backend, ConfidenceProbe) and \
            getattr(self.backend, "calibrator", None) is not None
        if cfg.calibrator_path and not self._can_probe:
            log.warning("serve.calibrator_path is set but backend %r cannot read the base's "
                        "confidence; a router trained with it keeps its training mean", cfg.backend)

    async def _adapter(self) -> str | None:
        from ray import serve

        name = serve.get_multiplexed_model_id()
        if not name or name == BASE:
            return None
        await self._hold(name)
        return name

    async def warm(self) -> str | None:
        """Load this call's adapter (its multiplexed model id) ahead of the request that will need
        it: the router calls it for a session likely to come back to a modifier. Returns it."""
        name = await self._adapter()
        if name is not None:
            self._warmed[name] = self._warmed.get(name, 0) + 1
        return name

    async def base_confidence(self, messages: Messages, ks: list[int]) -> list[float] | None:
        """The base's calibrated confidence after each k of `ks` greedy tokens (`ConfidenceProbe`),
        for a progressive router; None = this backend or config cannot read it."""
        if not self._can_probe:
            return None
        self._in_flight += 1
        try:
            out = await asyncio.to_thread(self.backend.base_confidence,  # type: ignore[attr-defined]
                                          messages, ks)
        finally:
            self._in_flight -= 1
        self._probes += 1
        return out

    async def generate(self, request: GenerationRequest) -> list[GenResult]:
        self._in_flight += 1
        try:
            adapter = await self._adapter()
            return [
                await asyncio.to_thread(self.backend.generate, request.prompt,
                                        choice_params(request.params, i), adapter)
                for i in range(request.n)
            ]
        finally:
            self._in_flight -= 1

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Piece]:
        self._in_flight += 1
        try:
            async with aclosing(self._stream(request)) as pieces:  # a hang-up closes it now
                async for piece in pieces:
                    yield piece
        finally:
            self._in_flight -= 1

    async def _stream(self, request: GenerationRequest) -> AsyncIterator[Piece]:
        adapter = await self._adapter()
        sent = 0
        try:
            for i in range(request.n):
                params = choice_params(request.params, i)

                def pieces(params: GenParams = params) -> Any:
                    return self.backend.stream(request.prompt, params, adapter)

                # aclosing: a cancelled stream stops the decoding thread now, not at garbage
                # collection
                async with aclosing(iterate_in_thread(pieces)) as items:
                    async for item in items:
                        sent += 1
                        yield Piece(i, done=item) if isinstance(item, GenResult) else Piece(i, text=item)
        except (GeneratorExit, asyncio.CancelledError):
            # aclose() (the router stopped reading) or task cancellation (Serve, client gone);
            # the decoding thread has stopped by now (aclosing waited for it).
            self._cancelled += 1
            self._cancelled_pieces = [*self._cancelled_pieces[-99:], sent]
            self._cancelled_metric.inc()
            raise

    async def stats(self) -> dict[str, Any]:
        """This replica's counters (tests and operators reach it with a deployment handle)."""
        return {"cancelled_generations": self._cancelled,
                "cancelled_after_pieces": list(self._cancelled_pieces),
                "adapter_loads": dict(self._loads), "in_flight": self._in_flight,
                "warmed": dict(self._warmed), "confidence_probes": self._probes}

    def __del__(self) -> None:  # Serve calls it when the replica stops
        backend = getattr(self, "backend", None)
        if backend is not None:
            backend.close()
