"""The MiniLM escalation detector: a one-hidden-layer MLP (scikit-learn) on sentence embeddings.

Kept to compare against the TF-IDF detector (the stage reports both when asked): it generalises
to paraphrases no template wrote, but every message first pays for a MiniLM forward pass.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from cogumi_ray.route.escalation import EscalationDetector

if TYPE_CHECKING:
    import numpy as np

    from cogumi_ray.route.config import EscalationConfig

HIDDEN = 32


def _embed(texts: list[str]) -> np.ndarray:
    from cogumi_ray.route.config import FeatureConfig
    from cogumi_ray.route.features import embed

    # full precision, as the detectors saved before int8 router embeddings existed were trained
    return embed(texts, FeatureConfig(embed_quantize="none"))


class MiniLMDetector(EscalationDetector):
    kind = "minilm_mlp"

    def __init__(self, threshold: float, layers: list[tuple[np.ndarray, np.ndarray]]) -> None:
        super().__init__(threshold)
        self.layers = layers  # (in, out) weight, (out,) bias, as scikit-learn stores them

    @classmethod
    def train(cls, texts: list[str], labels: list[int], ec: EscalationConfig) -> MiniLMDetector:
        import numpy as np
        from sklearn.neural_network import MLPClassifier

        clf = MLPClassifier(hidden_layer_sizes=(HIDDEN,), alpha=1e-3, max_iter=500,
                            early_stopping=True, random_state=0)
        clf.fit(_embed(texts), np.asarray(labels))
        return cls(ec.threshold, list(zip(clf.coefs_, clf.intercepts_, strict=True)))

    def proba(self, texts: list[str]) -> np.ndarray:
        import numpy as np

        h = _embed(texts)
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        return 1.0 / (1.0 + np.exp(-h[:, 0]))

    def save(self, path: str) -> None:
        import numpy as np

        os.makedirs(path, exist_ok=True)
        arrays = {}
        for i, (w, b) in enumerate(self.layers):
            arrays[f"w{i}"], arrays[f"b{i}"] = w, b
        np.savez(os.path.join(path, "escalation.npz"), **arrays)
        with open(os.path.join(path, "escalation.json"), "w", encoding="utf-8") as f:
            json.dump({"kind": self.kind, "threshold": self.threshold}, f)

    @classmethod
    def load(cls, path: str) -> MiniLMDetector:
        import numpy as np

        with open(os.path.join(path, "escalation.json"), encoding="utf-8") as f:
            meta = json.load(f)
        with np.load(os.path.join(path, "escalation.npz"), allow_pickle=False) as z:
            n = len(z.files) // 2
            return cls(float(meta["threshold"]), [(z[f"w{i}"], z[f"b{i}"]) for i in range(n)])
