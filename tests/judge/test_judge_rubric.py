"""Judge reply parsing, pairwise order resolution, config validation."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from cogumi_ray.judge.config import JudgeConfig
from cogumi_ray.judge.pairwise import resolve
from cogumi_ray.judge.rubric import (
    REFERENCE_SCHEMA,
    ParseError,
    Preference,
    extract_json,
    parse_grade,
    parse_preference,
)

GOOD = {"factual_accuracy": 3, "completeness": 2, "coherence": 1, "helpfulness": 2,
        "verdict": "PASS", "rationale": "right"}


def test_grade_parses_fenced_json_after_prose():
    g = parse_grade("Here you go:\n```json\n" + json.dumps(GOOD) + "\n```\nThanks")
    assert g.verdict == "pass" and g.score == 8 and g.criteria["coherence"] == 1
    assert g.rationale == "right"


def test_grade_score_is_at_least_one():
    zero = dict(GOOD, factual_accuracy=0, completeness=0, coherence=0, helpfulness=0, verdict="fail")
    assert parse_grade(json.dumps(zero)).score == 1


@pytest.mark.parametrize("bad, needle", [
    ("no json here", "no JSON object"),
    (json.dumps(dict(GOOD, factual_accuracy=4)), "between 0 and 3"),
    (json.dumps(dict(GOOD, completeness="two")), "'completeness' must be an integer"),
    (json.dumps(dict(GOOD, coherence=1.5)), "'coherence' must be an integer"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "helpfulness"}), "'helpfulness'"),
    (json.dumps(dict(GOOD, verdict="maybe")), "'verdict' must be"),
    ("[1, 2, 3]", "no JSON object"),
])
def test_grade_rejects_malformed_replies_with_a_reason(bad, needle):
    with pytest.raises(ParseError, match=needle):
        parse_grade(bad)


def test_extract_json_skips_broken_braces():
    assert extract_json('{oops} then {"winner": "A"}') == {"winner": "A"}


def test_preference_parsing():
    assert parse_preference('{"winner": "b", "rationale": "x"}') == Preference("B", "x")
    assert parse_preference('{"winner": "TIE"}').winner == "tie"
    with pytest.raises(ParseError, match="'winner'"):
        parse_preference('{"winner": "C"}')


@pytest.mark.parametrize("first, second, want, flipped", [
    ("A", "B", "answer", False),  # answer shown first and second: it wins both times
    ("B", "A", "other", False),
    ("A", "A", "tie", True),  # prefers whatever is shown first: position bias -> tie
    ("B", "B", "tie", True),
    ("tie", "tie", "tie", False),
    ("A", "tie", "tie", True),
])
def test_pairwise_resolution(first, second, want, flipped):
    assert resolve(Preference(first, ""), Preference(second, "")) == (want, flipped)


def test_schema_is_valid_json_schema_text():
    schema = json.loads(REFERENCE_SCHEMA)
    assert schema["properties"]["factual_accuracy"]["enum"] == [0, 1, 2, 3]
    assert schema["additionalProperties"] is False


def test_config_defaults_and_errors():
    assert JudgeConfig().judge == "verifier"
    assert JudgeConfig(judge="anthropic").model_name == "claude-sonnet-4-5"
    assert JudgeConfig(judge="openai").key_env == "OPENAI_API_KEY"
    with pytest.raises(ValidationError, match="needs base_url"):
        JudgeConfig(judge="openai_compatible", model="m")
    with pytest.raises(ValidationError, match="batch API"):
        JudgeConfig(judge="openai_compatible", model="m", base_url="http://x/v1", batch=True)
    with pytest.raises(ValidationError, match="pairwise"):
        JudgeConfig(mode="pairwise")
    with pytest.raises(ValidationError, match="extra"):
        JudgeConfig(judje="openai")


def test_example_api_judge_config_loads():
    from pathlib import Path

    from cogumi_ray.config import load_config

    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "judge-anthropic.yaml")
    assert cfg.judge.judge == "anthropic" and cfg.judge.batch and cfg.judge.key_env == "ANTHROPIC_API_KEY"
