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


def tagged(name: str) -> Callable[[Maker], Maker]:
    """Decorator: record the family name in metadata["task"] (lets failure analysis group by it)."""

    def wrap(fn: Callable[[random.Random], Task]) -> Maker:
        def make(rng: random.Random) -> Task:
            t = fn(rng)
            return Task(t.instruction, t.response, {"task": name, **t.metadata})

        make.__name__ = fn.__name__
        return make

    return wrap
