"""What every engine shares: the `Engine` protocol, the `Completion` record, and stop handling.

Engines take *instructions* and apply the chat template themselves, so callers never need to know
whether the model behind them is an HF folder, a GGUF file or a remote endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from cogumi_ray.errors import ModelError
from cogumi_ray.generate.config import GenParams

FinishReason = Literal["stop", "length", "error"]


class EngineError(ModelError):
    """An engine cannot load its model or reach its endpoint, or returned something unusable."""


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float  # wall time of the call that produced it (rows of one batch share it)
    finish_reason: FinishReason


@runtime_checkable
class Engine(Protocol):
    name: str  # e.g. "hf", reported per row so mixed-engine results stay attributable

    def generate(self, prompts: list[str], params: GenParams) -> list[Completion]:
        """Answer each instruction; one Completion per prompt, in order."""
        ...

    def close(self) -> None:
        """Release the model / connection (idempotent)."""
        ...


def cut_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """Truncate `text` at the earliest stop string; (text, whether one was found)."""
    cut = min((i for s in stop if s and (i := text.find(s)) >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
