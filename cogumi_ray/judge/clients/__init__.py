"""LLM judge clients by name; the SDKs are imported only when a client is built."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cogumi_ray.errors import JudgeError

if TYPE_CHECKING:
    from cogumi_ray.judge.cache import JudgeCache
    from cogumi_ray.judge.clients.base import JudgeClient
    from cogumi_ray.judge.config import JudgeConfig

CLIENTS: dict[str, str] = {
    "anthropic": "cogumi_ray.judge.clients.anthropic_client:AnthropicClient",
    "openai": "cogumi_ray.judge.clients.openai_client:OpenAIClient",
    "openai_compatible": "cogumi_ray.judge.clients.openai_client:OpenAIClient",
}


def make_client(
    cfg: JudgeConfig, cache: JudgeCache | None = None, qps: float | None = None
) -> JudgeClient:
    import importlib

    target = CLIENTS.get(cfg.judge)
    if target is None:
        raise JudgeError(f"judge {cfg.judge!r} has no API client; LLM judges are {sorted(CLIENTS)}")
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)(cfg, cache=cache, qps=qps)
