"""`cogumi judge` as a pipeline stage on Ray Data: outputs, metrics, failures, cached re-runs,
the verifier default and input errors."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from fake_llm_server import FakeLLMServer

from cogumi_ray.config import CogumiConfig
from cogumi_ray.errors import DataError
from cogumi_ray.pipeline import run_pipeline

# Set before Ray starts (at collection), so Ray's worker processes inherit it like a real key.
KEY_ENV = "COGUMI_TEST_JUDGE_KEY"
os.environ.setdefault(KEY_ENV, "test-key")


@pytest.fixture(scope="module")
def server():
    s = FakeLLMServer().start()
    yield s
    s.stop()


def write_answers(path, rows: list[dict]) -> str:
    cols = ["id", "instruction", "response", "domain", "difficulty", "source", "metadata", "answer"]
    table = pa.table({c: [str(r.get(c, "")) if c != "metadata" else json.dumps(r.get(c, {}))
                          for r in rows] for c in cols})
    os.makedirs(path, exist_ok=True)
    pq.write_table(table, os.path.join(path, "part-0.parquet"))
    return str(path)


def read(path) -> list[dict]:
    return pads.dataset(str(path), format="parquet").to_table().to_pylist()


def config(tmp_path, answers: str, **judge) -> CogumiConfig:
    return CogumiConfig.model_validate({
        "run": {"name": "j", "root": str(tmp_path / "runs")},
        "judge": {"input": answers, "concurrency": 1, "batch_size": 4, **judge},
    })


def llm_rows() -> list[dict]:
    rows = []
    for i in range(6):
        domain = "math" if i < 3 else "general"
        answer = str(i) if i % 3 else f"{i + 1}"  # rows 0 and 3 are wrong
        rows.append({"id": f"r{i}", "instruction": f"q{i}", "response": str(i), "domain": domain,
                     "answer": answer})
    rows.append({"id": "bad", "instruction": "q", "response": "x", "domain": "general",
                 "answer": "x [[malformed]]"})
    return rows


def test_llm_judge_stage_outputs_metrics_and_free_rerun(ray_session, server, tmp_path):
    answers = write_answers(tmp_path / "answers", llm_rows())
    cfg = config(tmp_path, answers, judge="anthropic", base_url=server.url, api_key_env=KEY_ENV,
                 max_reasks=1, max_retries=1, backoff_base_s=0.01)
    before = server.counts["messages"]
    out = run_pipeline(cfg, only=["judge"])["judge"]
    sent = server.counts["messages"] - before
    assert sent == 6 + 2  # the malformed row: one ask + one re-ask

    rows = {r["id"]: r for r in read(out.outputs["judgments"])}
    assert len(rows) == 7
    assert rows["r1"]["verdict"] == "pass" and rows["r1"]["score"] == 10.0
    assert rows["r0"]["verdict"] == "fail" and rows["r0"]["rationale"]
    assert rows["bad"]["verdict"] == "unjudged" and "malformed" in rows["bad"]["judge_error"]
    assert rows["r1"]["domain"] == "math" and rows["r1"]["answer"] == "1"  # inputs carried over
    assert rows["r1"]["judge"] == "anthropic:claude-sonnet-4-5/reference"
    assert json.loads(rows["r1"]["criteria"])["helpfulness"] == 3
    assert all(r["input_tokens"] > 0 and r["cost_usd"] > 0 for r in rows.values())

    failures = read(out.outputs["failures"])
    assert sorted(f["id"] for f in failures) == ["r0", "r3"]
    assert all(f["rationale"] for f in failures)

    m = out.metrics
    assert (m["rows"], m["passed"], m["failed"], m["unjudged"]) == (7, 4, 2, 1)
    assert m["pass_rate"] == pytest.approx(4 / 6, abs=1e-4)
    assert m["pass_rate.math"] == pytest.approx(2 / 3, abs=1e-4)
    assert m["input_tokens"] == sum(r["input_tokens"] for r in rows.values())
    assert m["cost_usd"] == pytest.approx(
        (m["input_tokens"] * 3 + m["output_tokens"] * 15) / 1e6, rel=1e-4)
    assert m["cost_usd_this_run"] == m["cost_usd"] and m["failure_rows"] == 2

    # Re-run (forced): every reply comes from the cache; nothing is sent, nothing is paid.
    again = run_pipeline(cfg, only=["judge"], force=["judge"])["judge"]
    assert server.counts["messages"] - before == sent
    assert again.metrics["cached_rows"] == 7 and again.metrics["cost_usd_this_run"] == 0
    assert again.metrics["cost_usd"] == pytest.approx(m["cost_usd"])
    assert again.metrics["passed"] == 4


@pytest.mark.slow  # the batch client is covered in test_judge_clients; this adds the Ray path
def test_openai_batch_mode_on_ray(ray_session, server, tmp_path):
    answers = write_answers(tmp_path / "answers", llm_rows()[:6])
    cfg = config(tmp_path, answers, judge="openai", base_url=f"{server.url}/v1",
                 api_key_env=KEY_ENV, batch=True, batch_poll_s=0.01, batch_size=6)
    before = server.counts["openai_batch_create"]
    out = run_pipeline(cfg, only=["judge"])["judge"]
    assert server.counts["openai_batch_create"] - before == 1  # one Ray batch -> one API batch
    m = out.metrics
    assert (m["passed"], m["failed"], m["unjudged"]) == (4, 2, 0)
    list_price = (m["input_tokens"] * 0.15 + m["output_tokens"] * 0.6) / 1e6
    assert m["cost_usd"] == pytest.approx(0.5 * list_price, rel=1e-4)  # batch discount


@pytest.mark.slow  # verifier checks are unit-tested in test_judge_verifier; this adds the stage
def test_verifier_default_on_benchmark_style_rows(ray_session, tmp_path):
    test = "def check(f):\n    assert f(2, 3) == 5\n"
    he = {"entry_point": "add", "test": test, "prompt": 'def add(a, b):\n    """Sum."""\n'}
    rows = [
        {"id": "g1", "instruction": "q", "response": "2+2=4\n#### 4", "domain": "math",
         "answer": "The answer is 4."},
        {"id": "g2", "instruction": "q", "response": "#### 1,000", "domain": "math",
         "answer": "I think 999"},
        {"id": "h1", "instruction": "add", "response": "", "domain": "code", "metadata": he,
         "answer": "```python\ndef add(a, b):\n    return a + b\n```"},
        {"id": "h2", "instruction": "add", "response": "", "domain": "code", "metadata": he,
         "answer": "    return a - b\n"},
        {"id": "o1", "instruction": "write a poem", "response": "roses", "domain": "general",
         "answer": "violets"},
    ]
    cfg = config(tmp_path, write_answers(tmp_path / "answers", rows))
    assert cfg.judge.judge == "verifier"  # the embedded default needs no API key
    out = run_pipeline(cfg, only=["judge"])["judge"]
    got = {r["id"]: r for r in read(out.outputs["judgments"])}
    assert {k: v["verdict"] for k, v in got.items()} == {
        "g1": "pass", "g2": "fail", "h1": "pass", "h2": "fail", "o1": "unjudged"}
    assert "expected 1000" in got["g2"]["rationale"]
    assert got["h2"]["rationale"].startswith("tests failed")
    assert got["o1"]["judge_error"].startswith("no verifier applies")
    assert out.metrics["cost_usd"] == 0 and out.metrics["pass_rate.code"] == 0.5


def test_missing_columns_and_missing_key_fail_fast(ray_session, tmp_path, monkeypatch):
    path = tmp_path / "answers"
    os.makedirs(path)
    pq.write_table(pa.table({"id": ["1"], "instruction": ["q"], "response": ["r"]}),
                   str(path / "p.parquet"))
    with pytest.raises(DataError, match=r"lack the columns \['answer'\]"):
        run_pipeline(config(tmp_path, str(path)), only=["judge"])

    from cogumi_ray.errors import JudgeError

    monkeypatch.delenv("COGUMI_UNSET_KEY", raising=False)
    answers = write_answers(tmp_path / "ok", llm_rows()[:1])
    cfg = config(tmp_path, answers, judge="anthropic", api_key_env="COGUMI_UNSET_KEY")
    with pytest.raises(JudgeError, match="COGUMI_UNSET_KEY"):
        run_pipeline(cfg, only=["judge"])
