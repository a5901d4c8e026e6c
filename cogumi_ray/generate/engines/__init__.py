"""Generation engines by name: `make_engine(cfg)` builds the one `generate.engine.kind` names.

Engine modules import their heavy libraries (torch, llama_cpp, openai, vllm) only when an engine is
built, so importing this registry is cheap.
"""

from __future__ import annotations

import importlib

from cogumi_ray.generate.config import EngineConfig, GenParams
from cogumi_ray.generate.engines.base import Completion, Engine, EngineError, cut_at_stop

# name -> "module:Class"
ENGINES: dict[str, str] = {
    "hf": "cogumi_ray.generate.engines.hf:HFEngine",
    "llama_cpp": "cogumi_ray.generate.engines.llama_cpp:LlamaCppEngine",
    "openai": "cogumi_ray.generate.engines.openai_http:OpenAIEngine",
    "vllm": "cogumi_ray.generate.engines.vllm:VLLMEngine",
}


def engine_class(kind: str) -> type:
    if kind not in ENGINES:
        raise EngineError(f"unknown engine {kind!r}; valid engines: {sorted(ENGINES)}")
    module, _, cls = ENGINES[kind].partition(":")
    return getattr(importlib.import_module(module), cls)


def make_engine(cfg: EngineConfig, model: str | None = None) -> Engine:
    """Build the configured engine. `model` (the pipeline's upstream model) is used unless
    `cfg.model` names one explicitly; the openai engine needs neither."""
    from cogumi_ray import storage

    path = cfg.model or model
    if cfg.kind != "openai":
        if not path:
            raise EngineError(
                f"engine {cfg.kind!r} needs a model: set generate.engine.model (HF folder or .gguf)"
            )
        path = storage.local_path(path)
    return engine_class(cfg.kind)(cfg, path)


__all__ = [
    "ENGINES", "Completion", "Engine", "EngineError", "GenParams", "cut_at_stop", "engine_class",
    "make_engine",
]
