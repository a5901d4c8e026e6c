"""OpenAI judge client: Chat Completions and the Batch API (JSONL upload, batch job, result file)
through the official `openai` SDK; with `base_url` it talks to any OpenAI-compatible server
(vLLM, llama.cpp, the project's own Serve app). The SDK's own retries are off (see base)."""

from __future__ import annotations

import json
from typing import Any, Literal

from cogumi_ray.judge.cache import JudgeCache
from cogumi_ray.judge.clients.base import (
    ChatRequest,
    Failure,
    JudgeClient,
    Reply,
    api_key_from_env,
)
from cogumi_ray.judge.config import JudgeConfig
from cogumi_ray.judge.rubric import bounded

_RETRY_STATUS = {408, 409, 429}
_FATAL_STATUS = {401, 403, 404}
_ENDPOINT = "/v1/chat/completions"


def _retry_after(exc: Any) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _reply(body: dict[str, Any]) -> Reply:
    usage = body.get("usage") or {}
    text = body["choices"][0]["message"].get("content") or ""
    return Reply(text, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))


class OpenAIClient(JudgeClient):
    def __init__(self, cfg: JudgeConfig, cache: JudgeCache | None = None, qps: float | None = None):
        import openai

        super().__init__(cfg, cache, qps)
        self._sdk = openai
        # Local servers usually ignore the key, but the SDK insists on one.
        key = api_key_from_env(cfg.key_env, cfg.judge) or "no-key-needed"
        self.client = openai.OpenAI(
            api_key=key, base_url=cfg.base_url, timeout=cfg.timeout_s, max_retries=0
        )

    def _params(self, req: ChatRequest) -> dict[str, Any]:
        messages = [{"role": "system", "content": req.system}]
        messages += [{"role": role, "content": text} for role, text in req.messages]
        params: dict[str, Any] = {
            "model": self.model, "messages": messages, "temperature": req.temperature,
        }
        # OpenAI's current name for the limit; compatible servers still expect `max_tokens`.
        limit = "max_tokens" if self.cfg.judge == "openai_compatible" else "max_completion_tokens"
        params[limit] = req.max_tokens
        if req.schema is not None and self.cfg.structured_output == "json_schema":
            params["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "judgment", "schema": json.loads(req.schema), "strict": True},
            }
        elif req.schema is not None and self.cfg.structured_output == "json_object":
            # llama-cpp-python's form. Bounding the rationale to half of max_tokens characters
            # leaves room for the rest of the JSON even at one character per token.
            schema = bounded(req.schema, max_chars=req.max_tokens // 2)
            params["response_format"] = {"type": "json_object", "schema": json.loads(schema)}
        return params

    def _send(self, req: ChatRequest) -> Reply:
        completion = self.client.chat.completions.create(**self._params(req))
        return _reply(completion.model_dump())

    def _classify(self, exc: Exception) -> Failure:
        sdk = self._sdk
        if isinstance(exc, sdk.APIConnectionError):  # includes APITimeoutError
            return Failure("retry", f"{type(exc).__name__}: {exc}")
        if isinstance(exc, sdk.APIStatusError):
            status = exc.status_code
            msg = f"HTTP {status}: {exc.message}"
            if status in _RETRY_STATUS or status >= 500:
                return Failure("retry", msg, _retry_after(exc), status)
            if status in _FATAL_STATUS:
                hint = f" (check the key in ${self.cfg.key_env})" if status in (401, 403) else ""
                return Failure("fatal", f"{msg}{hint}", status=status)
            return Failure("row", msg, status=status)
        raise exc

    # -- Batch API ----------------------------------------------------------------------------
    def _batch_submit(self, items: list[tuple[str, ChatRequest]]) -> str:
        lines = [
            json.dumps({"custom_id": key, "method": "POST", "url": _ENDPOINT, "body": self._params(r)})
            for key, r in items
        ]
        data = ("\n".join(lines) + "\n").encode("utf-8")
        upload = self.client.files.create(file=("judge-batch.jsonl", data), purpose="batch")
        batch = self.client.batches.create(
            input_file_id=upload.id, endpoint=_ENDPOINT, completion_window="24h",
            metadata={"purpose": "cogumi judge"},
        )
        return batch.id

    def _batch_state(self, batch_id: str) -> Literal["running", "ended", "failed"]:
        status = self.client.batches.retrieve(batch_id).status
        if status == "failed":  # the input was rejected: nothing ran
            return "failed"
        # expired/cancelled batches still deliver what they finished in their output file
        return "ended" if status in ("completed", "expired", "cancelled") else "running"

    def _batch_results(self, batch_id: str) -> dict[str, Reply | str]:
        batch = self.client.batches.retrieve(batch_id)
        out: dict[str, Reply | str] = {}
        for file_id in (batch.error_file_id, batch.output_file_id):  # successes win
            if not file_id:
                continue
            for line in self.client.files.content(file_id).text.splitlines():
                if not line.strip():
                    continue
                rec = json.loads(line)
                response, error = rec.get("response") or {}, rec.get("error")
                if error is None and response.get("status_code") == 200:
                    out[rec["custom_id"]] = _reply(response["body"])
                else:
                    detail = error or (response.get("body") or {}).get("error") or response
                    out[rec["custom_id"]] = f"errored: {json.dumps(detail)[:300]}"
        return out
