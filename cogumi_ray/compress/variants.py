"""Measure one compressed variant: size on disk, perplexity, suite pass rate, CPU tokens/s.

A variant is a HF folder ("hf") or a GGUF file ("gguf"); both are scored by the same suite
verifiers on the same held-out rows through the project's own engines, so the rows of the stage
report are comparable.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from cogumi_ray.data.schema import Example

if TYPE_CHECKING:
    from cogumi_ray.config import CogumiConfig


@dataclass
class Variant:
    name: str  # e.g. "dense/hf", "pruned/Q5_K_M"
    branch: str  # dense | pruned | awq
    kind: str  # hf | gguf | awq
    path: str
    size_bytes: int = 0
    packed_bytes: int | None = None
    perplexity: float | None = None
    pass_rate: float | None = None
    per_domain: dict[str, float] = field(default_factory=dict)
    prompt_tok_s: float | None = None
    gen_tok_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        d = asdict(self)
        d["size_mb"] = round(self.size_bytes / 2**20, 3)
        return d


def disk_bytes(path: str) -> int:
    """Bytes of the weights: a file, or the safetensors/bin files of a folder."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)
               if f.endswith((".safetensors", ".bin", ".gguf")))


def engine_config(kind: str, path: str, threads: int | None = None) -> Any:
    """The EngineConfig that answers with a variant: llama.cpp for GGUF files, transformers for
    HF folders and compressed-tensors (AWQ) checkpoints."""
    from cogumi_ray.generate.config import EngineConfig

    if kind == "gguf":
        cfg = EngineConfig(kind="llama_cpp", model=path)
        cfg.llama_cpp.n_threads = threads
        return cfg
    return EngineConfig(kind="hf", model=path)


def engine_for(kind: str, path: str, threads: int | None = None) -> Any:
    from cogumi_ray.generate.engines import make_engine

    return make_engine(engine_config(kind, path, threads), path)


def score(v: Variant, cfg: CogumiConfig, examples: list[Example], cache: str | None) -> None:
    """The variant's suite score with the eval section's decoding, through the run's score cache
    (the dense HF variant is the stage's input model: eval_base or distill scored it already)."""
    from cogumi_ray.eval.stage import score_model

    s = score_model(cfg, v.path, examples, engine=engine_config(v.kind, v.path), cache=cache)
    v.pass_rate = round(s.pass_rate, 4)
    v.per_domain = {k: round(t.rate, 4) for k, t in sorted(s.by_domain.items())}
    v.extra["passed"], v.extra["total"] = s.overall.passed, s.overall.total


def gguf_speed(gguf: str, prompt_ids: list[int], n_gen: int = 64, threads: int | None = None
               ) -> tuple[float, float]:
    """(prompt tokens/s, generated tokens/s) of llama.cpp on this CPU, greedy."""
    from cogumi_ray.generate.engines.llama_load import open_llama

    llm = open_llama(gguf, n_ctx=max(512, len(prompt_ids) + n_gen + 8), n_threads=threads,
                     verbose=False)
    try:
        llm.eval(prompt_ids[:1])  # warm-up: first-call allocations
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(prompt_ids)
        t_prompt = time.perf_counter() - t0
        t0, n = time.perf_counter(), 0
        for tok in llm.generate(prompt_ids, temp=0.0, reset=False):
            n += 1
            if n >= n_gen:
                break
            del tok
        t_gen = time.perf_counter() - t0
    finally:
        llm.close()
    return len(prompt_ids) / max(t_prompt, 1e-9), n / max(t_gen, 1e-9)
