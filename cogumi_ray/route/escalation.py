"""Escalation: does a follow-up message say the last answer failed the user?

Two detectors behind one interface, trained on the generated set (`escalation_data`):
- `tfidf` (default): character (2-5, inside word boundaries) and word (1-3) n-gram TF-IDF +
  logistic regression. Word bigrams/trigrams see negation scope ("no errors now", "not
  broken"), character n-grams survive typos and inflections. Scored in pure Python from the
  saved vocabulary, idf and weights, so a message costs tens of microseconds.
- `minilm_mlp` (`escalation_minilm.py`): a small MLP on MiniLM embeddings; better at paraphrase,
  but the embedding alone costs milliseconds.
Saved as JSON (vocabularies, settings) + npz (idf, weights): no pickle.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from typing import TYPE_CHECKING, Any, ClassVar

from cogumi_ray.errors import ConfigError, ModelError

if TYPE_CHECKING:
    import numpy as np

    from cogumi_ray.route.config import EscalationConfig

HARD_CASES = os.path.join(os.path.dirname(__file__), "data", "escalation_hard.jsonl")
# (analyzer, ngram_range) of each TF-IDF block; each block is L2-normalised on its own, as
# scikit-learn's FeatureUnion of two TfidfVectorizers does.
BLOCKS: tuple[tuple[str, tuple[int, int]], ...] = (("char_wb", (2, 5)), ("word", (1, 3)))
_WORD_TOKENS = r"(?u)\b\w+\b|[!?]"  # keep one-letter words ("I") and "!"/"?" as tokens


class EscalationDetector:
    kind: ClassVar[str]

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def proba(self, texts: list[str]) -> np.ndarray:
        """(rows,) P(dissatisfied)."""
        raise NotImplementedError

    def is_escalation(self, text: str) -> bool:
        return bool(self.proba([text])[0] >= self.threshold)

    def save(self, path: str) -> None:
        raise NotImplementedError

    @staticmethod
    def load(path: str) -> EscalationDetector:
        meta_path = os.path.join(path, "escalation.json")
        if not os.path.exists(meta_path):
            raise ModelError(f"{path!r} holds no escalation detector (escalation.json)")
        with open(meta_path, encoding="utf-8") as f:
            kind = json.load(f)["kind"]
        if kind == "tfidf":
            return TfidfDetector.load(path)
        if kind == "minilm_mlp":
            from cogumi_ray.route.escalation_minilm import MiniLMDetector

            return MiniLMDetector.load(path)
        raise ModelError(f"{path!r}: unknown escalation detector kind {kind!r}")


def _vectorizer(analyzer: str, ngrams: tuple[int, int]) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer

    extra = {"token_pattern": _WORD_TOKENS} if analyzer == "word" else {}
    return TfidfVectorizer(analyzer=analyzer, ngram_range=ngrams, sublinear_tf=True, min_df=2,
                           lowercase=True, **extra)


class TfidfDetector(EscalationDetector):
    kind = "tfidf"

    def __init__(self, threshold: float, vocabs: list[dict[str, int]], idfs: list[np.ndarray],
                 coef: np.ndarray, intercept: float) -> None:
        super().__init__(threshold)
        self.vocabs, self.idfs = vocabs, [list(map(float, i)) for i in idfs]
        self.coef = coef
        self.intercept = intercept
        offsets = [0]
        for v in vocabs:
            offsets.append(offsets[-1] + len(v))
        # Per block: n-gram -> (idf, weight), so scoring is one dict lookup per n-gram.
        self._table = [{g: (self.idfs[b][j], float(coef[offsets[b] + j])) for g, j in v.items()}
                       for b, v in enumerate(vocabs)]
        self._analyzers = [_vectorizer(a, n).build_analyzer() for a, n in BLOCKS]

    @classmethod
    def train(cls, texts: list[str], labels: list[int], ec: EscalationConfig) -> TfidfDetector:
        import numpy as np
        from scipy.sparse import hstack
        from sklearn.linear_model import LogisticRegression

        vecs = [_vectorizer(a, n) for a, n in BLOCKS]
        x = hstack([v.fit_transform(texts) for v in vecs]).tocsr()
        clf = LogisticRegression(C=ec.c, max_iter=2000).fit(x, np.asarray(labels))
        return cls(ec.threshold, [{k: int(i) for k, i in v.vocabulary_.items()} for v in vecs],
                   [v.idf_ for v in vecs], clf.coef_[0], float(clf.intercept_[0]))

    def score(self, text: str) -> float:
        """The logit of one message: per block, sublinear tf x idf, L2-normalised, dot the weights."""
        z = self.intercept
        for analyze, table in zip(self._analyzers, self._table, strict=True):
            counts: dict[str, int] = {}
            for g in analyze(text):
                if g in table:
                    counts[g] = counts.get(g, 0) + 1
            vals = [((1.0 + math.log(c)) * table[g][0], table[g][1]) for g, c in counts.items()]
            norm = math.sqrt(sum(v * v for v, _ in vals)) or 1.0
            z += sum(v * w for v, w in vals) / norm
        return z

    def proba(self, texts: list[str]) -> np.ndarray:
        import numpy as np

        z = np.array([self.score(t) for t in texts])
        return 1.0 / (1.0 + np.exp(-z))

    def save(self, path: str) -> None:
        import numpy as np

        os.makedirs(path, exist_ok=True)
        np.savez(os.path.join(path, "escalation.npz"), coef=self.coef,
                 **{f"idf{b}": np.asarray(i) for b, i in enumerate(self.idfs)})
        with open(os.path.join(path, "escalation.json"), "w", encoding="utf-8") as f:
            json.dump({"kind": self.kind, "threshold": self.threshold, "intercept": self.intercept,
                       "blocks": [[a, list(n)] for a, n in BLOCKS], "vocabs": self.vocabs}, f)

    @classmethod
    def load(cls, path: str) -> TfidfDetector:
        import numpy as np

        with open(os.path.join(path, "escalation.json"), encoding="utf-8") as f:
            meta = json.load(f)
        if [[a, list(n)] for a, n in BLOCKS] != meta["blocks"]:
            raise ModelError(f"{path!r} was saved with n-gram blocks {meta['blocks']}; this code "
                             f"scores {BLOCKS}: retrain the detector")
        with np.load(os.path.join(path, "escalation.npz"), allow_pickle=False) as z:
            idfs = [z[f"idf{b}"] for b in range(len(BLOCKS))]
            return cls(float(meta["threshold"]), meta["vocabs"], idfs, z["coef"],
                       float(meta["intercept"]))


def train_detector(ec: EscalationConfig, texts: list[str], labels: list[int]) -> EscalationDetector:
    if ec.model == "tfidf":
        return TfidfDetector.train(texts, labels, ec)
    if ec.model == "minilm_mlp":
        from cogumi_ray.route.escalation_minilm import MiniLMDetector

        return MiniLMDetector.train(texts, labels, ec)
    raise ConfigError(f"unknown escalation model {ec.model!r}; valid: ['tfidf', 'minilm_mlp']")


def read_hard_cases(path: str = HARD_CASES) -> tuple[list[str], list[int]]:
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r["text"] for r in rows], [int(r["label"]) for r in rows]


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]+", " ", text.lower()).split())


def split_generated(ec: EscalationConfig, seed: int) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(train, held-out) generated messages. A generated message that equals a hard case (up to
    case and punctuation) is dropped: short follow-ups collide, and the hard cases must stay
    unseen."""
    from cogumi_ray.route.escalation_data import generate

    hard = {normalise(t) for t in read_hard_cases()[0]}
    rows = [r for r in generate(ec.per_class, seed) if normalise(r[0]) not in hard]
    cut = int(len(rows) * (1 - ec.holdout_fraction))
    return rows[:cut], rows[cut:]


