"""GSM8K: exact numeric match of the answer's final number against the reference after `####`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction

from cogumi_ray.errors import EvalError
from cogumi_ray.eval.answers import extract_final_number, reference_answer


@dataclass(frozen=True)
class Question:
    question: str
    solution: str  # the reference solution, ending in '#### <number>'
    reference: Fraction


def load_questions(path: str, limit: int | None = None) -> list[Question]:
    out: list[Question] = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                question, solution = row["question"], row["answer"]
                out.append(Question(question, solution, reference_answer(solution)))
            except json.JSONDecodeError as e:
                raise EvalError(f"{path}:{n}: not valid JSON ({e.msg})") from None
            except (KeyError, TypeError):
                raise EvalError(f"{path}:{n}: GSM8K row needs 'question' and 'answer' strings") from None
            except ValueError as e:
                raise EvalError(f"{path}:{n}: {e}") from None
            if limit and len(out) >= limit:
                break
    if not out:
        raise EvalError(f"{path} holds no GSM8K questions")
    return out


def grade(question: Question, answer: str) -> tuple[bool, str]:
    got = extract_final_number(answer)
    if got is None:
        return False, "no number in the answer"
    if got == question.reference:
        return True, "passed"
    return False, f"answered {_fmt(got)}, expected {_fmt(question.reference)}"


def _fmt(x: Fraction) -> str:
    return str(x.numerator) if x.denominator == 1 else f"{float(x):g}"
