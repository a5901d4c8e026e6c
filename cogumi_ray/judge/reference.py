"""Reference-based grading: the judge sees the task, the reference answer and the candidate, and
returns pass/fail plus the 1-10 rubric score (factual accuracy 0-3, completeness 0-2, coherence
0-2, helpfulness 0-3)."""

from __future__ import annotations

from typing import Any

from cogumi_ray.judge.base import Judgment, LLMJudge, text
from cogumi_ray.judge.rubric import (
    REFERENCE_SCHEMA,
    REFERENCE_SYSTEM,
    Grade,
    parse_grade,
    reference_prompt,
)


class ReferenceJudge(LLMJudge):
    system = REFERENCE_SYSTEM
    schema = REFERENCE_SCHEMA

    def prompts(self, row: dict[str, Any]) -> list[str]:
        return [reference_prompt(text(row, "instruction"), text(row, self.cfg.reference_column),
                                 text(row, self.cfg.answer_column))]

    def parse(self, reply: str) -> Grade:
        return parse_grade(reply)

    def combine(self, row: dict[str, Any], parsed: list[Any]) -> Judgment:
        (grade,) = parsed
        return Judgment(grade.verdict, grade.rationale, self.name, score=float(grade.score),
                        criteria=grade.criteria)
