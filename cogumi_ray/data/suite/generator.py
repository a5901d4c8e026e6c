"""The clean, seeded task suite: `generate_suite(cfg) -> list[Example]`.

Same seed, same config -> the same examples, byte for byte (each domain draws from its own
`random.Random` seeded by a string, which Python hashes deterministically). Difficulties rotate
easy/medium/hard so every domain has a third of each.

Templated tasks are near-duplicates of each other by nature ("What is 3 + 4?" vs "What is 3 + 5?"),
and curation's MinHash step would merge them. So a candidate is kept only if its character 3-gram
Jaccard with every task already kept in its domain stays below `cfg.clean_max_jaccard`, on
instruction + response (what curation compares) under a mild normalisation (case, whitespace) and
an aggressive one (also punctuation); curation's choice of normalisation then cannot matter.
Within a difficulty, templates take turns (`_Templates`), so a short template is not crowded out
by long ones that pass the similarity test more easily.
"""

from __future__ import annotations

import copy
import multiprocessing
import os
import random
from concurrent.futures import ProcessPoolExecutor
from types import ModuleType

from cogumi_ray.data.config import DIFFICULTIES, SuiteConfig
from cogumi_ray.data.novelty import ByteMinHash, mild
from cogumi_ray.data.schema import Example
from cogumi_ray.data.suite.base import (
    Maker,
    Makers,
    Task,
    char_ngrams,
    frame,
    jaccard,
    normalise_for_similarity,
)
from cogumi_ray.errors import DataError

SOURCE = "cogumi_suite"


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

    Curation compares instruction + response, so that is what is compared here, under a mild
    (case, whitespace) and an aggressive (also punctuation) normalisation. A 128-permutation
    MinHash of the mild view, truncated to one byte per permutation (b-bit MinHash: two different
    grams collide with probability 1/256, which biases the estimate by < 0.004), screens every
    kept task in one vectorised comparison; only those estimated within `_MARGIN` of the limit get
    an exact Jaccard, and an estimate `_MARGIN` above it rejects outright. The estimate's standard
    deviation at Jaccard 0.8 is 0.035, so a pair at the limit escapes the screen with
    probability ~1e-5 (4 standard deviations).
    """

    _MARGIN = 0.15

    def __init__(self, max_jaccard: float) -> None:
        import numpy as np

        self.np = np
        self.max_jaccard = max_jaccard
        self.minhash = ByteMinHash()
        self.sets: list[tuple[frozenset[str], frozenset[str]]] = []
        self.sigs = np.zeros((1024, ByteMinHash.perms), dtype=np.uint8)  # grown by doubling

    def accept(self, task: Task) -> bool:
        np = self.np
        full = f"{task.instruction}\n{task.response}"
        views = (char_ngrams(mild(full)), char_ngrams(normalise_for_similarity(full)))
        sig = self.minhash.signature(views[0])
        n = len(self.sets)
        if n:
            est = (self.sigs[:n] == sig).sum(axis=1) / ByteMinHash.perms  # (kept,) estimates
            if est.max() >= self.max_jaccard + self._MARGIN:
                return False
            for i in np.flatnonzero(est >= self.max_jaccard - self._MARGIN):
                if any(jaccard(a, b) >= self.max_jaccard
                       for a, b in zip(views, self.sets[i], strict=True)):
                    return False
        if n == len(self.sigs):
            self.sigs = np.concatenate([self.sigs, np.zeros_like(self.sigs)])
        self.sigs[n] = sig
        self.sets.append(views)
        return True


class _Templates:
    """Round-robin over one difficulty's makers, so every template gets the same share of rows.

    A maker that fails `_EXHAUSTED_AFTER` candidates in a row has produced (about) every distinct
    task it can; it drops out and the others share its remaining slots. `counts` is reported in
    the suite stats so a starved template shows.
    """

    _EXHAUSTED_AFTER = 80

    def __init__(self, makers: tuple[Maker, ...]) -> None:
        self.makers = list(makers)
        self.counts = {_name(m): 0 for m in makers}
        self.live = list(makers)

    def next_task(self, rng: random.Random, distinct: _Distinct) -> Task | None:
        while self.live:
            maker = min(self.live, key=lambda m: self.counts[_name(m)])  # fewest rows first
            for _ in range(self._EXHAUSTED_AFTER):
                task = maker(rng)
                task = Task(frame(rng, task.instruction), task.response, task.metadata)
                if distinct.accept(task):
                    self.counts[_name(maker)] += 1
                    return task
            self.live.remove(maker)
        return None


def _name(maker: Maker) -> str:
    return maker.__name__


def generate_domain(domain: str, n: int, seed: int, max_jaccard: float) -> list[Example]:
    makers = domain_makers(domain)
    rng = random.Random(f"cogumi-suite:{seed}:{domain}")
    distinct = _Distinct(max_jaccard)
    templates = {d: _Templates(makers[d]) for d in DIFFICULTIES}
    out: list[Example] = []
    for i in range(n):
        difficulty = DIFFICULTIES[i % len(DIFFICULTIES)]
        task = templates[difficulty].next_task(rng, distinct)
        if task is None:
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


# Below this many rows per domain, starting worker processes costs more than it saves.
_PARALLEL_MIN_ROWS = 2000


def generate_suite(cfg: SuiteConfig) -> list[Example]:
    """The clean examples of every configured domain, before any mess is planted.

    Domains are independent (own RNG, own similarity index), so a large suite generates them in
    parallel processes; the result is identical either way.
    """
    args = [(d, cfg.examples_per_domain, cfg.seed, cfg.clean_max_jaccard) for d in cfg.domains]
    workers = min(len(args), os.cpu_count() or 1)
    missing = [a for a in args if a not in _done]
    if workers > 1 and len(missing) > 1 and cfg.examples_per_domain >= _PARALLEL_MIN_ROWS:
        ctx = multiprocessing.get_context("spawn")  # callers may hold threads (Ray, tqdm)
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            for a, rows in zip(missing, pool.map(_generate, missing), strict=True):
                _remember(a, rows)
    out: list[Example] = []
    for a in args:
        out.extend(copy.deepcopy(_domain(a)))
    return out


# Several stages and tests ask for the same suite in one process; it is pure in its arguments.
_done: dict[tuple[str, int, int, float], tuple[Example, ...]] = {}
_CACHE_SIZE = 16


def _generate(a: tuple[str, int, int, float]) -> tuple[Example, ...]:
    return tuple(generate_domain(*a))


def _remember(a: tuple[str, int, int, float], rows: tuple[Example, ...]) -> None:
    if len(_done) >= _CACHE_SIZE:
        _done.pop(next(iter(_done)))
    _done[a] = rows


def _domain(a: tuple[str, int, int, float]) -> tuple[Example, ...]:
    if a not in _done:
        _remember(a, _generate(a))
    return _done[a]



