"""Suite scores kept per run, keyed by everything that decides them.

Several stages score the same model on the same rows: eval_base and distillation's "before" score
the trained base on the held-out split, distillation's "after" and the modifiers' base option
score the distilled model on it again. A greedy score is a pure function of the model's files,
the rows, the engine settings and the decoding, so the second request reads the first one's
verdicts instead of generating ~300 answers again (~10-15 s each on 2 cores).

Sampled decoding (temperature > 0) is never cached: a second score is a second sample.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from cogumi_ray import storage

if TYPE_CHECKING:
    from cogumi_ray.data.schema import Example
    from cogumi_ray.eval.suite import SuiteScore
    from cogumi_ray.generate.config import EngineConfig, GenParams

log = logging.getLogger(__name__)

# Bump when grading or the stored layout changes, so older entries stop matching.
FORMAT = 1


def cache_dir(run_dir: str) -> str:
    return storage.join(run_dir, "cache", "scores")


def key(model: str | None, examples: list[Example], engine: EngineConfig, params: GenParams,
        batch_size: int) -> str | None:
    """The cache key, or None when the score must not be cached (sampling, a model that is not a
    folder or file this process can hash, e.g. an HTTP endpoint)."""
    if not params.greedy or model is None or not storage.exists(model):
        return None
    from cogumi_ray import __version__

    # the path is passed separately from the engine's own model field, which is not content; a
    # llama.cpp LoRA adapter is keyed by its content too, and leaves the key of a base alone as
    # it was before the field existed
    engine_json = engine.model_dump(mode="json", exclude={"model": True, "llama_cpp": {"lora"}})
    lora = engine.llama_cpp.lora if engine.kind == "llama_cpp" else None
    if lora and not storage.exists(lora):
        return None  # never the base's entry: the engine then says the adapter is missing
    return storage.hash_object({
        "format": FORMAT,
        "version": __version__,
        "model": storage.content_hash(model),
        "engine": engine_json,
        **({"lora": storage.content_hash(lora)} if lora else {}),
        "params": params.model_dump(mode="json"),
        "batch_size": batch_size,  # left padding differs with the batch, so greedy can too
        "rows": storage.hash_object([ex.to_row() for ex in examples]),
    })


def _path(directory: str, k: str) -> str:
    return storage.join(directory, f"{k}.parquet")


def load(directory: str, k: str) -> SuiteScore | None:
    """The cached score, or None when absent or unreadable (then it is simply recomputed)."""
    from cogumi_ray.eval.scores import BenchmarkScore, items_from_parquet
    from cogumi_ray.eval.suite import SuiteScore

    path = _path(directory, k)
    if not storage.exists(path):
        return None
    fs, p = storage.fs_and_path(path)
    try:
        with fs.open(p, "rb") as f:
            items = items_from_parquet(f.read())
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("score cache entry %s is unreadable (%s); scoring again", path, e)
        return None
    return SuiteScore.from_benchmark(BenchmarkScore.from_items("suite", items))


def save(directory: str, k: str, score: SuiteScore) -> None:
    from cogumi_ray.eval.scores import items_parquet

    storage.makedirs(directory)
    storage.atomic_write_bytes(_path(directory, k), items_parquet(score.items))
