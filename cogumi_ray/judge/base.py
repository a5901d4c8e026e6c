"""The judge interface and what every LLM judge shares.

A judge turns rows (dicts with the Example columns plus the answer) into one `Judgment` each.
Verdicts: "pass" / "fail", "tie" (pairwise only) or "unjudged" (the judge could not decide: API
unreachable after retries, reply malformed after re-asks, no verifier for the row). An unjudged
row says nothing about the model and is never counted as a failure.

`LLMJudge` owns the conversation loop: every call of every row goes out in one `complete_many`
round (so a provider batch holds them all), replies that do not parse are re-asked with the parse
error appended to the conversation, at most `max_reasks` times, and token/cost totals include
the re-asks.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from cogumi_ray.judge.clients.base import ChatRequest, JudgeClient
from cogumi_ray.judge.config import JudgeConfig
from cogumi_ray.judge.rubric import REASK, ParseError

VERDICTS: tuple[str, ...] = ("pass", "fail", "tie", "unjudged")


@dataclass
class Judgment:
    verdict: str
    rationale: str
    judge: str
    score: float | None = None
    criteria: dict[str, int] | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0  # what the judgment costs at list/batch price, cached or not
    paid_usd: float = 0.0  # what this run paid for it (0 when every reply came from the cache)
    cached: bool = False
    error: str | None = None

    def columns(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "score": self.score,
            "rationale": self.rationale,
            "judge": self.judge,
            "criteria": json.dumps(self.criteria, sort_keys=True) if self.criteria else None,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": self.cost_usd,
            "paid_usd": self.paid_usd,
            "cached": self.cached,
            "judge_error": self.error,
        }


def text(row: dict[str, Any], column: str) -> str:
    value = row.get(column)
    return "" if value is None else str(value)


class Judge(ABC):
    """One hook: judge a batch of rows."""

    name: str

    @abstractmethod
    def judge_rows(self, rows: list[dict[str, Any]]) -> list[Judgment]: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients and caches."""


@dataclass
class _Call:
    row: int
    messages: tuple[tuple[str, str], ...]
    parsed: Any = None
    error: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    paid_usd: float = 0.0
    cached: bool = True  # stays True only if every reply it needed came from the cache
    replies: list[str] = field(default_factory=list)


class LLMJudge(Judge):
    system: str
    schema: str

    def __init__(self, cfg: JudgeConfig, client: JudgeClient) -> None:
        self.cfg = cfg
        self.client = client
        self.name = f"{cfg.judge}:{client.model}/{cfg.mode}"

    @abstractmethod
    def prompts(self, row: dict[str, Any]) -> list[str]:
        """The user prompts this row needs (one per judge call)."""

    @abstractmethod
    def parse(self, reply: str) -> Any:
        """Parse one reply; raise ParseError when it is not usable."""

    @abstractmethod
    def combine(self, row: dict[str, Any], parsed: list[Any]) -> Judgment:
        """The row's judgment from its parsed replies (tokens/cost are filled in by the caller)."""

    def judge_rows(self, rows: list[dict[str, Any]]) -> list[Judgment]:
        calls = [_Call(i, (("user", p),)) for i, row in enumerate(rows) for p in self.prompts(row)]
        active = list(calls)
        for round_ in range(self.cfg.max_reasks + 1):
            if not active:
                break
            results = self.client.complete_many([
                ChatRequest(self.system, c.messages, self.cfg.max_tokens, self.cfg.temperature,
                            self.schema) for c in active
            ])
            again: list[_Call] = []
            for call, res in zip(active, results, strict=True):
                call.input_tokens += res.input_tokens
                call.output_tokens += res.output_tokens
                call.cost_usd += res.cost_usd
                call.paid_usd += 0.0 if res.cached else res.cost_usd
                call.cached = call.cached and res.cached
                if res.error is not None or res.text is None:
                    call.error = f"judge unavailable: {res.error}"
                    continue
                try:
                    call.parsed = self.parse(res.text)
                except ParseError as e:
                    if round_ < self.cfg.max_reasks:
                        # An empty assistant turn is rejected by some APIs; say what came back.
                        said = res.text.strip() or "(empty reply)"
                        call.messages += (("assistant", said),
                                          ("user", REASK.format(problem=e)))
                        again.append(call)
                    else:
                        call.error = (f"malformed judge reply after {self.cfg.max_reasks} "
                                      f"re-asks: {e}")
            active = again
        by_row: list[list[_Call]] = [[] for _ in rows]
        for c in calls:
            by_row[c.row].append(c)
        return [self._row_judgment(row, mine) for row, mine in zip(rows, by_row, strict=True)]

    def _row_judgment(self, row: dict[str, Any], calls: list[_Call]) -> Judgment:
        errors = [c.error for c in calls if c.error]
        if errors:
            j = Judgment("unjudged", "", self.name, error="; ".join(dict.fromkeys(errors)))
        else:
            j = self.combine(row, [c.parsed for c in calls])
        j.input_tokens = sum(c.input_tokens for c in calls)
        j.output_tokens = sum(c.output_tokens for c in calls)
        j.cost_usd = sum(c.cost_usd for c in calls)
        j.paid_usd = sum(c.paid_usd for c in calls)
        j.cached = bool(calls) and all(c.cached for c in calls)
        return j

    def close(self) -> None:
        self.client.close()
