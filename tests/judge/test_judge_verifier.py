"""The verifier judge row by row (no Ray): which check applies, and what it decides."""

from __future__ import annotations

import json

import pytest

from cogumi_ray.judge.config import JudgeConfig
from cogumi_ray.judge.verifier import VerifierJudge

HE = {"entry_point": "inc", "test": "def check(f):\n    assert f(1) == 2\n",
      "prompt": 'def inc(x):\n    """Add one."""\n'}


def judge(answer: str, response: str = "", metadata=None, **row):
    meta = json.dumps(metadata) if isinstance(metadata, dict) else metadata
    r = {"id": "x", "instruction": "q", "response": response, "answer": answer,
         "metadata": meta, **row}
    return VerifierJudge(JudgeConfig(sandbox_timeout_s=20)).judge_row(r)


@pytest.mark.parametrize("answer, verdict", [
    ("Work: 3 * 4 = 12.\n#### 12", "pass"),
    ("So the final answer is $12.00.", "pass"),
    ("I get 13", "fail"),
    ("no idea", "fail"),
])
def test_gsm8k_style_numeric_match(answer, verdict):
    j = judge(answer, response="3 * 4 = 12\n#### 12")
    assert j.verdict == verdict and j.judge == "verifier" and j.cost_usd == 0
    if answer == "no idea":
        assert "no number" in j.rationale


@pytest.mark.parametrize("answer, verdict", [
    ("    return x + 1\n", "pass"),  # bare body continuing the prompt, as HumanEval was built
    ("```python\ndef inc(x):\n    return x + 1\n```", "pass"),  # a chat model's whole function
    ("    return x\n", "fail"),
    ("    while True:\n        pass\n", "fail"),  # killed by the sandbox's limits
])
def test_humaneval_style_execution(answer, verdict):
    cfg = JudgeConfig(sandbox_timeout_s=2)
    r = {"id": "h", "instruction": "inc", "response": "", "answer": answer,
         "metadata": json.dumps(HE)}
    j = VerifierJudge(cfg).judge_row(r)
    assert j.verdict == verdict, j.rationale


def test_unverifiable_and_broken_rows_are_unjudged():
    assert judge("anything", response="an essay").verdict == "unjudged"
    assert judge("x", metadata="{not json").verdict == "unjudged"  # bad metadata: no check applies
    j = judge("x", response="#### not-a-number")  # the reference itself is broken
    assert j.verdict == "unjudged" and j.error.startswith("verifier error")


def test_suite_rows_use_the_suite_verifier():
    pytest.importorskip("cogumi_ray.data.suite.verify", reason="suite verifiers not written yet")
    from cogumi_ray.data.suite.generator import generate_domain

    for domain in ("math", "code", "automation", "reasoning", "general"):
        for ex in generate_domain(domain, 3, seed=0, max_jaccard=0.9):
            row = {**ex.to_row(), "answer": ex.response}
            assert VerifierJudge(JudgeConfig()).judge_row(row).verdict == "pass", (domain, ex)
            row["answer"] = "I do not know."
            assert VerifierJudge(JudgeConfig()).judge_row(row).verdict == "fail", (domain, ex)
