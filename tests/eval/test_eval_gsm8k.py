"""GSM8K harness correctness: every reference solution scores; numeric extraction edge cases."""

from __future__ import annotations

from fractions import Fraction

import pytest

from cogumi_ray.errors import EvalError
from cogumi_ray.eval.answers import extract_final_number, numbers_match, parse_number
from cogumi_ray.eval.config import EvalConfig
from cogumi_ray.eval.gsm8k import grade, load_questions
from cogumi_ray.eval.harness import benchmark_file


@pytest.fixture(scope="module")
def questions():
    cfg = EvalConfig()
    return load_questions(benchmark_file(cfg, cfg.gsm8k_file))


def test_every_reference_solution_scores(questions):
    assert len(questions) == 1319
    results = [grade(q, q.solution) for q in questions]
    assert [why for ok, why in results if not ok] == []


def test_a_wrong_final_number_fails(questions):
    q = questions[0]
    ok, why = grade(q, q.solution.rsplit("####", 1)[0] + f"#### {q.reference + 1}")
    assert not ok and "expected" in why
    assert grade(q, "I do not know.") == (False, "no number in the answer")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("#### 1,000", 1000),
        ("so she pays $18.00 in total", 18),
        ("The answer is 42. (I checked 43 too? no)", 42),
        ("Final answer: -3", -3),
        ("\\boxed{7}", 7),
        ("first 3, then 5, so 8", 8),
        ("#### 5\nbut then 6", 5),
        ("rate is 12.5%", Fraction(25, 2)),
        ("it is .5", Fraction(1, 2)),
        ("no digits here", None),
    ],
)
def test_extract_final_number(text, value):
    assert extract_final_number(text) == (None if value is None else Fraction(value))


def test_numbers_compare_exactly():
    assert parse_number("1,234.50") == Fraction(2469, 2)
    assert numbers_match("#### 18.0", Fraction(18))
    assert not numbers_match("#### 18.01", Fraction(18))
    assert parse_number("abc") is None


def test_malformed_files(tmp_path):
    f = tmp_path / "g.jsonl"
    f.write_text('{"question": "q", "answer": "no marker"}\n')
    with pytest.raises(EvalError, match=r"g.jsonl:1: reference solution has no '#### <number>'"):
        load_questions(str(f))
    f.write_text('{"question": "q"}\n')
    with pytest.raises(EvalError, match=r"g.jsonl:1: GSM8K row needs"):
        load_questions(str(f))
    f.write_text("[1, 2\n")
    with pytest.raises(EvalError, match="not valid JSON"):
        load_questions(str(f))
