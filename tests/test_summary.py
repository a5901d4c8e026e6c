import json

import pytest

from cogumi_ray.errors import RunError
from cogumi_ray.summary import summary_lines


def _rec(metrics, status="done"):
    return {"status": status, "seconds": 1.0, "metrics": metrics, "outputs": {}, "error": None}


def test_summary_in_pipeline_order_with_headline_results(tmp_path):
    stages = {
        "eval": _rec({"gsm8k": 0.0, "gsm8k.passed": 0, "gsm8k.total": 32, "suite": 0.06,
                      "suite.passed": 18, "suite.total": 300}),
        "distill": _rec({"teacher": "reference", "pass_rate_before": 0.0633, "pass_rate_after": 0.08,
                         "pass_rate_delta": 0.0167, "self_critique_fixed": 2, "self_critique_rows": 150,
                         "failures": 1003}),
        "eval_base": _rec({"pass_rate.code": 0.1167, "pass_rate": 0.0633, "passed": 19, "total": 300,
                           "pre_sft.pass_rate": 0.0, "pre_sft.passed": 0, "pre_sft.total": 60,
                           "pass_rate.hard": 0.01}),
        "suite": _rec({"clean_rows": 2000}),
        "modifiers": _rec({}, status="failed"),
    }
    (tmp_path / "manifest.json").write_text(json.dumps({"run": "demo", "stages": stages}))
    lines = summary_lines(str(tmp_path))
    names = [ln.split()[0] for ln in lines[1:] if ln.startswith("  ") and not ln.startswith("   ")]
    assert names[:5] == ["suite", "eval_base", "distill", "modifiers", "eval"]
    text = "\n".join(lines)
    eval_base_row = next(ln for ln in lines if ln.strip().startswith("eval_base"))
    assert eval_base_row.index("pass_rate=") < eval_base_row.index("pass_rate.code=")  # plain keys first
    assert "base on held-out suite: 6.3% (19/300); before SFT 0.0% (0/60)" in text
    assert "code 11.7%" in text and "hard 1.0%" in text
    assert "6.3% -> 8.0% (+1.7 pp)" in text and "fixed 2/150 of 1003 failures" in text
    assert "suite 6.0% (18/300)" in text and "gsm8k 0.0% (0/32)" in text
    assert "modifiers: LoRA" not in text  # a failed stage has no results


def test_summary_of_a_missing_run(tmp_path):
    with pytest.raises(RunError, match="no run"):
        summary_lines(str(tmp_path))
