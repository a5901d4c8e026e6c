"""The judge and the eval decide alike: the same answer judged by VerifierJudge (judge stage) and by
the eval path (humaneval.execute, the suite's grading, GSM8K's grade) gets the same verdict.

Each case also states the verdict it must get, so agreement on a wrong verdict (both paths taking
`os._exit(0)` for a pass, say) fails too."""

from __future__ import annotations

import json
from functools import cache

import pytest

from cogumi_ray.data.schema import Example
from cogumi_ray.eval import gsm8k, humaneval
from cogumi_ray.eval.config import EvalConfig
from cogumi_ray.eval.harness import benchmark_file
from cogumi_ray.eval.suite import grade_suite
from cogumi_ray.judge.config import JudgeConfig
from cogumi_ray.judge.verifier import VerifierJudge

JUDGE = VerifierJudge(JudgeConfig(sandbox_timeout_s=10))
EXITS = {"os._exit": "import os\nos._exit(0)", "sys.exit": "import sys\nsys.exit(0)",
         "SystemExit": "raise SystemExit(0)"}


@cache
def problems() -> dict[str, humaneval.Problem]:
    cfg = EvalConfig()
    return {p.task_id: p for p in humaneval.load_problems(benchmark_file(cfg, cfg.humaneval_file))}


@cache
def questions() -> list[gsm8k.Question]:
    cfg = EvalConfig()
    return gsm8k.load_questions(benchmark_file(cfg, cfg.gsm8k_file), limit=3)


@cache
def suite_examples() -> dict[str, Example]:
    from cogumi_ray.data.suite.generator import generate_domain

    return {d: generate_domain(d, 1, seed=3, max_jaccard=0.9)[0] for d in ("code", "math")}


def _indent(code: str) -> str:
    return "".join(f"    {line}\n" for line in code.splitlines())


# HumanEval -------------------------------------------------------------------------------------
def _he_answer(p: humaneval.Problem, kind: str) -> str:
    if kind == "canonical":
        return p.canonical_solution
    if kind == "whole function in a chat answer":
        return f"Here:\n```python\n{p.prompt}{p.canonical_solution}```\nDone."
    if kind == "wrong":
        return f"```python\ndef {p.entry_point}(*args, **kwargs):\n    return None\n```"
    if kind == "bare":
        return ""
    if kind.startswith("exit in body: "):  # inside the function: runs when check() calls it
        return _indent(EXITS[kind.removeprefix("exit in body: ")])
    return f"```python\n{EXITS[kind.removeprefix('exit at top: ')]}\n```"  # before check() runs


HE_CASES = [(t, k, k in ("canonical", "whole function in a chat answer"))
            for t in ("HumanEval/0", "HumanEval/32")
            for k in ("canonical", "whole function in a chat answer", "wrong", "bare")]
HE_CASES += [("HumanEval/2", f"exit {where}: {e}", False) for e in EXITS for where in ("in body", "at top")]


@pytest.mark.parametrize("task_id, kind, expected", HE_CASES,
                         ids=[f"{t}-{k}" for t, k, _ in HE_CASES])
def test_humaneval_answers_agree(task_id, kind, expected):
    p = problems()[task_id]
    answer = _he_answer(p, kind)
    [eval_result] = humaneval.execute([p], [answer], timeout_s=10)
    meta = {"task_id": p.task_id, "prompt": p.prompt, "entry_point": p.entry_point, "test": p.test}
    j = JUDGE.judge_row({"id": p.task_id, "instruction": p.prompt, "response": "", "answer": answer,
                         "metadata": json.dumps(meta)})
    assert (eval_result.passed, j.verdict) == (expected, "pass" if expected else "fail"), \
        (eval_result.reason, j.rationale)


# Task suite ------------------------------------------------------------------------------------
def _suite_answer(ex: Example, kind: str) -> str:
    if kind == "reference":
        return ex.response
    if kind == "fenced reference":
        return f"Sure.\n```python\n{ex.response}\n```"
    if kind == "wrong":
        return (f"def {ex.metadata['entry_point']}(*args):\n    return None" if ex.domain == "code"
                else f"Answer: {ex.metadata['answer'] + 1}")
    return f"{ex.response}\n{EXITS[kind]}"  # correct code, then an exit before the tests


SUITE_CASES = [("code", k, k in ("reference", "fenced reference"))
               for k in ("reference", "fenced reference", "wrong", *EXITS)]
SUITE_CASES += [("math", "reference", True), ("math", "wrong", False)]


@pytest.mark.parametrize("domain, kind, expected", SUITE_CASES,
                         ids=[f"{d}-{k}" for d, k, _ in SUITE_CASES])
def test_suite_answers_agree(domain, kind, expected):
    ex = suite_examples()[domain]
    answer = _suite_answer(ex, kind)
    [item] = grade_suite([ex], [answer], workers=1).items
    j = JUDGE.judge_row({**ex.to_row(), "answer": answer})
    assert (item.passed, j.verdict) == (expected, "pass" if expected else "fail"), \
        (item.reason, j.rationale)


# GSM8K -----------------------------------------------------------------------------------------
GSM_CASES = [
    (0, "She makes 9 * 2 = 18 dollars.\n#### 18", True),
    (0, "So the answer is $18.00.", True),
    (0, "The final answer is \\boxed{18}", True),
    (0, "#### 19", False),
    (0, "I cannot tell.", False),
    (1, "2 + 1 = 3 bolts.\n#### 3", True),
    (1, "It takes 2 bolts of blue fiber, so 2.", False),
    (2, "He made a profit of $70,000.", True),
    (2, "A profit of 70,000 - 1 = 69,999 dollars.", False),
]


@pytest.mark.parametrize("index, answer, expected", GSM_CASES)
def test_gsm8k_answers_agree(index, answer, expected):
    q = questions()[index]
    passed, why = gsm8k.grade(q, answer)
    j = JUDGE.judge_row({"id": f"gsm8k/{index}", "instruction": q.question,
                         "response": q.solution, "answer": answer, "metadata": None})
    assert (passed, j.verdict) == (expected, "pass" if expected else "fail"), (why, j.rationale)
