"""vLLM model server (GPU): one base in vLLM's async engine, PEFT adapters as multi-LoRA.

Every request is its own vLLM request (continuous batching mixes them, adapters included), so
unlike the llama.cpp and HF backends nothing is locked: the Generator deployment's threads each
submit one and wait for its tokens. The engine lives on an event loop of its own (a thread owned
by this object) because the Generator protocol is called from worker threads; a stream closed
early (client gone) aborts its vLLM request, which frees its KV blocks at the next step.

Adapters are the modifiers stage's PEFT folders, sent as `LoRARequest(name, int_id, path)`:
vLLM loads each once, keeps up to `max_cpu_loras` in host memory and `max_loras` on the GPU per
batch. Prompt ids come from the model folder's tokenizer and chat template, as in training and in
the other backends; the argument builders are plain functions, tested without a GPU.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cogumi_ray.errors import ConfigError, MissingDependencyError
from cogumi_ray.generate.config import GenParams
from cogumi_ray.generate.engines.base import EngineError, cut_at_stop
from cogumi_ray.generate.engines.vllm import llm_kwargs
from cogumi_ray.serve.backends.common import final_result, hf_prompt_ids
from cogumi_ray.serve.config import VLLM_LORA_RANKS, ServeConfig
from cogumi_ray.serve.errors import ServeError, check_context
from cogumi_ray.serve.model_server import choice_params
from cogumi_ray.serve.protocol import GenerationRequest, GenResult, Prompt
from cogumi_ray.serve.text_stream import DeltaText

log = logging.getLogger(__name__)

TOP_K = 50  # what the hf and llama_cpp backends sample with (transformers' default)
INSTALL = 'pip install "cogumi-ray[gpu]" (vLLM) on the GPU workers'

# argument builders (pure: tested on CPU)


def adapter_rank(folder: str) -> int:
    """The largest LoRA rank of a PEFT adapter folder (`r`, or a layer's `rank_pattern` entry)."""
    path = os.path.join(folder, "adapter_config.json")
    if not os.path.isfile(path):
        raise EngineError(f"{folder!r} is not a PEFT adapter folder (adapter_config.json missing); "
                          "use the modifiers stage's adapters/<domain>/ output")
    with open(path) as fh:
        conf = json.load(fh)
    return max([int(conf["r"]), *(int(r) for r in (conf.get("rank_pattern") or {}).values())])


def lora_rank_bound(rank: int) -> int:
    """The smallest max_lora_rank vLLM accepts that holds `rank`."""
    for bound in VLLM_LORA_RANKS:
        if bound >= rank:
            return bound
    raise ConfigError(f"LoRA rank {rank} exceeds vLLM's largest max_lora_rank {VLLM_LORA_RANKS[-1]}; "
                      "retrain the modifier with a smaller modifiers.adapters.<domain>.rank")


def engine_kwargs(cfg: ServeConfig, base: str, ranks: dict[str, int]) -> dict[str, Any]:
    """Keyword arguments for `vllm.AsyncEngineArgs`: the batch engine's, plus multi-LoRA sizing from
    the adapters' ranks (`ranks`: adapter name -> rank; empty = no LoRA)."""
    kwargs = llm_kwargs(cfg.vllm, base)
    if not ranks:
        return kwargs
    need = max(ranks.values())
    rank = cfg.vllm.max_lora_rank or lora_rank_bound(need)
    if rank < need:
        biggest = max(ranks, key=lambda n: ranks[n])
        raise ConfigError(f"serve.vllm.max_lora_rank {rank} is below adapter {biggest!r}'s rank "
                          f"{need}; set it to {lora_rank_bound(need)} or leave it unset")
    max_loras = cfg.vllm.max_loras or min(cfg.max_adapters_per_replica, len(ranks))
    kwargs.update(enable_lora=True, max_lora_rank=rank, max_loras=max_loras,
                  # host-memory cache: every adapter the multiplexer lets this replica hold
                  max_cpu_loras=max(max_loras, cfg.max_adapters_per_replica))
    return kwargs


def sampling_kwargs(params: GenParams) -> dict[str, Any]:
    """Keyword arguments for `vllm.SamplingParams`, one choice (the Generator deployment fans
    out n choices, choice i with seed + i, as for every backend). temperature 0 = vLLM's greedy."""
    kwargs: dict[str, Any] = {"n": 1, "max_tokens": params.max_new_tokens,
                              "temperature": params.temperature, "seed": params.seed}
    if params.greedy:
        kwargs["top_p"] = 1.0
    else:
        kwargs.update(top_p=params.top_p, top_k=TOP_K)
    if params.stop:
        kwargs["stop"] = list(params.stop)
    return kwargs


def request_sampling_kwargs(request: GenerationRequest) -> list[dict[str, Any]]:
    """The SamplingParams arguments of each of a request's n choices."""
    return [sampling_kwargs(choice_params(request.params, i)) for i in range(request.n)]


def require_vllm() -> None:
    """vLLM importable and a CUDA device visible, else the fix."""
    try:
        import vllm  # noqa: F401
    except ImportError as e:
        raise MissingDependencyError("vLLM (serve.backend 'vllm')", INSTALL, str(e)) from None
    import torch

    if not torch.cuda.is_available():
        raise MissingDependencyError(
            "a CUDA GPU (serve.backend 'vllm')",
            "run the Generator on a GPU node with serve.generator.num_gpus >= 1, or set "
            "serve.backend to llama_cpp (CPU) or hf",
            "no CUDA device visible to torch")


# the model server


@dataclass
class _Step:
    """One engine output of a request, as the waiting thread needs it (cumulative)."""

    text: str
    n_tokens: int
    finish_reason: str | None
    finished: bool


_END = object()


class _EngineLoop:
    """An asyncio loop in a daemon thread: the engine's home, called from any thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="vllm-engine-loop",
                                       daemon=True)
        self.thread.start()

    def submit(self, coro: Any) -> Any:  # a concurrent.futures.Future
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Any, timeout: float | None = None) -> Any:
        return self.submit(coro).result(timeout)

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        if not self.thread.is_alive():
            self.loop.close()


class VLLMGenerator:
    def __init__(self, cfg: ServeConfig) -> None:
        require_vllm()
        self._setup(cfg)

    def _setup(self, cfg: ServeConfig) -> None:
        from cogumi_ray.models.load import load_tokenizer, resolve_local

        self.model_name = cfg.served_base_name()
        self.base = resolve_local(cfg.base or "")  # an s3:// base is downloaded once per node
        self.tokenizer = load_tokenizer(self.base)
        self.paths = {name: resolve_local(path) for name, path in cfg.adapters.items()}
        self.ranks = {name: adapter_rank(path) for name, path in self.paths.items()}
        # vLLM caches adapters by int id: one id per name for the life of the replica
        self._ids = {name: i for i, name in enumerate(sorted(self.paths), start=1)}
        self._loaded: set[str] = set()
        self._busy: dict[str, int] = {}  # requests in flight per adapter
        self._unload_when_idle: set[str] = set()
        self._lock = threading.Lock()  # guards the adapter bookkeeping, not generation
        self._loop = _EngineLoop()
        kwargs = engine_kwargs(cfg, self.base, self.ranks)
        t0 = time.perf_counter()
        try:
            self.engine = self._loop.run(self._start_engine(kwargs))
        except BaseException:
            self._loop.close()
            raise
        log.info("vLLM engine for %s started in %.1f s", self.base, time.perf_counter() - t0)
        model_config = getattr(self.engine, "model_config", None)
        self.n_ctx = int(cfg.vllm.max_model_len or getattr(model_config, "max_model_len", 0) or 1 << 30)

    # what touches vllm itself (replaced in CPU tests)

    async def _start_engine(self, kwargs: dict[str, Any]) -> Any:
        """Created on the engine loop, so vLLM's output handler runs there."""
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.engine.async_llm_engine import AsyncLLMEngine  # v1: AsyncLLM

        return AsyncLLMEngine.from_engine_args(AsyncEngineArgs(**kwargs))

    def _vllm_request(self, ids: list[int], params: GenParams, adapter: str | None) -> tuple[Any, Any, Any]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        return (TokensPrompt(prompt_token_ids=ids), SamplingParams(**sampling_kwargs(params)),
                self._lora_request(adapter))

    def _lora_request(self, adapter: str | None) -> Any:
        if adapter is None:
            return None
        from vllm.lora.request import LoRARequest

        return LoRARequest(adapter, self._ids[adapter], self.paths[adapter])

    # adapters

    def load_adapter(self, name: str) -> None:
        if name not in self.paths:
            raise EngineError(f"no adapter named {name!r}; configured: {sorted(self.paths)}")
        with self._lock:
            self._unload_when_idle.discard(name)
            if name in self._loaded:
                return
        t0 = time.perf_counter()
        try:  # into vLLM's adapter cache now, so the first request does not wait for it
            self._loop.run(self.engine.add_lora(self._lora_request(name)))
        except Exception as e:
            raise EngineError(f"vLLM cannot load adapter {name!r} from {self.paths[name]!r} "
                              f"(rank {self.ranks[name]}): {type(e).__name__}: {e}") from e
        with self._lock:
            self._loaded.add(name)
        log.info("adapter %s loaded in %.1f ms", name, 1000 * (time.perf_counter() - t0))

    def unload_adapter(self, name: str) -> None:
        with self._lock:
            if name not in self._loaded:
                return
            if self._busy.get(name):  # requests decoding with it: remove it after the last one
                self._unload_when_idle.add(name)
                return
            self._loaded.discard(name)
        self._remove(name)

    def _remove(self, name: str) -> None:
        try:
            self._loop.run(self.engine.remove_lora(self._ids[name]), timeout=60)
        except Exception as e:  # the next load adds it again; nothing to undo
            log.warning("vLLM could not remove adapter %s: %s", name, e)

    def _acquire(self, adapter: str | None) -> None:
        if adapter is None:
            return
        self.load_adapter(adapter)
        with self._lock:
            self._busy[adapter] = self._busy.get(adapter, 0) + 1

    def _release(self, adapter: str | None) -> None:
        if adapter is None:
            return
        with self._lock:
            self._busy[adapter] -= 1
            if self._busy[adapter] or adapter not in self._unload_when_idle:
                return
            self._unload_when_idle.discard(adapter)
            self._loaded.discard(adapter)
        self._remove(adapter)

    # generation

    def prompt_ids(self, prompt: Prompt) -> list[int]:
        return hf_prompt_ids(self.tokenizer, prompt)

    def generate(self, prompt: Prompt, params: GenParams, adapter: str | None) -> GenResult:
        return final_result(self.stream(prompt, params, adapter))

    def stream(self, prompt: Prompt, params: GenParams, adapter: str | None) -> Iterator[str | GenResult]:
        ids = self.prompt_ids(prompt)
        check_context(len(ids), params.max_new_tokens, self.n_ctx, prompt)
        self._acquire(adapter)
        try:
            yield from self._decode(ids, params, adapter)
        finally:
            self._release(adapter)

    def _decode(self, ids: list[int], params: GenParams, adapter: str | None) -> Iterator[str | GenResult]:
        request_id = f"cogumi-{uuid.uuid4().hex}"
        steps: queue.Queue[Any] = queue.Queue()
        pump = self._loop.submit(self._pump(self._vllm_request(ids, params, adapter), request_id, steps))
        delta = DeltaText(params.stop)
        last: _Step | None = None
        ended = False
        try:
            while (item := steps.get()) is not _END:
                if isinstance(item, BaseException):
                    err = _engine_error(item, adapter)
                    raise err from (None if err is item else item)
                last = item
                piece = delta.update(item.text)
                if piece:
                    yield piece
            ended = True
        finally:
            if not ended:  # closed early (client gone): stop decoding now
                pump.cancel()
                try:
                    self._loop.run(self.engine.abort(request_id), timeout=30)
                except Exception as e:
                    log.warning("vLLM could not abort request %s: %s", request_id, e)
        if last is None or not last.finished:
            raise EngineError(f"vLLM ended request {request_id} without a finished output")
        text, hit_stop = cut_at_stop(last.text, params.stop)  # vLLM cuts already; a no-op then
        rest = delta.finish(text)
        if rest:
            yield rest
        reason = "length" if last.finish_reason == "length" and not hit_stop else "stop"
        yield GenResult(text, reason, len(ids), last.n_tokens)

    async def _pump(self, request: tuple[Any, Any, Any], request_id: str, steps: queue.Queue[Any]) -> None:
        """On the engine loop: the request's outputs into `steps`, then _END."""
        prompt, sampling, lora = request
        try:
            async for out in self.engine.generate(prompt, sampling, request_id, lora_request=lora):
                o = out.outputs[0]
                steps.put(_Step(o.text, len(o.token_ids), o.finish_reason, out.finished))
        except asyncio.CancelledError:
            raise  # the consumer is gone; vLLM's generate aborted the request on the way out
        except Exception as e:
            steps.put(e)
        finally:
            steps.put(_END)

    def close(self) -> None:
        engine = getattr(self, "engine", None)
        if engine is None:
            return
        self.engine = None
        shutdown = getattr(engine, "shutdown", None) or getattr(engine, "shutdown_background_loop", None)
        if shutdown is not None:
            try:
                shutdown()
            except Exception as e:  # a replica going away: log, do not mask why
                log.warning("vLLM shutdown: %s", e)
        self._loop.close()


def _engine_error(e: BaseException, adapter: str | None) -> Exception:
    if isinstance(e, ServeError | EngineError):
        return e
    client_error = any(c.__name__ == "VLLMClientError" for c in type(e).__mro__)
    if client_error or isinstance(e, ValueError):  # vLLM's request validation
        return ServeError(400, f"vLLM rejected the request: {e}", code="invalid_request")
    what = f" with adapter {adapter!r}" if adapter else ""
    return EngineError(f"vLLM failed to generate{what}: {type(e).__name__}: {e}")
