"""Plain helpers of the router tests (`from routekit import ...`; see tests/testkit.py for why
not conftest). Synthetic router data: three domains with their own vocabulary, easy and hard queries.

The base passes most easy queries and few hard ones; a domain's modifier passes most queries of
its domain (easy or hard) and few others. So the target is `base` for easy queries and the
domain's modifier for hard ones: a router has to read both the domain and the difficulty.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

DOMAINS = {
    "code": ["Write a Python function that {v} a list of integers", "Implement a class that {v} "
             "strings in Python", "Fix this Python loop so it {v} the dictionary keys"],
    "math": ["Compute the sum of {a} and {b} then {v} it", "Solve for x: {a}x + {b} = 0 and {v} "
             "the result", "What is the remainder when {a} is divided by {b}, {v} it"],
    "writing": ["Write a short poem about {t} that {v} the reader", "Draft an email to a "
                "colleague about {t} that {v} the tone", "Summarise this paragraph about {t} and {v} "
                "the style"],
}
VERBS = {"code": ["sorts", "reverses", "filters", "deduplicates"],
         "math": ["double", "square", "round", "halve"],
         "writing": ["softens", "cheers", "surprises", "calms"]}
TOPICS = ["autumn", "the sea", "a deadline", "coffee", "the office move", "a lost cat"]
HARD = [" with tricky edge cases, proving correctness step by step",
        " under strict constraints, handling every corner case rigorously",
        " as a multi-step derivation with a formal justification"]


@dataclass
class Row:
    id: str
    instruction: str
    domain: str
    hard: bool


def make_rows(n: int, seed: int, prefix: str) -> list[Row]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        d = list(DOMAINS)[i % 3]
        text = rng.choice(DOMAINS[d]).format(v=rng.choice(VERBS[d]), a=rng.randint(2, 99),
                                             b=rng.randint(2, 99), t=rng.choice(TOPICS))
        hard = rng.random() < 0.45
        rows.append(Row(f"{prefix}{i}", text + (rng.choice(HARD) if hard else "."), d, hard))
    return rows


def verdicts(row: Row, rng: random.Random) -> dict[str, bool]:
    out = {"base": rng.random() < (0.08 if row.hard else 0.92)}
    for d in DOMAINS:
        own = d == row.domain
        out[d] = rng.random() < ((0.9 if own else 0.05) if row.hard else (0.85 if own else 0.5))
    return out


def write_split(path: str, rows: list[Row]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cogumi_ray.data.schema import Example, arrow_schema

    examples = [Example(r.id, r.instruction, "-", r.domain, "hard" if r.hard else "easy").to_row()
                for r in rows]
    pq.write_table(pa.Table.from_pylist(examples, schema=arrow_schema()), path)


def write_scores(path: str, splits: dict[str, list[Row]], seed: int = 0, drop: tuple[str, ...] = (),
                 extra: dict[str, float] | None = None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(seed)
    records = []
    for split, rows in splits.items():
        for r in rows:
            for opt, ok in verdicts(r, rng).items():
                rec = {"split": split, "id": r.id, "domain": r.domain,
                       "difficulty": "hard" if r.hard else "easy", "option": opt, "passed": ok,
                       "reason": ""}
                for k, v in (extra or {}).items():
                    rec[k] = v
                records.append({k: v for k, v in rec.items() if k not in drop})
    pq.write_table(pa.Table.from_pylist(records), path)


def clusters(n: int, seed: int, noise: float = 0.0, dim: int = 16):
    """Gaussian blobs, one per option (4), with a share `noise` of labels flipped at random."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1.0, size=(4, dim))
    y = rng.integers(0, 4, size=n)
    x = centres[y] + rng.normal(0, 0.9, size=(n, dim))
    flip = rng.random(n) < noise
    y = np.where(flip, rng.integers(0, 4, size=n), y)
    return x.astype(np.float32), y.astype(np.int64)


def write_turns(path: str, worker: int, rows: int) -> None:
    """One writer process of the concurrency test: `rows` turns into one shared session."""
    from cogumi_ray.route.config import MemoryConfig
    from cogumi_ray.route.memory import SessionStore

    with SessionStore(path, MemoryConfig(max_turns=100_000, retries=20)) as store:
        for i in range(rows):
            store.record("shared", "base" if i % 2 else "code", 0.5, False, f"w{worker} q{i}")
            store.record(f"own-{worker}", "math", 0.9, bool(i % 3 == 0), f"q{i}")


KEYWORDS = {"python": 1, "sum": 2, "poem": 3}  # query word -> option index (else the base)


def keyword_embed(texts: list[str], seed: int = 0):
    """A stand-in for MiniLM in policy tests: one direction per keyword, plus a little noise."""
    import numpy as np

    centres = np.random.default_rng(seed).normal(size=(4, 384))
    rng = np.random.default_rng(abs(hash(tuple(texts))) % 2**32)
    rows = []
    for t in texts:
        k = next((v for w, v in KEYWORDS.items() if w in t.lower()), 0)
        rows.append(centres[k] + rng.normal(0, 0.3, 384))
    x = np.array(rows, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def keyword_bundle(policy=None, router: str = "logreg"):
    """A RouterBundle trained on keyword_embed rows (no MiniLM needed)."""
    import numpy as np

    from cogumi_ray.route.bundle import RouterBundle
    from cogumi_ray.route.config import FeatureConfig, PolicyConfig, RouterConfig
    from cogumi_ray.route.features import Featurizer
    from cogumi_ray.route.models import make_router

    words = ["hello there", "python code", "the sum of two", "a poem please"]
    texts = [f"{words[i % 4]} {i}" for i in range(400)]
    y = np.array([i % 4 for i in range(400)])
    emb = keyword_embed(texts)
    options = ["base", "code", "math", "writing"]
    feat = Featurizer.fit(emb, np.zeros((400, 0)), options, 16, session=True)
    x = feat.transform(emb, None, None)
    r = make_router(router, options, RouterConfig())
    r.fit(x[:300], y[:300], x[300:350], y[300:350])
    r.calibrate(x[350:], y[350:])
    return RouterBundle(r, feat, FeatureConfig(session_features=True), policy or PolicyConfig(),
                        [1.0, 2.0, 2.0, 2.0])


def hashed_embed(texts: list[str], fc: object = None):
    """Bag of words, one fixed random vector per word: a stand-in for MiniLM in stage tests that
    still separates the domains and the hard suffixes, in milliseconds."""
    import zlib

    import numpy as np

    out = np.zeros((len(texts), 64), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in t.lower().replace(".", " ").replace(",", " ").replace(":", " ").split():
            out[i] += np.random.default_rng(zlib.crc32(w.encode())).normal(size=64)
    return out / np.linalg.norm(out, axis=1, keepdims=True)
