"""The contracts between the ingress, the router and the model server.

Each side imports only this module: the HTTP layer never sees an engine, the model server never
sees HTTP, and a learned router replaces `NamePolicy` by implementing `RoutingPolicy`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from cogumi_ray.generate.config import GenParams

BASE = "base"  # the option name of the base model (no modifier)

Messages = list[dict[str, str]]  # [{"role": "user", "content": "..."}], roles system/user/assistant
Prompt = Messages | str  # chat messages (the chat template applies) or raw completion text
FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class Decision:
    """Which option answers: BASE or a modifier name, with the policy's confidence (None = the
    client forced it, or the policy does not score)."""

    option: str
    confidence: float | None
    model: str  # the id the answer is reported under (the base's name, or "cogumi:<modifier>")
    # A progressive policy's switch: the base tokens after which it chose this modifier (the
    # policy's step; the served answer is the modifier's whole). None = decided before generating.
    switched_after: int | None = None


@dataclass
class GenResult:
    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int


@dataclass
class GenerationRequest:
    """One OpenAI request, reduced to what routing and generation need."""

    prompt: Prompt
    params: GenParams  # max_new_tokens, temperature, top_p, stop, seed
    model: str  # the model the client asked for
    n: int = 1  # choices; choice i samples with seed + i


@dataclass
class Routed:
    decision: Decision
    results: list[GenResult]  # one per choice (per prompt x choice for a list of prompts)


@dataclass
class Piece:
    """One streamed item: a text delta of choice `index`, or its final result (`done`)."""

    index: int
    text: str = ""
    done: GenResult | None = None


@runtime_checkable
class Generator(Protocol):
    """A loaded base model that answers with or without a LoRA modifier.

    Implementations hold one base and any number of adapters, switch adapters per call without
    reloading the base, and are called from one thread at a time or lock themselves.
    """

    model_name: str

    def load_adapter(self, name: str) -> None:
        """Make adapter `name` (a key of the config's adapters) ready; idempotent."""
        ...

    def unload_adapter(self, name: str) -> None:
        """Free adapter `name`; a later call that needs it loads it again."""
        ...

    def generate(self, prompt: Prompt, params: GenParams, adapter: str | None) -> GenResult:
        """One answer; adapter None = the base alone."""
        ...

    def stream(self, prompt: Prompt, params: GenParams, adapter: str | None) -> Iterator[str | GenResult]:
        """The same answer as text pieces, then its GenResult (whose text is the whole answer).

        Request errors (prompt too long) are raised before the first piece.
        """
        ...

    def close(self) -> None: ...


@runtime_checkable
class ConfidenceProbe(Protocol):
    """A Generator that can also read the base's calibrated confidence (llama.cpp, hf): what a
    router trained with the feature `base_confidence` reads after each progressive step."""

    def base_confidence(self, prompt: Prompt, ks: list[int]) -> list[float]:
        """P(the base's answer passes) after each k of `ks` generated tokens, from one greedy run
        of max(ks) base tokens: the compress stage's calibrator on `compress.calibration`'s prefix
        features, as the router stage read them. EngineError when no calibrator is configured."""
        ...


@runtime_checkable
class RoutingPolicy(Protocol):
    def decide(self, messages: Messages, requested_model: str) -> Decision:
        """The option for this conversation; ServeError(404) for a model nobody serves."""
        ...

    def models(self) -> list[str]:
        """Model ids a client may ask for, as /v1/models lists them."""
        ...


@runtime_checkable
class Upstream(Protocol):
    """What the HTTP layer calls: the router, behind Ray handles or in-process (tests)."""

    async def models(self) -> list[str]: ...

    async def complete(self, request: GenerationRequest) -> Routed: ...

    def stream(self, request: GenerationRequest) -> AsyncIterator[Decision | Piece]:
        """The Decision first, then the Pieces of every choice in order."""
        ...
