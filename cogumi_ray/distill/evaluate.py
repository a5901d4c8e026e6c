"""Held-out pass rates before and after distillation, with the eval harness's `score_suite`.

Both models are scored by the same engine kind with the same decoding on the same examples, so
the difference is the retraining's. Scoring needs a local model folder, so an engine that cannot
load one (an HTTP endpoint, llama.cpp's GGUF) is replaced by the HF engine here. Rows of every
domain count, a new domain's too (graded by the suite verifier that fits them, `eval.verifiers`);
rows no verifier fits are counted, per domain, not scored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cogumi_ray.config import CogumiConfig
    from cogumi_ray.data.schema import Example
    from cogumi_ray.eval.suite import SuiteScore
    from cogumi_ray.generate.config import EngineConfig

LOCAL_ENGINES: tuple[str, ...] = ("hf", "vllm")


def eval_engine(cfg: CogumiConfig) -> EngineConfig:
    """distill.engine, else eval.engine, else generate.engine; its own model path cleared (the
    model scored is passed explicitly) and a non-local kind replaced by hf."""
    from cogumi_ray.generate.config import EngineConfig

    base = cfg.distill.engine or cfg.eval.engine or cfg.generate.engine
    kind = base.kind if base.kind in LOCAL_ENGINES else "hf"
    return EngineConfig.model_validate({**base.model_dump(), "kind": kind, "model": None})


def score(cfg: CogumiConfig, model: str, examples: list[Example],
          cache: str | None = None) -> SuiteScore:
    from cogumi_ray.eval.stage import score_model

    return score_model(cfg, model, examples, eval_engine(cfg), cache)


def compare(before: SuiteScore, after: SuiteScore) -> dict[str, Any]:
    """Flat metrics: pass_rate_before/after/delta overall and per domain, and the rows no verifier
    grades, per domain (`eval_unverifiable.<domain>`: the same rows for both models)."""
    out: dict[str, Any] = {}

    def put(name: str, b: float, a: float) -> None:
        suffix = f".{name}" if name else ""
        out[f"pass_rate_before{suffix}"] = round(b, 4)
        out[f"pass_rate_after{suffix}"] = round(a, 4)
        out[f"pass_rate_delta{suffix}"] = round(a - b, 4)

    put("", before.pass_rate, after.pass_rate)
    for domain in sorted(set(before.by_domain) | set(after.by_domain)):
        b, a = before.by_domain.get(domain), after.by_domain.get(domain)
        put(domain, b.rate if b else 0.0, a.rate if a else 0.0)
    for domain, n in sorted({**after.unverifiable, **before.unverifiable}.items()):
        out[f"eval_unverifiable.{domain}"] = n
    return out