def evaluate(detector: EscalationDetector, texts: list[str], labels: list[int]) -> dict[str, Any]:
    """Accuracy, precision/recall/F1 of 'dissatisfied', and per-message latency (one call each)."""
    import numpy as np
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    ms = []
    for t in texts:
        t0 = time.perf_counter()
        detector.is_escalation(t)
        ms.append((time.perf_counter() - t0) * 1e3)
    pred = (detector.proba(texts) >= detector.threshold).astype(int)
    p, r, f1, _ = precision_recall_fscore_support(labels, pred, average="binary", zero_division=0)
    wrong = [t for t, y, q in zip(texts, labels, pred, strict=True) if y != q]
    return {"rows": len(texts), "accuracy": round(float(accuracy_score(labels, pred)), 4),
            "precision": round(float(p), 4), "recall": round(float(r), 4), "f1": round(float(f1), 4),
            "p50_ms": round(float(np.percentile(ms, 50)), 4),
            "p99_ms": round(float(np.percentile(ms, 99)), 4), "errors": wrong[:20]}


def build_detector(ec: EscalationConfig, seed: int = 0) -> tuple[EscalationDetector, dict[str, Any]]:
    """Train on the generated set; report on its held-out part and on the hard cases."""
    train, held = split_generated(ec, seed)
    detector = train_detector(ec, [t for t, _ in train], [y for _, y in train])
    hard_texts, hard_labels = read_hard_cases()
    return detector, {
        "model": ec.model, "train_rows": len(train),
        "generated": evaluate(detector, [t for t, _ in held], [y for _, y in held]),
        "hard": evaluate(detector, hard_texts, hard_labels),
    }
