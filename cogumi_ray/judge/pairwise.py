"""Pairwise comparison in both orders: judges prefer whichever answer they see first (or second)
often enough to swamp real differences, so the answer is shown once as A and once as B, and it
wins only if both orders agree. A flip (each order prefers its own first/second slot) is a tie.

Verdict: "pass" = the answer beats `other_column`, "fail" = it loses, "tie" otherwise;
score 1.0 / 0.0 / 0.5.
"""

from __future__ import annotations

from typing import Any

from cogumi_ray.judge.base import Judgment, LLMJudge, text
from cogumi_ray.judge.rubric import (
    PAIRWISE_SCHEMA,
    PAIRWISE_SYSTEM,
    Preference,
    pairwise_prompt,
    parse_preference,
)

# Which side won, from the answer's point of view, in each order.
_ANSWER_FIRST = {"A": "answer", "B": "other", "tie": "tie"}
_ANSWER_SECOND = {"A": "other", "B": "answer", "tie": "tie"}
_VERDICT = {"answer": ("pass", 1.0), "other": ("fail", 0.0), "tie": ("tie", 0.5)}


def resolve(first: Preference, second: Preference) -> tuple[str, bool]:
    """(winner from the answer's side, whether the two orders disagreed)."""
    a, b = _ANSWER_FIRST[first.winner], _ANSWER_SECOND[second.winner]
    return (a, False) if a == b else ("tie", True)


class PairwiseJudge(LLMJudge):
    system = PAIRWISE_SYSTEM
    schema = PAIRWISE_SCHEMA

    def prompts(self, row: dict[str, Any]) -> list[str]:
        task = text(row, "instruction")
        answer, other = text(row, self.cfg.answer_column), text(row, self.cfg.other_column)
        return [pairwise_prompt(task, answer, other), pairwise_prompt(task, other, answer)]

    def parse(self, reply: str) -> Preference:
        return parse_preference(reply)

    def combine(self, row: dict[str, Any], parsed: list[Any]) -> Judgment:
        first, second = parsed
        winner, flipped = resolve(first, second)
        verdict, score = _VERDICT[winner]
        note = " (the orders disagree: tie)" if flipped else ""
        rationale = (f"answer first: {first.winner}: {first.rationale} | "
                     f"answer second: {second.winner}: {second.rationale}{note}")
        return Judgment(verdict, rationale, self.name, score=score)
