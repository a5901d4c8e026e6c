"""The base's calibrated confidence per query, as the router reads it (feature `base_confidence`).

The compress stage fits a calibrator (`compress/calibrator.json`) mapping confidence features of
the served model's first generated tokens to P(the base's answer passes). Here the same features
are read for the router's rows, from the compress stage's GGUF by llama.cpp (its HF folder when
there is no GGUF), in one greedy run of max(ks) tokens per query; every k the router needs (the
progressive policy's steps, the calibrator's own first_tokens) gets the features of its prefix,
so the confidence after 3, 4 and 5 tokens costs one run. The raw features are cached beside the
router, keyed by model, tokenizer, queries and ks: a re-run that changes only `route.*` reads
them back.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cogumi_ray import storage

if TYPE_CHECKING:
    import numpy as np

    from cogumi_ray.route.config import FeatureConfig
    from cogumi_ray.route.labels import LabelSet

log = logging.getLogger(__name__)

COLUMN = "base_confidence"
CACHE = "base_confidence.npz"
INPUTS = ("calibrator", "gguf", "base")  # compress.calibrator, compress.gguf, compress.model


@dataclass
class BaseConfidence:
    ks: list[int]  # generated base tokens
    values: np.ndarray  # (len(ks), rows) calibrated P(the base's answer passes) after k tokens
    source: str  # "gguf" or "hf": which model generated
    seconds: float
    cached: bool

    def at(self, k: int) -> np.ndarray:
        return self.values[self.ks.index(k)]

    def rows(self, idx: slice) -> BaseConfidence:
        return BaseConfidence(self.ks, self.values[:, idx], self.source, self.seconds, self.cached)

    def summary(self) -> dict[str, object]:
        """Mean confidence per k and how many rows change between consecutive ks (the report)."""
        import numpy as np

        return {"source": self.source, "ks": self.ks, "seconds": round(self.seconds, 3),
                "cached": self.cached,
                "mean": {str(k): round(float(v.mean()), 6) for k, v in zip(self.ks, self.values,
                                                                            strict=True)},
                "mean_abs_change": {f"{a}->{b}": round(float(np.abs(vb - va).mean()), 6)
                                    for a, b, va, vb in zip(self.ks[:-1], self.ks[1:],
                                                            self.values[:-1], self.values[1:],
                                                            strict=True)}}


def available(inputs: dict[str, str]) -> bool:
    return bool(inputs.get("calibrator")) and bool(inputs.get("gguf") or inputs.get("base"))


def read_base_confidence(texts: list[str], ks: list[int], inputs: dict[str, str],
                         fc: FeatureConfig, cache_dir: str) -> BaseConfidence | None:
    """Calibrated confidence of `texts` after each k of `ks` tokens; None (logged) without the
    compress stage's calibrator and model among `inputs`."""
    import numpy as np

    from cogumi_ray.compress.calibration import Calibrator

    if not available(inputs):
        log.info("route: no compress calibrator and model among the inputs (%s): the router "
                 "trains without the base's confidence", sorted(inputs))
        return None
    ks = sorted(set(ks))
    t0 = time.perf_counter()
    calibrator = Calibrator.load(inputs["calibrator"])
    gguf, base = inputs.get("gguf"), inputs.get("base")
    source = "gguf" if gguf else "hf"
    key = storage.hash_object({
        "source": source, "model": storage.content_hash(gguf or base),  # type: ignore[arg-type]
        "tokenizer": storage.content_hash(base) if base else None, "texts": texts, "ks": ks})
    cache = storage.join(cache_dir, CACHE)
    feats = _read_cache(cache, key)
    cached = feats is not None
    if feats is None:
        feats = _features(texts, ks, gguf, base, fc)
        _write_cache(cache, key, feats)
    values = np.stack([calibrator.predict(f) for f in feats])  # (ks, rows)
    out = BaseConfidence(ks, values, source, time.perf_counter() - t0, cached)
    log.info("route: base confidence of %d queries after %s tokens (%s%s) in %.1fs", len(texts),
             ks, source, ", cached" if cached else "", out.seconds)
    return out


def _features(texts: list[str], ks: list[int], gguf: str | None, base: str | None,
              fc: FeatureConfig) -> np.ndarray:
    """(ks, rows, features) raw confidence features."""
    from cogumi_ray.compress import calibration as cal
    from cogumi_ray.errors import DataError

    if gguf:
        if not base:
            raise DataError(f"route: the GGUF {gguf!r} needs the HF folder beside it (input 'base', "
                            "the compress stage's model) to chat-format the queries as compress did")
        ids = cal.chat_token_ids(storage.local_path(base), texts)
        return cal.gguf_prefix_features(storage.local_path(gguf), ids, ks,
                                        n_threads=fc.confidence_threads)
    import torch

    threads = torch.get_num_threads()
    if fc.threads:
        torch.set_num_threads(fc.threads)
    try:
        return cal.hf_prefix_features(storage.local_path(base), texts, ks,  # type: ignore[arg-type]
                                      device=fc.device)
    finally:
        torch.set_num_threads(threads)


def _read_cache(path: str, key: str) -> np.ndarray | None:
    import numpy as np

    if not storage.exists(path):
        return None
    fs, p = storage.fs_and_path(path)
    try:
        with fs.open(p, "rb") as f, np.load(io.BytesIO(f.read()), allow_pickle=False) as z:
            return z["features"] if str(z["key"]) == key else None
    except (OSError, ValueError, KeyError) as e:  # a torn or foreign file: recompute
        log.warning("route: ignoring the confidence cache %s (%s)", path, e)
        return None


def _write_cache(path: str, key: str, feats: np.ndarray) -> None:
    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, key=np.array(key), features=feats)
    storage.atomic_write_bytes(path, buf.getvalue())


def with_confidence(labels: LabelSet, values: np.ndarray) -> LabelSet:
    """`labels` with `base_confidence` = `values` appended to its extra features."""
    import dataclasses

    import numpy as np

    from cogumi_ray.errors import ConfigError

    if COLUMN in labels.extra_columns:
        raise ConfigError(f"route.features.extra_columns names {COLUMN!r}, which the stage "
                          "computes itself; remove it (route.features.base_confidence decides)")
    return dataclasses.replace(labels, extras=np.column_stack([labels.extras, values]),
                               extra_columns=[*labels.extra_columns, COLUMN])


def confidence_at(extras: np.ndarray, values: np.ndarray | float) -> np.ndarray:
    """`extras` whose last column (the confidence) is `values`: the confidence after k tokens, or
    the featurizer's training mean where it is not known yet (before the base generated)."""
    out = extras.copy()
    out[:, -1] = values
    return out
