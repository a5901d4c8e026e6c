"""The verifier judge: checks answers by computation, no API and no cost.

Per row, the first check that applies:
- HumanEval-style rows (metadata has `entry_point` and `test`): the answer's code runs against
  the tests in the sandbox (a jail of its own per answer; see cogumi_ray/sandbox).
- Task-suite rows (metadata has the generator's `task` family): the suite's own verifier.
- GSM8K-style rows (the reference ends in `#### N`): the answer's final number must equal N
  (`#### N`, `\\boxed{N}`, "the answer is N", else the last number; compared as exact fractions).
- Anything else cannot be verified and is `unjudged` (use an LLM judge for open-ended data).
"""

from __future__ import annotations

import json
from typing import Any

from cogumi_ray.errors import SandboxUnavailable
from cogumi_ray.judge.base import Judge, Judgment, text
from cogumi_ray.judge.config import JudgeConfig


def _metadata(row: dict[str, Any]) -> dict[str, Any]:
    meta = row.get("metadata") or {}
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError:
            return {}
    return meta if isinstance(meta, dict) else {}


class VerifierJudge(Judge):
    name = "verifier"

    def __init__(self, cfg: JudgeConfig) -> None:
        self.cfg = cfg

    def judge_rows(self, rows: list[dict[str, Any]]) -> list[Judgment]:
        return [self.judge_row(row) for row in rows]

    def judge_row(self, row: dict[str, Any]) -> Judgment:
        meta = _metadata(row)
        answer = text(row, self.cfg.answer_column)
        reference = text(row, self.cfg.reference_column)
        try:
            if isinstance(meta.get("entry_point"), str) and isinstance(meta.get("test"), str):
                passed, reason = self._execute(row, meta, answer)
            elif "task" in meta:
                passed, reason = self._suite(row, answer)
            elif "####" in reference:
                passed, reason = self._numeric(reference, answer)
            else:
                return Judgment("unjudged", "", self.name,
                                error="no verifier applies (no suite metadata, tests or #### answer)")
        except SandboxUnavailable:  # a machine that cannot isolate code stops the stage
            raise
        except Exception as e:  # a verifier bug on one row must not sink the batch
            return Judgment("unjudged", "", self.name, error=f"verifier error: {type(e).__name__}: {e}")
        return Judgment("pass" if passed else "fail", reason, self.name)

    def _execute(self, row: dict[str, Any], meta: dict[str, Any], answer: str) -> tuple[bool, str]:
        from cogumi_ray.eval.humaneval import Problem, run_problem

        problem = Problem(
            task_id=str(meta.get("task_id") or row.get("id")),
            prompt=str(meta.get("prompt") or text(row, "instruction")),
            entry_point=meta["entry_point"],
            canonical_solution="",
            test=meta["test"],
        )
        # The same run as HumanEval's eval path: pass needs the tests' own verdict, not exit 0.
        res = run_problem(problem, answer, timeout_s=self.cfg.sandbox_timeout_s,
                          memory_mb=self.cfg.sandbox_memory_mb)
        return res.passed, "tests passed" if res.passed else f"tests failed: {res.reason}"

    def _suite(self, row: dict[str, Any], answer: str) -> tuple[bool, str]:
        from cogumi_ray.data.schema import Example
        from cogumi_ray.data.suite.verify import verify

        verdict = verify(Example.from_row(row), answer)
        return verdict.passed, verdict.reason

    def _numeric(self, reference: str, answer: str) -> tuple[bool, str]:
        from cogumi_ray.eval.answers import extract_final_number, reference_answer

        expected = reference_answer(reference)
        got = extract_final_number(answer)
        if got is None:
            return False, f"no number in the answer (expected {_fmt(expected)})"
        if got == expected:
            return True, f"final answer {_fmt(got)} matches"
        return False, f"final answer {_fmt(got)}, expected {_fmt(expected)}"


def _fmt(x: Any) -> str:
    return str(x.numerator) if x.denominator == 1 else f"{float(x):g}"
