"""Any OpenAI-compatible endpoint (vLLM, llama.cpp server, the project's own Serve app, OpenAI)
through the official `openai` SDK. The server applies its chat template to our one user message.

Retries with exponential backoff on 429/5xx/timeouts/connection errors are the SDK's own
(`max_retries`); what still fails after them becomes an EngineError naming the endpoint.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlparse

from cogumi_ray.generate.config import EngineConfig, GenParams
from cogumi_ray.generate.engines.base import Completion, EngineError, cut_at_stop

log = logging.getLogger(__name__)

_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}


def resolve_api_key(env_name: str, base_url: str) -> str:
    """The key from the environment; local endpoints that need none get a placeholder."""
    key = os.environ.get(env_name)
    if key:
        return key
    if (urlparse(base_url).hostname or "") in _LOCAL_HOSTS:
        return "not-needed"
    raise EngineError(
        f"environment variable {env_name} is not set but the endpoint {base_url} is remote; "
        f"export {env_name}=... or set generate.engine.openai.api_key_env to the variable's name"
    )


class OpenAIEngine:
    name = "openai"

    def __init__(self, cfg: EngineConfig, model: str | None = None) -> None:
        import openai

        self.cfg = cfg.openai
        self.client = openai.OpenAI(
            base_url=self.cfg.base_url,
            api_key=resolve_api_key(self.cfg.api_key_env, self.cfg.base_url),
            timeout=self.cfg.timeout_s,
            max_retries=self.cfg.max_retries,
        )
        self.model = self.cfg.model or self._first_served_model()

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        import openai

        try:
            return fn(*args, **kwargs)
        except (openai.APIConnectionError, openai.APITimeoutError) as e:
            raise EngineError(
                f"cannot reach the OpenAI-compatible endpoint {self.cfg.base_url} after "
                f"{self.cfg.max_retries} retries ({type(e).__name__}: {e}); start the server or fix "
                "generate.engine.openai.base_url"
            ) from e
        except openai.APIStatusError as e:
            raise EngineError(
                f"endpoint {self.cfg.base_url} answered HTTP {e.status_code}: {e.message}"
            ) from e

    def _first_served_model(self) -> str:
        models = self._call(self.client.models.list).data
        if not models:
            raise EngineError(
                f"endpoint {self.cfg.base_url} serves no models; set generate.engine.openai.model"
            )
        return models[0].id

    def _one(self, instruction: str, params: GenParams) -> Completion:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": instruction}],
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "seed": params.seed,
        }
        if params.stop:
            kwargs["stop"] = list(params.stop)
        if self.cfg.extra_body:
            kwargs["extra_body"] = dict(self.cfg.extra_body)
        t0 = time.perf_counter()
        resp = self._call(self.client.chat.completions.create, **kwargs)
        latency = time.perf_counter() - t0
        if not resp.choices:
            raise EngineError(f"endpoint {self.cfg.base_url} returned no choices for model {self.model}")
        choice = resp.choices[0]
        text, _ = cut_at_stop(choice.message.content or "", params.stop)
        usage = resp.usage
        return Completion(
            text,
            usage.prompt_tokens if usage else 0,
            usage.completion_tokens if usage else 0,
            latency,
            "length" if choice.finish_reason == "length" else "stop",
        )

    def generate(self, prompts: list[str], params: GenParams) -> list[Completion]:
        if len(prompts) <= 1 or self.cfg.concurrency == 1:
            return [self._one(p, params) for p in prompts]
        with ThreadPoolExecutor(self.cfg.concurrency, thread_name_prefix="openai-engine") as pool:
            return list(pool.map(lambda p: self._one(p, params), prompts))

    def close(self) -> None:
        self.client.close()
