"""What every domain module provides: task makers grouped by difficulty.

A maker is `fn(rng) -> Task`: it draws its slots from the seeded `rng` and computes the reference
response and the verifier data (stored in `Task.metadata`). Responses follow one fixed format per
task family so a small model can learn the format and the verifier can extract the answer.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Task:
    instruction: str
    response: str
    metadata: dict[str, Any] = field(default_factory=dict)


Maker = Callable[[random.Random], Task]
Makers = dict[str, tuple[Maker, ...]]  # difficulty -> makers

_NON_ALNUM = re.compile(r"[^0-9a-z]+")


def normalise_for_similarity(text: str) -> str:
    """The most aggressive normalisation a dedup step plausibly applies (case, punctuation,
    whitespace), so 'distinct under this' implies 'distinct' under milder ones too."""
    return _NON_ALNUM.sub(" ", text.lower()).strip()


def char_ngrams(text: str, n: int = 3) -> frozenset[str]:
    if len(text) < n:
        return frozenset({text}) if text else frozenset()
    return frozenset(text[i : i + n] for i in range(len(text) - n + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    inter = len(a & b) if len(a) <= len(b) else len(b & a)
    return inter / (len(a) + len(b) - inter)


# Lead-ins and closers that real requests carry around the task itself. They change no answer, so
# the model must learn to ignore them, and they multiply the distinct rows a short template can
# produce (two rows that differ only in one number are near-duplicates for curation).
LEAD_INS: tuple[str, ...] = (
    "Hey! ", "Quick question. ", "Hi there. ", "Okay, next one. ", "One more task. ", "Task: ",
    "Request: ", "Here is a task. ", "Hello. ", "Help me out here. ", "Good morning. ",
    "New request. ", "Question: ", "Small favour. ", "Next up. ", "Hi! ",
)
CLOSERS: tuple[str, ...] = (
    " Thanks!", " Thank you.", " Please be quick.", " Keep it short.", " Cheers.",
    " I appreciate it.", " Much obliged.", " Thanks a lot.", " No rush.", " Ta.",
)


def frame(rng: random.Random, instruction: str, p_lead: float = 0.5, p_close: float = 0.4) -> str:
    """`instruction` with an optional lead-in and (after final punctuation only) a closer."""
    if rng.random() < p_lead:
        instruction = rng.choice(LEAD_INS) + instruction
    if instruction[-1:] in ".?!" and rng.random() < p_close:
        instruction += rng.choice(CLOSERS)
    return instruction


def tagged(name: str) -> Callable[[Maker], Maker]:
    """Decorator: record the family name in metadata["task"] (lets failure analysis group by it)."""

    def wrap(fn: Callable[[random.Random], Task]) -> Maker:
        def make(rng: random.Random) -> Task:
            t = fn(rng)
            return Task(t.instruction, t.response, {"task": name, **t.metadata})

        make.__name__ = fn.__name__
        return make

    return wrap
