"""Distillation pieces without Ray: rewrite extraction, teacher prompt/reply/answer formatting,
teacher config, Example rows with source labels, reverse pairs."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from pydantic import ValidationError

from cogumi_ray.distill.config import DistillConfig, TeacherConfig
from cogumi_ray.distill.dataset import AsExamples, ReversePairs, schema
from cogumi_ray.distill.self_critique import CritiquePrompts, ExtractRewrites, extract_rewrite
from cogumi_ray.distill.teacher import (
    SOURCE,
    ReferenceTeacher,
    parse_reply,
    teacher_judge_config,
    teacher_prompt,
    training_response,
)
from cogumi_ray.judge.config import JudgeConfig


def test_rewrite_is_after_the_last_marker_or_everything():
    assert extract_rewrite("bad.\nRevised answer: 42\n", "Revised answer:") == "42"
    assert extract_rewrite("x revised ANSWER: 1 then Revised answer: 2", "Revised answer:") == "2"
    assert extract_rewrite("  just 7 ", "Revised answer:") == "just 7"


def test_critique_prompt_keeps_task_and_failed_answer_then_restores_task():
    import numpy as np

    batch = {"instruction": np.array(["Add {2} and 3."], dtype=object),
             "answer": np.array(["6"], dtype=object)}
    prompts = CritiquePrompts(dict(batch), DistillConfig().critique_template, "answer")
    assert "Add {2} and 3." in prompts["instruction"][0] and "Earlier answer:\n6" in \
        prompts["instruction"][0]  # braces in the task do not break formatting
    prompts["answer"] = np.array(["It is wrong.\nRevised answer: 5"], dtype=object)
    out = ExtractRewrites(prompts, "Revised answer:", "answer")
    assert out["instruction"][0] == "Add {2} and 3." and out["answer"][0] == "5"
    assert out["failed_answer"][0] == "6" and out["critique"][0].startswith("It is wrong")


def test_teacher_prompt_parse_and_training_answer_per_domain():
    row = {"instruction": "Add 2 and 3.", "answer": "6", "rationale": "expected 5, got 6",
           "response": "2 + 3 = 5\nAnswer: 5"}
    p = teacher_prompt(row, "answer", "response", show_reference=False)
    assert "## Task\nAdd 2 and 3." in p and "expected 5, got 6" in p and "Reference" not in p
    assert "## Reference answer\n2 + 3 = 5" in teacher_prompt(row, "answer", "response", True)

    assert parse_reply("2 plus 3 is 5.\nFinal answer: 5") == ("2 plus 3 is 5.", "5")
    assert parse_reply("Final answer: 1. Hmm. final answer: 2") == ("Final answer: 1. Hmm.", "2")
    assert parse_reply("just 5") == ("", "just 5")

    t = TeacherConfig()
    assert training_response("math", "2 plus 3 is 5.", "5", t) == "2 plus 3 is 5.\n\nAnswer: 5"
    assert training_response("math", "", "Answer: 5", t) == "Answer: 5"  # prefix not doubled
    assert training_response("general", "because", "UP", t) == "UP"  # exact-match domain
    code = training_response("code", "Return x + 1.", "def f(x):\n    return x + 1", t)
    assert code == "Return x + 1.\n\n```python\ndef f(x):\n    return x + 1\n```"


def test_teacher_config_reuses_judge_settings_and_validates():
    jc = JudgeConfig(max_retries=3, qps=9)
    t = TeacherConfig(kind="openai_compatible", base_url="http://h/v1", model="m", qps=2)
    tj = teacher_judge_config(jc, t)
    assert (tj.judge, tj.model, tj.base_url, tj.max_retries, tj.qps) == (
        "openai_compatible", "m", "http://h/v1", 3, 2)
    assert teacher_judge_config(jc, TeacherConfig(kind="anthropic")).model_name == "claude-sonnet-4-5"
    with pytest.raises(ValidationError, match="needs base_url and model"):
        TeacherConfig(kind="openai_compatible")
    with pytest.raises(ValidationError):
        TeacherConfig(kind="gpt")


def rows_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows)


def test_examples_carry_source_labels_and_reverse_pairs_point_back():
    base = {"id": "m1", "instruction": "Add 2 and 3.", "response": "2 + 3 = 5\nAnswer: 5",
            "domain": "math", "difficulty": "easy", "source": "cogumi_suite",
            "metadata": json.dumps({"task": "math.add", "answer": 5}), "answer": "6"}
    ref = ReferenceTeacher(rows_table([base]), "answer", "response")
    assert ref[SOURCE].to_pylist() == ["reference_teacher"]
    assert ref["answer"].to_pylist() == [base["response"]]

    ex = AsExamples(ref, "teacher", "answer")
    assert ex.schema == schema()
    row = ex.to_pylist()[0]
    assert row["id"] == "m1#teacher" and row["source"] == "reference_teacher"
    assert row["response"] == base["response"] and row["quality"] == 2.0
    meta = json.loads(row["metadata"])
    assert meta["task"] == "math.add" and meta["distill"] == {
        "of": "m1", "part": "teacher", "source": "reference_teacher"}

    sc = AsExamples(rows_table([{**base, "answer": "5"}]), "self_critique", "answer").to_pylist()[0]
    assert sc["source"] == "self_critique" and sc["response"] == "5" and sc["quality"] == 3.0

    replay = AsExamples(rows_table([base]), "replay", "response").to_pylist()[0]
    assert replay["id"] == "m1" and replay["source"] == "cogumi_suite" and replay["part"] == "replay"

    rev = ReversePairs(ex, "Task for:\n{response}").to_pylist()[0]
    assert rev["id"] == "m1#teacher#reverse" and rev["response"] == "Add 2 and 3."
    assert rev["instruction"] == "Task for:\n" + base["response"]
    assert rev["source"] == "reverse_reference_teacher"
    assert json.loads(rev["metadata"]) == {"distill": {"reverse_of": "m1#teacher"}}  # not verifiable


def test_config_rejects_templates_without_their_fields():
    with pytest.raises(ValidationError, match=r"critique_template must contain .*'\{instruction\}'"):
        DistillConfig(critique_template="Fix this: {answer}")
    with pytest.raises(ValidationError, match="reverse_template"):
        DistillConfig(reverse_template="Write the task.")
    with pytest.raises(ValidationError, match="extra"):
        DistillConfig.model_validate({"teacher": {"kind": "reference", "modle": "x"}})
