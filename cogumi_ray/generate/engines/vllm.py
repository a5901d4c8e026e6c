"""vLLM in-process on GPU (the cluster path), behind `generate.engine.kind: vllm`.

The argument builders are plain functions so they are tested on machines without a GPU; the engine
itself refuses to start without CUDA and vllm, saying how to get them.
"""

from __future__ import annotations

import time
from typing import Any

from cogumi_ray.errors import MissingDependencyError
from cogumi_ray.generate.config import EngineConfig, GenParams, VLLMEngineConfig
from cogumi_ray.generate.engines.base import Completion, EngineError, cut_at_stop


def llm_kwargs(cfg: VLLMEngineConfig, model: str, seed: int = 0) -> dict[str, Any]:
    """Keyword arguments for `vllm.LLM`."""
    kwargs: dict[str, Any] = {
        "model": model,
        "tokenizer": model,
        "tensor_parallel_size": cfg.tensor_parallel_size,
        "gpu_memory_utilization": cfg.gpu_memory_utilization,
        "dtype": cfg.dtype,
        "enforce_eager": cfg.enforce_eager,
        "seed": seed,
    }
    if cfg.max_model_len is not None:
        kwargs["max_model_len"] = cfg.max_model_len
    if cfg.quantization is not None:
        kwargs["quantization"] = cfg.quantization
    return kwargs


def sampling_kwargs(params: GenParams) -> dict[str, Any]:
    """Keyword arguments for `vllm.SamplingParams` (temperature 0 is vLLM's greedy mode too)."""
    kwargs: dict[str, Any] = {
        "max_tokens": params.max_new_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p if not params.greedy else 1.0,
        "seed": params.seed,
    }
    if params.stop:
        kwargs["stop"] = list(params.stop)
    return kwargs


def _require_vllm() -> None:
    import torch

    if not torch.cuda.is_available():
        raise MissingDependencyError(
            "vLLM engine", "run on a CUDA GPU machine, or set generate.engine.kind to hf/llama_cpp/openai",
            "no CUDA device visible to torch",
        )
    try:
        import vllm  # noqa: F401
    except ImportError as e:
        raise MissingDependencyError("vllm", "pip install 'cogumi-ray[gpu]'", str(e)) from e


class VLLMEngine:
    name = "vllm"

    def __init__(self, cfg: EngineConfig, model: str, seed: int = 0) -> None:
        _require_vllm()
        from vllm import LLM

        self.llm = LLM(**llm_kwargs(cfg.vllm, model, seed))
        self.tokenizer = self.llm.get_tokenizer()
        self.model_path = model

    def generate(self, prompts: list[str], params: GenParams) -> list[Completion]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        from cogumi_ray.models.chat import build_prompt

        # Same prompt ids as training: our template, no second BOS.
        inputs = [
            TokensPrompt(prompt_token_ids=self.tokenizer(
                build_prompt(self.tokenizer, p), add_special_tokens=False)["input_ids"])
            for p in prompts
        ]
        t0 = time.perf_counter()
        try:
            results = self.llm.generate(inputs, SamplingParams(**sampling_kwargs(params)),
                                        use_tqdm=False)
        except (RuntimeError, ValueError) as e:
            raise EngineError(f"vLLM generate failed on {self.model_path}: {e}") from e
        latency = time.perf_counter() - t0
        out = []
        for r in results:
            o = r.outputs[0]
            text, _ = cut_at_stop(o.text, params.stop)
            reason = "length" if o.finish_reason == "length" else "stop"
            out.append(Completion(text, len(r.prompt_token_ids or []), len(o.token_ids), latency, reason))
        return out

    def close(self) -> None:
        self.llm = None
