"""Anthropic judge client: the Messages API, and Message Batches for large runs (half price),
through the official `anthropic` SDK. The SDK's own retries are off: the base class retries, so
backoff, QPS and attempt counts follow judge config."""

from __future__ import annotations

import importlib
import inspect
import json
from typing import Any, Literal

from cogumi_ray.errors import ConfigError
from cogumi_ray.judge.cache import JudgeCache
from cogumi_ray.judge.clients.base import (
    ChatRequest,
    Failure,
    JudgeClient,
    Reply,
    api_key_from_env,
)
from cogumi_ray.judge.config import JudgeConfig

_RETRY_STATUS = {408, 409, 429}  # plus every 5xx (529 = overloaded)
_FATAL_STATUS = {401, 403, 404}  # bad key, no access, unknown model: the same for every row


def _retry_after(exc: Any) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


# The Messages API dropped sampling parameters in version 2026-10-21 (the anthropic SDK 2.x
# default): temperature, top_p or top_k there is a 400, even at 1.0. Older versions take them;
# SDKs before 2.0 send 2023-06-01 and have no version constant to read.
NO_SAMPLING_SINCE = "2026-10-21"
LEGACY_VERSION = "2023-06-01"


def api_version(sdk: Any, override: str | None) -> str:
    """The `anthropic-version` a client of this SDK sends: the config's, else the SDK's default."""
    if override:
        return override
    if int(str(sdk.__version__).split(".")[0]) < 2:
        return LEGACY_VERSION
    constants = importlib.import_module(f"{sdk.__name__}._constants")
    return str(getattr(constants, "ANTHROPIC_API_VERSION", NO_SAMPLING_SINCE))


class AnthropicClient(JudgeClient):
    def __init__(self, cfg: JudgeConfig, cache: JudgeCache | None = None, qps: float | None = None):
        import anthropic

        self.api_version = api_version(anthropic, cfg.anthropic_version)
        # ISO dates compare as strings; the base class keys the cache on temperature only if sent.
        self.sends_temperature = self.api_version < NO_SAMPLING_SINCE
        if not self.sends_temperature and "temperature" in cfg.model_fields_set \
                and cfg.temperature != 0.0:
            raise ConfigError(
                f"temperature={cfg.temperature} cannot be sent to Anthropic: Messages API version "
                f"{self.api_version} (anthropic SDK {anthropic.__version__}"
                f"{'' if cfg.anthropic_version else ' default'}) rejects sampling parameters. To "
                f"resolve: set judge.anthropic_version: {LEGACY_VERSION} (a version that takes "
                "temperature; an Anthropic distill teacher uses it too), or remove the temperature "
                "setting."
            )
        super().__init__(cfg, cache, qps)
        self._sdk = anthropic
        # SDK 2.x's create() has no temperature argument: then it travels in extra_body.
        self._temperature_arg = "temperature" in inspect.signature(
            anthropic.resources.messages.Messages.create).parameters
        self.client = anthropic.Anthropic(
            api_key=api_key_from_env(cfg.key_env, cfg.judge),
            base_url=cfg.base_url,
            timeout=cfg.timeout_s,
            max_retries=0,
            default_headers={"anthropic-version": cfg.anthropic_version}
            if cfg.anthropic_version else None,
        )

    def _params(self, req: ChatRequest) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.model,
            "max_tokens": req.max_tokens,
            "system": req.system,
            "messages": [{"role": role, "content": text} for role, text in req.messages],
        }
        if self.sends_temperature:
            params["temperature"] = req.temperature
        if req.schema is not None and self.cfg.structured_output != "off":
            params["output_config"] = {
                "format": {"type": "json_schema", "schema": json.loads(req.schema)}
            }
        return params

    @staticmethod
    def _reply(message: Any) -> Reply:
        text = "".join(b.text for b in message.content if getattr(b, "type", "") == "text")
        return Reply(text, message.usage.input_tokens, message.usage.output_tokens)

    def _send(self, req: ChatRequest) -> Reply:
        params = self._params(req)
        if "temperature" in params and not self._temperature_arg:
            params["extra_body"] = {"temperature": params.pop("temperature")}
        return self._reply(self.client.messages.create(**params))

    def _classify(self, exc: Exception) -> Failure:
        sdk = self._sdk
        if isinstance(exc, sdk.APIConnectionError):  # includes APITimeoutError
            return Failure("retry", f"{type(exc).__name__}: {exc}")
        if isinstance(exc, sdk.APIStatusError):
            status = exc.status_code
            msg = f"HTTP {status}: {exc.api_message or exc}"
            if status in _RETRY_STATUS or status >= 500:
                return Failure("retry", msg, _retry_after(exc), status)
            if status in _FATAL_STATUS:
                hint = f" (check the key in ${self.cfg.key_env})" if status in (401, 403) else ""
                return Failure("fatal", f"{msg}{hint}", status=status)
            return Failure("row", msg, status=status)
        raise exc  # not an API failure: a bug, let it surface

    # -- Message Batches --------------------------------------------------------------------
    def _batch_submit(self, items: list[tuple[str, ChatRequest]]) -> str:
        requests = [{"custom_id": key, "params": self._params(req)} for key, req in items]
        return self.client.messages.batches.create(requests=requests).id

    def _batch_state(self, batch_id: str) -> Literal["running", "ended", "failed"]:
        status = self.client.messages.batches.retrieve(batch_id).processing_status
        return "ended" if status == "ended" else "running"  # canceling ends as "ended" too

    def _batch_results(self, batch_id: str) -> dict[str, Reply | str]:
        out: dict[str, Reply | str] = {}
        for line in self.client.messages.batches.results(batch_id):
            result = line.result
            if result.type == "succeeded":
                out[line.custom_id] = self._reply(result.message)
            elif result.type == "errored":
                err = result.error.error
                out[line.custom_id] = f"errored: {err.type}: {err.message}"
            else:  # canceled / expired: never processed, nothing billed
                out[line.custom_id] = result.type
        return out
