"""`cogumi demo`'s example queries: what is asked, and how the answers are shown."""

from __future__ import annotations

import json

from cogumi_ray.data.config import SuiteConfig
from cogumi_ray.data.schema import Example
from cogumi_ray.data.suite import generate_suite
from cogumi_ray.route.escalation import HARD_CASES
from cogumi_ray.serve.demo_queries import DemoAnswer, escalation_message, pick_examples, table


def test_one_verifiable_task_per_domain_easy_first():
    rows = generate_suite(SuiteConfig(examples_per_domain=12))
    junk = Example(id="junk-0", instruction="hi", response="x", domain="math", difficulty="easy")
    picked = pick_examples([junk, *rows])
    assert sorted(e.domain for e in picked) == sorted({e.domain for e in rows})
    assert junk not in picked  # planted junk carries no verifier data
    for ex in picked:
        same = [e for e in rows if e.domain == ex.domain and e.difficulty == "easy"]
        assert ex.difficulty == "easy" and ex.id == min(e.id for e in same)


def test_the_follow_up_is_a_shipped_dissatisfied_case():
    text = escalation_message()
    with open(HARD_CASES, encoding="utf-8") as f:
        cases = [json.loads(line) for line in f]
    assert {"text": text, "label": 1} in [{"text": c["text"], "label": c["label"]} for c in cases]


def test_table_shows_option_confidence_and_verdict():
    rows = table([DemoAnswer("math", "What is 2+2?", "4\n", "base", 0.91, True, 0.4),
                  DemoAnswer("math follow-up", "wrong", "x" * 200, "math", None, False, 1.25)])
    assert rows[0].split()[:4] == ["query", "answered", "by", "conf"]
    assert "base" in rows[1] and "0.91" in rows[1] and "pass" in rows[1]
    assert "fail" in rows[2] and " - " in rows[2] and rows[2].endswith("…")
    assert len(rows[2]) < 200


class _SlowStream:
    """A ChatClient stand-in: the routing decision first, then the answer in two pieces."""

    def stream(self, model, messages, *, temperature, max_tokens):
        import time

        from cogumi_ray.serve.client import Routing

        r = Routing("math", 0.83, "cogumi:math", "req-1")
        yield "", r, None
        time.sleep(0.05)
        yield "4", r, None
        time.sleep(0.05)
        yield "42", r, None
        yield "42", r, "stop"


def test_answers_record_latency_and_first_token_for_the_report(tmp_path):
    from cogumi_ray.serve.demo_queries import _ask, answers_path, load_answers, write_answers

    answer, text = _ask(_SlowStream(), "math", [{"role": "user", "content": "6 * 7?"}], 8)
    assert text == "42" and (answer.option, answer.confidence) == ("math", 0.83)
    assert answer.first_token_seconds is not None
    assert 0.04 < answer.first_token_seconds < answer.seconds and answer.seconds >= 0.09
    path = answers_path(str(tmp_path))
    assert path == str(tmp_path / "serve" / "demo_answers.json")
    write_answers([answer], path)
    row = load_answers(path)[0]
    assert row["seconds"] == answer.seconds and row["first_token_seconds"] == answer.first_token_seconds
