"""The clean, seeded task suite: `generate_suite(cfg) -> list[Example]`.

Same seed, same config -> the same examples, byte for byte (each domain draws from its own
`random.Random` seeded by a string, which Python hashes deterministically). Difficulties rotate
easy/medium/hard so every domain has a third of each.

Templated tasks are near-duplicates of each other by nature ("What is 3 + 4?" vs "What is 3 + 5?"),
and curation's MinHash step would merge them. So a candidate is kept only if its character 3-gram
Jaccard with every task already kept in its domain stays below `cfg.clean_max_jaccard`, on
instruction + response under a mild normalisation (case, whitespace) and an aggressive one (also
punctuation), and on the instruction alone; curation's choice of normalisation then cannot matter.
"""

from __future__ import annotations

import copy
import functools
import random
import zlib
from types import ModuleType

from cogumi_ray.data.config import DIFFICULTIES, SuiteConfig
from cogumi_ray.data.schema import Example
from cogumi_ray.data.suite.base import Makers, Task, char_ngrams, jaccard, normalise_for_similarity
from cogumi_ray.errors import DataError

SOURCE = "cogumi_suite"
_MAX_ATTEMPTS = 400  # candidates tried per example before the domain counts as exhausted


def domain_makers(domain: str) -> Makers:
    from cogumi_ray.data.suite import (
        automation_tasks,
        code_tasks,
        general_tasks,
        math_tasks,
        reasoning_tasks,
    )

    modules: dict[str, ModuleType] = {
        "code": code_tasks, "math": math_tasks, "reasoning": reasoning_tasks,
        "automation": automation_tasks, "general": general_tasks,
    }
    if domain not in modules:
        raise DataError(f"no task generator for domain {domain!r}; domains: {sorted(modules)}")
    return modules[domain].MAKERS


class _Distinct:
    """Keeps the 3-gram sets of accepted tasks; rejects candidates too similar to any of them.

    A 64-permutation MinHash (deterministic crc32 hashing) screens the kept tasks first, and only
    those whose estimate comes within 0.15 of the limit get an exact Jaccard. A pair right at the
    limit slips through the screen with probability ~0.5%; one at limit + 0.1 (curation's 0.8 for
    the default 0.7) with ~1e-5, so the margin to curation's threshold holds.
    """

    _PERMS = 64

    def __init__(self, max_jaccard: float) -> None:
        import numpy as np

        self.np = np
        self.max_jaccard = max_jaccard
        gen = np.random.default_rng(20240917)
        # Multiply-shift hashing: (a*h + b mod 2^64) >> 32 with odd 64-bit a. (A small a with
        # "mod prime" would keep the order of h, so every permutation would pick the same gram.)
        self.a = gen.integers(0, 1 << 64, self._PERMS, dtype=np.uint64, endpoint=False) | 1
        self.b = gen.integers(0, 1 << 64, self._PERMS, dtype=np.uint64, endpoint=False)
        self.sets: list[tuple[frozenset[str], ...]] = []
        self.sigs = np.zeros((0, 3, self._PERMS), dtype=np.uint64)

    def _signature(self, grams: frozenset[str]):
        np = self.np
        if not grams:
            return np.full(self._PERMS, 1 << 32, dtype=np.uint64)
        h = np.fromiter((zlib.crc32(g.encode()) for g in grams), dtype=np.uint64, count=len(grams))
        return ((h[:, None] * self.a + self.b) >> np.uint64(32)).min(axis=0)  # wraps mod 2^64

    def accept(self, task: Task) -> bool:
        np = self.np
        full = f"{task.instruction}\n{task.response}"
        views = (
            char_ngrams(_mild(task.instruction)),
            char_ngrams(_mild(full)),
            char_ngrams(normalise_for_similarity(full)),
        )
        sig = np.stack([self._signature(v) for v in views])
        if self.sets:
            est = (self.sigs == sig[None]).mean(axis=2)  # (kept, views) estimated Jaccard
            screen = self.max_jaccard - 0.15
            for i in np.flatnonzero((est >= screen).any(axis=1)):
                if any(jaccard(a, b) >= self.max_jaccard for a, b in zip(views, self.sets[i],
                                                                         strict=True)):
                    return False
        self.sets.append(views)
        self.sigs = np.concatenate([self.sigs, sig[None]])
        return True


def _mild(text: str) -> str:
    return " ".join(text.lower().split())


def generate_domain(domain: str, n: int, seed: int, max_jaccard: float) -> list[Example]:
    makers = domain_makers(domain)
    rng = random.Random(f"cogumi-suite:{seed}:{domain}")
    distinct = _Distinct(max_jaccard)
    out: list[Example] = []
    for i in range(n):
        difficulty = DIFFICULTIES[i % len(DIFFICULTIES)]
        for _ in range(_MAX_ATTEMPTS):
            task = rng.choice(makers[difficulty])(rng)
            if distinct.accept(task):
                break
        else:
            raise DataError(
                f"domain {domain!r} ran out of distinct {difficulty} tasks after {len(out)} "
                f"examples (clean_max_jaccard={max_jaccard}); lower suite.examples_per_domain "
                "or raise suite.clean_max_jaccard"
            )
        out.append(Example(
            id=f"{domain}-{i:05d}",
            instruction=task.instruction,
            response=task.response,
            domain=domain,
            difficulty=difficulty,
            source=SOURCE,
            metadata=dict(task.metadata),
        ))
    return out


def generate_suite(cfg: SuiteConfig) -> list[Example]:
    """The clean examples of every configured domain, before any mess is planted."""
    out: list[Example] = []
    for domain in cfg.domains:
        out.extend(copy.deepcopy(
            _cached_domain(domain, cfg.examples_per_domain, cfg.seed, cfg.clean_max_jaccard)
        ))
    return out


@functools.lru_cache(maxsize=16)
def _cached_domain(domain: str, n: int, seed: int, max_jaccard: float) -> tuple[Example, ...]:
    # Several stages and tests ask for the same suite in one process; it is pure in its arguments.
    return tuple(generate_domain(domain, n, seed, max_jaccard))
