"""The evaluation harness: one engine over the configured benchmarks, per-benchmark scores with
counts, and every graded answer kept for inspection."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cogumi_ray import storage
from cogumi_ray.errors import EvalError
from cogumi_ray.eval.config import EvalConfig
from cogumi_ray.eval.scores import BenchmarkScore, ItemResult

if TYPE_CHECKING:
    from cogumi_ray.data.schema import Example
    from cogumi_ray.generate.engines import Engine

log = logging.getLogger(__name__)

_REPO_ROOT = Path(__file__).resolve().parents[2]


def resolve_benchmarks_dir(path: str) -> str:
    """A relative folder is looked up from the current directory, then from the repository root
    (so the default `../shared/data/benchmarks` works from anywhere inside a checkout)."""
    if not storage.is_local(path) or os.path.isabs(path):
        return path
    for base in (Path.cwd(), _REPO_ROOT):
        candidate = (base / path).resolve()
        if candidate.is_dir():
            return str(candidate)
    raise EvalError(
        f"benchmark folder {path!r} not found (looked in {Path.cwd()} and {_REPO_ROOT}); "
        "set eval.benchmarks_dir to the folder holding humaneval.jsonl and gsm8k_test.jsonl"
    )


def benchmark_file(cfg: EvalConfig, name: str) -> str:
    path = os.path.join(resolve_benchmarks_dir(cfg.benchmarks_dir), name)
    if not os.path.isfile(path):
        raise EvalError(f"benchmark file {path} does not exist; check eval.benchmarks_dir")
    return path


def run_humaneval(engine: Engine, cfg: EvalConfig, suite: list[Example] | None) -> BenchmarkScore:
    from cogumi_ray.eval import humaneval
    from cogumi_ray.eval.suite import generate_answers

    problems = humaneval.load_problems(benchmark_file(cfg, cfg.humaneval_file),
                                       cfg.limit.get("humaneval"))
    prompts = [cfg.humaneval_instruction.format(prompt=p.prompt) for p in problems]
    answers = generate_answers(engine, prompts, cfg.params, cfg.batch_size, "humaneval")
    results = humaneval.execute(problems, answers, timeout_s=cfg.exec_timeout_s,
                                memory_mb=cfg.exec_memory_mb, workers=cfg.exec_workers)
    return BenchmarkScore.from_items("humaneval", (
        ItemResult("humaneval", r.task_id, r.passed, r.reason, a)
        for r, a in zip(results, answers, strict=True)
    ))


def run_gsm8k(engine: Engine, cfg: EvalConfig, suite: list[Example] | None) -> BenchmarkScore:
    from cogumi_ray.eval import gsm8k
    from cogumi_ray.eval.suite import generate_answers

    questions = gsm8k.load_questions(benchmark_file(cfg, cfg.gsm8k_file), cfg.limit.get("gsm8k"))
    prompts = [cfg.gsm8k_instruction.format(question=q.question) for q in questions]
    answers = generate_answers(engine, prompts, cfg.params, cfg.batch_size, "gsm8k")
    items = []
    for i, (q, a) in enumerate(zip(questions, answers, strict=True)):
        ok, why = gsm8k.grade(q, a)
        items.append(ItemResult("gsm8k", f"gsm8k/{i}", ok, why, a))
    return BenchmarkScore.from_items("gsm8k", items)


def run_suite(engine: Engine, cfg: EvalConfig, suite: list[Example] | None) -> BenchmarkScore:
    from cogumi_ray.eval.suite import generate_answers, grade_suite

    if not suite:
        raise EvalError("the suite benchmark needs held-out examples (the curated split); none given")
    examples = suite_rows(cfg, suite)
    answers = generate_answers(engine, [e.instruction for e in examples], cfg.params,
                               cfg.batch_size, "suite")
    return grade_suite(examples, answers, cfg.exec_workers)


RUNNERS: dict[str, Callable[[Engine, EvalConfig, list[Example] | None], BenchmarkScore]] = {
    "humaneval": run_humaneval,
    "gsm8k": run_gsm8k,
    "suite": run_suite,
}


@dataclass
class EvalReport:
    scores: dict[str, BenchmarkScore] = field(default_factory=dict)

    def flat_scores(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for s in self.scores.values():
            out.update(s.flat_scores())
        return out

    def as_dict(self) -> dict[str, Any]:
        return {name: s.as_dict() for name, s in self.scores.items()}

    def items(self) -> list[ItemResult]:
        return [it for s in self.scores.values() for it in s.items]


def suite_rows(cfg: EvalConfig, suite: list[Example]) -> list[Example]:
    """The held-out rows the suite benchmark scores (its limit applied)."""
    return suite[: cfg.limit["suite"]] if "suite" in cfg.limit else suite


def evaluate(engine: Engine, cfg: EvalConfig, suite: list[Example] | None = None,
             done: dict[str, BenchmarkScore] | None = None) -> EvalReport:
    """Run `cfg.benchmarks` in order with `engine`; a benchmark in `done` is taken as scored."""
    report = EvalReport()
    for name in cfg.benchmarks:
        score = (done or {}).get(name) or RUNNERS[name](engine, cfg, suite)
        log.info("eval %s: %d/%d = %.3f", name, score.overall.passed, score.overall.total,
                 score.overall.rate)
        report.scores[name] = score
    return report
