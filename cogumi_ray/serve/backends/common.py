"""What every Generator backend does the same way: prompt ids from an HF tokenizer, and the
non-streaming answer as the end of the streaming one (so both share one decode loop)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cogumi_ray.serve.protocol import GenResult, Prompt


def hf_prompt_ids(tok: Any, prompt: Prompt) -> list[int]:
    """Raw completion text as-is; chat messages through the model's chat template, as in training."""
    if isinstance(prompt, str):
        return list(tok(prompt)["input_ids"])
    from cogumi_ray.models.chat import build_chat_prompt, encode_chat

    return encode_chat(tok, build_chat_prompt(tok, prompt))


def final_result(items: Iterable[str | GenResult]) -> GenResult:
    """The GenResult a backend's stream ends with (its text pieces are part of it)."""
    for item in items:
        if isinstance(item, GenResult):
            return item
    raise AssertionError("stream ended without a result")
