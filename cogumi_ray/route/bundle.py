"""A trained router as one folder: the featurizer, the router and the policy settings it was
tuned with. What the router stage saves and what a serving replica loads.

    router.json / router.npz      the Router (models.py)
    features.json / features.npz  the PCA basis and scalers (features.py)
    bundle.json                   feature and policy config, option costs
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cogumi_ray.errors import ModelError
from cogumi_ray.route.config import FeatureConfig, PolicyConfig

if TYPE_CHECKING:
    import numpy as np

    from cogumi_ray.route.features import Featurizer, SessionState
    from cogumi_ray.route.models import Router


@dataclass
class RouterBundle:
    router: Router
    featurizer: Featurizer
    features: FeatureConfig
    policy: PolicyConfig
    costs: list[float]  # per option, in router.options order

    @property
    def options(self) -> list[str]:
        return self.router.options

    def probs_from_embeddings(self, emb: np.ndarray, extras: np.ndarray | None = None,
                              sessions: list[SessionState | None] | None = None) -> np.ndarray:
        """(rows, options) calibrated probabilities from (rows, 384) embeddings."""
        return self.router.predict_proba(self.featurizer.transform(emb, extras, sessions))

    def probs(self, texts: list[str], extras: np.ndarray | None = None,
              sessions: list[SessionState | None] | None = None) -> np.ndarray:
        from cogumi_ray.route.features import embed

        return self.probs_from_embeddings(embed(texts, self.features), extras, sessions)

    def save(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)
        self.router.save(path)
        self.featurizer.save(path)
        with open(os.path.join(path, "bundle.json"), "w", encoding="utf-8") as f:
            json.dump({"features": self.features.model_dump(mode="json"),
                       "policy": self.policy.model_dump(mode="json"), "costs": self.costs}, f, indent=1)

    @classmethod
    def load(cls, path: str) -> RouterBundle:
        from cogumi_ray.route.features import Featurizer
        from cogumi_ray.route.models import load_router

        meta_path = os.path.join(path, "bundle.json")
        if not os.path.exists(meta_path):
            raise ModelError(f"{path!r} is not a saved router (no bundle.json); the router stage "
                             "writes one to <run>/router/router/")
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        router = load_router(path)
        featurizer = Featurizer.load(path)
        if featurizer.options != router.options:
            raise ModelError(f"{path!r}: features were fitted for options {featurizer.options} but "
                             f"the router scores {router.options}; retrain the router")
        features = {"embed_quantize": "none", **meta["features"]}  # saved before int8 existed
        return cls(router, featurizer, FeatureConfig.model_validate(features),
                   PolicyConfig.model_validate(meta["policy"]), [float(c) for c in meta["costs"]])
