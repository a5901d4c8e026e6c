"""The task suite as a benchmark: answer held-out Examples, check each with the suite's verifier,
report pass rates overall, per domain and per difficulty."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cogumi_ray.eval.scores import BenchmarkScore, ItemResult, Tally

if TYPE_CHECKING:
    from cogumi_ray.data.schema import Example
    from cogumi_ray.generate.config import GenParams
    from cogumi_ray.generate.engines import Engine


@dataclass
class SuiteScore:
    overall: Tally
    by_domain: dict[str, Tally]
    by_difficulty: dict[str, Tally]
    items: list[ItemResult]

    @property
    def pass_rate(self) -> float:
        return self.overall.rate

    @classmethod
    def from_benchmark(cls, score: BenchmarkScore) -> SuiteScore:
        return cls(score.overall, score.groups.get("domain", {}), score.groups.get("difficulty", {}),
                   score.items)

    def metrics(self) -> dict[str, Any]:
        """Flat numbers for the run manifest: pass_rate, passed, total, pass_rate.<domain|difficulty>."""
        out: dict[str, Any] = {"pass_rate": round(self.pass_rate, 4), "passed": self.overall.passed,
                               "total": self.overall.total}
        for tallies in (self.by_domain, self.by_difficulty):
            for name, t in sorted(tallies.items()):
                out[f"pass_rate.{name}"] = round(t.rate, 4)
                out[f"total.{name}"] = t.total
        return out


def generate_answers(
    engine: Engine, instructions: list[str], params: GenParams, batch_size: int, desc: str
) -> list[str]:
    """Engine answers in batches, with a progress bar."""
    from tqdm.auto import tqdm

    answers: list[str] = []
    with tqdm(total=len(instructions), desc=desc, unit="q", leave=False) as bar:
        for i in range(0, len(instructions), batch_size):
            chunk = instructions[i : i + batch_size]
            answers.extend(c.text for c in engine.generate(chunk, params))
            bar.update(len(chunk))
    return answers


def grade_suite(examples: list[Example], answers: list[str], workers: int = 2) -> BenchmarkScore:
    """Verify each answer; code checks run in sandbox subprocesses, `workers` at a time."""
    from cogumi_ray.data.suite.verify import verify

    def one(pair: tuple[Example, str]) -> ItemResult:
        ex, answer = pair
        verdict = verify(ex, answer)
        return ItemResult("suite", ex.id, verdict.passed, verdict.reason, answer,
                          {"domain": ex.domain, "difficulty": ex.difficulty})

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="suite-verify") as pool:
        items = list(pool.map(one, zip(examples, answers, strict=True)))
    return BenchmarkScore.from_items("suite", items)


def score_suite(
    engine: Engine,
    examples: list[Example],
    max_new_tokens: int = 128,
    *,
    params: GenParams | None = None,
    batch_size: int = 16,
    workers: int = 2,
) -> SuiteScore:
    """Pass rates of `engine` on `examples` (greedy unless `params` says otherwise)."""
    from cogumi_ray.generate.config import GenParams

    params = params or GenParams(max_new_tokens=max_new_tokens)
    answers = generate_answers(engine, [ex.instruction for ex in examples], params, batch_size,
                               "suite")
    return SuiteScore.from_benchmark(grade_suite(examples, answers, workers))
