"""The serving area's exception: an HTTP status plus OpenAI's error fields, raised anywhere in the
graph (policy, limits, model server) and rendered once by the ingress."""

from __future__ import annotations

from typing import Any

from cogumi_ray.errors import CogumiError


class ServeError(CogumiError):
    """A request the graph refuses, as OpenAI reports it: `{"error": {message, type, param, code}}`.

    Every field travels in `args`, so the error pickles across Ray replicas unchanged.
    """

    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status, message, type, code, param, headers)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def __str__(self) -> str:
        return f"{self.status} {self.code or self.type}: {self.message}"

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}


def bad_request(message: str, *, code: str = "invalid_value", param: str | None = None) -> ServeError:
    return ServeError(400, message, code=code, param=param)


def model_not_found(model: str, available: list[str]) -> ServeError:
    return ServeError(
        404, f"The model {model!r} does not exist; available models: {available} "
        "(GET /v1/models lists them).", code="model_not_found", param="model",
    )


def check_context(n_prompt: int, max_tokens: int, n_ctx: int, prompt: object) -> None:
    """OpenAI's 400 context_length_exceeded when prompt + max_tokens do not fit the window."""
    if n_prompt + max_tokens > n_ctx:
        raise ServeError(400, f"The prompt is {n_prompt} tokens and max_tokens is {max_tokens}; "
                         f"together they exceed the context window of {n_ctx} tokens.",
                         code="context_length_exceeded",
                         param="messages" if isinstance(prompt, list) else "prompt")
