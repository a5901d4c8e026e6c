"""Model-server backends by name (`serve.backend`); each module imports its engine when built."""

from __future__ import annotations

import importlib

from cogumi_ray.errors import ConfigError
from cogumi_ray.serve.config import ServeConfig
from cogumi_ray.serve.protocol import Generator

BACKENDS: dict[str, str] = {
    "llama_cpp": "cogumi_ray.serve.backends.llama_cpp:LlamaCppGenerator",
    "hf": "cogumi_ray.serve.backends.hf:HFGenerator",
    "vllm": "cogumi_ray.serve.backends.vllm:VLLMGenerator",  # GPU replicas only
}


def make_generator(cfg: ServeConfig) -> Generator:
    if cfg.backend not in BACKENDS:
        raise ConfigError(f"unknown serve backend {cfg.backend!r}; valid: {sorted(BACKENDS)}")
    if not cfg.base:
        raise ConfigError("serve.base is not set: point it at the base .gguf (llama_cpp) or HF "
                          "folder (hf, vllm) to serve")
    module, _, cls = BACKENDS[cfg.backend].partition(":")
    return getattr(importlib.import_module(module), cls)(cfg)
