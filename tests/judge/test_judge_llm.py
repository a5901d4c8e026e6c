"""Reference and pairwise LLM judges end to end over the SDK clients and the local server:
verdicts, re-asks of malformed replies, unjudged rows, token/cost totals, both orders."""

from __future__ import annotations

import os

import pytest
from fake_llm_server import FakeLLMServer

from cogumi_ray.judge.cache import JudgeCache
from cogumi_ray.judge.config import JudgeConfig
from cogumi_ray.judge.judges import make_judge

KEY_ENV = "COGUMI_TEST_JUDGE_KEY"
os.environ.setdefault(KEY_ENV, "test-key")
ROUTE = {"anthropic": "messages", "openai": "chat"}


@pytest.fixture(scope="module")
def server():
    s = FakeLLMServer().start()
    yield s
    s.stop()


def judge_for(server: FakeLLMServer, judge: str, **kw):
    base = server.url if judge == "anthropic" else f"{server.url}/v1"
    return make_judge(JudgeConfig(judge=judge, base_url=base, api_key_env=KEY_ENV, max_retries=1,
                                  backoff_base_s=0.01, timeout_s=5, **kw))


def row(answer: str, reference: str = "42", instruction: str = "What is 6*7?", **extra):
    return {"id": "r", "instruction": instruction, "response": reference, "answer": answer, **extra}


@pytest.mark.parametrize("judge", ["anthropic", "openai"])
def test_reference_grading_verdicts_scores_and_reasks(server, judge):
    j = judge_for(server, judge, max_reasks=2)
    before = server.counts[ROUTE[judge]]
    out = j.judge_rows([
        row("42"),
        row("41"),
        row("42 [[malformed-once]]"),  # prose first, valid JSON when re-asked
        row("42 [[malformed]]"),  # never valid: unjudged after 2 re-asks
    ])
    assert [o.verdict for o in out] == ["pass", "fail", "pass", "unjudged"]
    assert out[0].score == 10 and out[1].score == 2  # rubric sums (3+2+2+3), (0+1+1+0)
    assert out[0].criteria == {"factual_accuracy": 3, "completeness": 2, "coherence": 2,
                               "helpfulness": 3}
    assert out[1].rationale == "differs from the reference"
    assert out[3].score is None and "malformed judge reply after 2 re-asks" in out[3].error
    assert "no JSON object" in out[3].error
    # 1 + 1 + 2 (one re-ask) + 3 (two re-asks) requests
    assert server.counts[ROUTE[judge]] - before == 7
    # re-asks are paid for too: the re-asked rows cost more than a plain one
    assert out[2].input_tokens > out[0].input_tokens and out[3].cost_usd > out[2].cost_usd > 0
    assert all(o.judge == f"{judge}:{j.client.model}/reference" for o in out)


@pytest.mark.parametrize("judge", ["anthropic", "openai"])
def test_pairwise_runs_both_orders_and_a_flip_is_a_tie(server, judge):
    j = judge_for(server, judge, mode="pairwise")
    before = server.counts[ROUTE[judge]]
    out = j.judge_rows([
        row("the correct answer", reference="a guess"),
        row("a guess", reference="the correct answer"),
        row("the correct answer", reference="a guess", instruction="[[flip]] pick one"),
        row("same", reference="same"),
    ])
    assert [o.verdict for o in out] == ["pass", "fail", "tie", "tie"]
    assert [o.score for o in out] == [1.0, 0.0, 0.5, 0.5]
    assert "disagree" in out[2].rationale and "disagree" not in out[3].rationale
    # Two orders per row, but identical prompts go out once: rows 1 and 2 are mirror images and
    # row 4's two orders are the same prompt, so 8 calls need only 5 requests.
    assert server.counts[ROUTE[judge]] - before == 5
    # ...and the accounting knows: a repeated request is paid once
    assert out[1].cached and out[1].paid_usd == 0 and out[1].cost_usd == out[0].cost_usd
    assert out[3].paid_usd == pytest.approx(out[3].cost_usd / 2) and not out[3].cached
    assert out[0].paid_usd == out[0].cost_usd > 0


def test_unreachable_judge_gives_unjudged_rows_not_a_crash():
    cfg = JudgeConfig(judge="anthropic", base_url="http://127.0.0.1:9", api_key_env=KEY_ENV,
                      max_retries=1, backoff_base_s=0.01, timeout_s=0.5)
    (out,) = make_judge(cfg).judge_rows([row("42")])
    assert out.verdict == "unjudged" and "judge unavailable" in out.error
    assert out.cost_usd == 0 and out.input_tokens == 0


def test_cached_rerun_marks_rows_cached(server, tmp_path):
    cfg = JudgeConfig(judge="openai", base_url=f"{server.url}/v1", api_key_env=KEY_ENV)
    rows = [row("42"), row("7 [[malformed-once]]")]
    first = make_judge(cfg, cache=JudgeCache(str(tmp_path))).judge_rows(rows)
    sent = server.counts["chat"]
    again = make_judge(cfg, cache=JudgeCache(str(tmp_path))).judge_rows(rows)
    assert server.counts["chat"] == sent  # the re-ask conversation is cached too
    assert [a.verdict for a in again] == [f.verdict for f in first] == ["pass", "fail"]
    assert all(a.cached for a in again) and not any(f.cached for f in first)
    assert [a.cost_usd for a in again] == [f.cost_usd for f in first]
    assert all(a.paid_usd == 0 for a in again) and all(f.paid_usd > 0 for f in first)
