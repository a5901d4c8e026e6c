"""Router features: the query's MiniLM embedding projected on a PCA basis fitted on the training
rows, then optional numbers (the base's confidence, session state).

The PCA keeps the directions along which the training queries differ (domain, task kind) and
drops the rest, so a 128-dimensional input trains well from a few hundred labelled rows. The
basis, scale and standardisation live in plain arrays saved beside the router.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cogumi_ray.errors import DataError

if TYPE_CHECKING:
    import numpy as np

    from cogumi_ray.route.config import FeatureConfig

_EMBEDDERS: dict[tuple[str | None, str, str], Any] = {}
_MAX_TURNS = 10  # turns beyond this look alike to the router


def embedder(model: str | None, device: str, quantize: str) -> Any:
    """The sentence-embedding model, loaded once per process (loading takes seconds); with
    quantize='int8' its Linear layers are dynamically quantized (CPU only)."""
    from cogumi_ray.failures.embed import load_embedder

    key = (model, device, quantize)
    if key not in _EMBEDDERS:
        m = load_embedder(model, device)
        if quantize == "int8":  # CPU only: FeatureConfig refuses int8 on another device
            m = quantize_linear_int8(m)
        _EMBEDDERS[key] = m
    return _EMBEDDERS[key]


def quantize_linear_int8(model: Any) -> Any:
    """Dynamic int8 quantization of every nn.Linear (weights int8, activations quantized per
    call): a single short query is dominated by these matmuls on CPU."""
    import warnings

    import torch

    with warnings.catch_warnings():  # torch points eager quantization users at torchao
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def embed(texts: list[str], fc: FeatureConfig) -> np.ndarray:
    """(rows, 384) L2-normalised float32 embeddings."""
    import numpy as np
    import torch

    model = embedder(fc.embed_model, fc.device, fc.embed_quantize)
    threads = torch.get_num_threads()
    if fc.threads:
        torch.set_num_threads(fc.threads)
    try:
        vectors = model.encode(list(texts), batch_size=fc.embed_batch_size, normalize_embeddings=True,
                               convert_to_numpy=True, show_progress_bar=False)
    finally:
        torch.set_num_threads(threads)
    return np.asarray(vectors, dtype=np.float32)


@dataclass
class SessionState:
    """What session memory knows before this turn is answered."""

    last_option: str | None = None
    escalated: bool = False  # the user's message reads as dissatisfied with the last answer
    turns: int = 0


def session_vector(state: SessionState | None, options: list[str]) -> np.ndarray:
    """[one-hot last option (zeros: none), escalated, turns/10 capped at 1]."""
    import numpy as np

    v = np.zeros(len(options) + 2, dtype=np.float32)
    if state is None:
        return v
    if state.last_option in options:
        v[options.index(state.last_option)] = 1.0
    v[-2] = float(state.escalated)
    v[-1] = min(state.turns, _MAX_TURNS) / _MAX_TURNS
    return v


class Featurizer:
    def __init__(self, mean: np.ndarray, components: np.ndarray, scale: float,
                 extra_mean: np.ndarray, extra_std: np.ndarray, options: list[str],
                 session: bool) -> None:
        self.mean = mean  # (384,)
        self.components = components  # (k, 384)
        self.scale = scale
        self.extra_mean, self.extra_std = extra_mean, extra_std  # (extras,)
        self.options = options
        self.session = session

    @classmethod
    def fit(cls, emb: np.ndarray, extras: np.ndarray, options: list[str], dims: int,
            session: bool) -> Featurizer:
        import numpy as np

        mean = emb.mean(axis=0)
        k = min(dims, emb.shape[0], emb.shape[1])
        _, _, vt = np.linalg.svd(emb - mean, full_matrices=False)
        components = vt[:k].astype(np.float32)
        proj = (emb - mean) @ components.T
        # One scale for every kept direction: ~unit variance on average, relative variances kept
        # (whitening would blow the noise directions up to the size of the domain directions).
        scale = float(1.0 / max(proj.std(), 1e-8))
        std = extras.std(axis=0) if len(extras) else np.zeros(extras.shape[1])
        return cls(mean.astype(np.float32), components, scale, extras.mean(axis=0) if len(extras)
                   else np.zeros(extras.shape[1]), np.where(std > 0, std, 1.0), options, session)

    @property
    def dim(self) -> int:
        return self.components.shape[0] + len(self.extra_mean) + (
            len(self.options) + 2 if self.session else 0)

    def transform(self, emb: np.ndarray, extras: np.ndarray | None = None,
                  sessions: list[SessionState | None] | None = None) -> np.ndarray:
        """(rows, dim) float32 from (rows, 384) embeddings; extras None = each at its training mean."""
        import numpy as np

        parts = [((emb - self.mean) @ self.components.T) * self.scale]
        if len(self.extra_mean):
            if extras is None:  # not known yet (the base's confidence before it answered): the
                parts.append(np.zeros((len(emb), len(self.extra_mean))))  # training mean
            elif extras.shape != (len(emb), len(self.extra_mean)):
                raise DataError(f"extra features have shape {extras.shape}; this router reads "
                                f"{len(self.extra_mean)} per query (route.features.extra_columns)")
            else:
                parts.append((extras - self.extra_mean) / self.extra_std)
        if self.session:
            states = sessions or [None] * len(emb)
            parts.append(np.stack([session_vector(s, self.options) for s in states]))
        return np.concatenate(parts, axis=1).astype(np.float32)

    def save(self, path: str) -> None:
        import numpy as np

        os.makedirs(path, exist_ok=True)
        np.savez(os.path.join(path, "features.npz"), mean=self.mean, components=self.components,
                 extra_mean=self.extra_mean, extra_std=self.extra_std)
        with open(os.path.join(path, "features.json"), "w", encoding="utf-8") as f:
            json.dump({"scale": self.scale, "options": self.options, "session": self.session}, f)

    @classmethod
    def load(cls, path: str) -> Featurizer:
        import numpy as np

        with open(os.path.join(path, "features.json"), encoding="utf-8") as f:
            meta = json.load(f)
        with np.load(os.path.join(path, "features.npz"), allow_pickle=False) as z:
            return cls(z["mean"], z["components"], float(meta["scale"]), z["extra_mean"],
                       z["extra_std"], list(meta["options"]), bool(meta["session"]))
