"""Stage outputs without Ray: failure extraction and the metric summary of a judgments dataset."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cogumi_ray.errors import DataError
from cogumi_ray.judge.config import JudgeConfig
from cogumi_ray.judge.run import check_columns
from cogumi_ray.judge.stage import cache_dir_for, extract_failures, summarize


def judgments(tmp_path, verdicts, domains, cached=None):
    n = len(verdicts)
    cached = cached or [False] * n
    t = pa.table({
        "id": [str(i) for i in range(n)], "domain": domains, "verdict": verdicts,
        "score": [None if v == "unjudged" else 5.0 for v in verdicts],
        "rationale": [f"why {i}" for i in range(n)], "judge": ["anthropic:m/reference"] * n,
        "input_tokens": [10] * n, "output_tokens": [2] * n, "cost_usd": [0.5] * n,
        "paid_usd": [0.0 if c else 0.5 for c in cached], "cached": cached,
    })
    d = tmp_path / "judgments"
    d.mkdir()
    pq.write_table(t.slice(0, n // 2), str(d / "a.parquet"))
    pq.write_table(t.slice(n // 2), str(d / "b.parquet"))
    return str(d)


def test_failures_and_metrics(tmp_path):
    path = judgments(tmp_path, ["pass", "fail", "fail", "unjudged", "pass", "pass"],
                     ["math", "math", "code", "code", "code", "general"],
                     cached=[True, True, False, False, False, False])
    out = str(tmp_path / "failures")
    assert extract_failures(path, out) == 2
    rows = pq.read_table(out).to_pylist()
    assert [r["id"] for r in rows] == ["1", "2"] and rows[0]["rationale"] == "why 1"
    m = summarize(path)
    assert (m["rows"], m["passed"], m["failed"], m["unjudged"]) == (6, 3, 2, 1)
    assert m["pass_rate"] == 0.6 and m["pass_rate.math"] == 0.5 and m["pass_rate.code"] == 0.5
    assert m["input_tokens"] == 60 and m["cost_usd"] == 3.0 and m["cost_usd_this_run"] == 2.0
    assert m["cached_rows"] == 2 and m["mean_score"] == 5.0


def test_no_failures_still_writes_a_readable_dataset(tmp_path):
    path = judgments(tmp_path, ["pass", "pass"], ["math", "math"])
    out = str(tmp_path / "failures")
    assert extract_failures(path, out) == 0
    assert pq.read_table(out).num_rows == 0
    assert extract_failures(path, out) == 0  # replaces the previous output


def test_input_columns_and_cache_dir_checks(tmp_path):
    with pytest.raises(DataError, match=r"lack the columns \['response'\]"):
        check_columns(["id", "instruction", "answer"], JudgeConfig(), "x")
    with pytest.raises(DataError, match=r"\['baseline'\]"):
        check_columns(["id", "instruction", "answer", "response"],
                      JudgeConfig(judge="openai", mode="pairwise", other_column="baseline"), "x")
    assert cache_dir_for(JudgeConfig(), str(tmp_path)) is None  # the verifier needs no cache
    assert cache_dir_for(JudgeConfig(judge="openai", cache=False), str(tmp_path)) is None
    assert cache_dir_for(JudgeConfig(judge="openai"), str(tmp_path)).endswith("/cache")
    from cogumi_ray.errors import JudgeError

    with pytest.raises(JudgeError, match="cache_dir"):
        cache_dir_for(JudgeConfig(judge="openai", cache_dir="s3://bucket/cache"), str(tmp_path))
