"""The harness end to end: an oracle engine scores 100%, a silent one 0%; gates; `cogumi eval`."""

from __future__ import annotations

import json

import pytest

from cogumi_ray.errors import EvalError
from cogumi_ray.eval.config import EvalConfig
from cogumi_ray.eval.gates import enforce_gates, failed_gates
from cogumi_ray.eval.harness import benchmark_file, evaluate, resolve_benchmarks_dir
from cogumi_ray.generate.engines import Completion


class _TableEngine:
    """Answers from a lookup table keyed by instruction (an Engine for harness tests)."""

    name = "table"

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table
        self.calls = 0

    def generate(self, prompts, params):
        self.calls += 1
        return [Completion(self.table.get(p, ""), 1, 1, 0.0, "stop") for p in prompts]

    def close(self) -> None:
        pass


def _oracle(cfg: EvalConfig) -> _TableEngine:
    from cogumi_ray.eval.gsm8k import load_questions
    from cogumi_ray.eval.humaneval import load_problems

    table = {}
    for p in load_problems(benchmark_file(cfg, cfg.humaneval_file), cfg.limit.get("humaneval")):
        table[cfg.humaneval_instruction.format(prompt=p.prompt)] = (
            f"Here you go:\n```python\n{p.prompt}{p.canonical_solution}```")
    for q in load_questions(benchmark_file(cfg, cfg.gsm8k_file), cfg.limit.get("gsm8k")):
        table[cfg.gsm8k_instruction.format(question=q.question)] = q.solution
    return _TableEngine(table)


def test_oracle_scores_everything_and_silence_nothing():
    cfg = EvalConfig(benchmarks=["humaneval", "gsm8k"], limit={"humaneval": 8, "gsm8k": 40},
                     batch_size=16)
    oracle = _oracle(cfg)
    report = evaluate(oracle, cfg)
    assert report.as_dict()["humaneval"] == {"passed": 8, "total": 8, "score": 1.0}
    assert report.as_dict()["gsm8k"] == {"passed": 40, "total": 40, "score": 1.0}
    assert oracle.calls == 1 + 3  # batched: 8 prompts in one call, 40 in three
    silent = evaluate(_TableEngine({}), cfg)
    assert silent.flat_scores() == {"humaneval": 0.0, "gsm8k": 0.0}
    assert {it.reason for it in silent.items() if it.benchmark == "gsm8k"} == {"no number in the answer"}


def test_suite_benchmark_needs_examples():
    with pytest.raises(EvalError, match="held-out examples"):
        evaluate(_TableEngine({}), EvalConfig(benchmarks=["suite"]), None)


def test_gates():
    scores = {"humaneval": 0.2, "suite": 0.5, "suite.code": 0.7}
    assert failed_gates(scores, {"humaneval": 0.2, "suite.code": 0.5}) == []
    failed = failed_gates(scores, {"humaneval": 0.3, "gsm8k": 0.1, "suite": 0.5})
    assert failed[0].startswith("gsm8k: not measured")
    assert failed[1] == "humaneval: 0.200 < 0.300"
    with pytest.raises(EvalError, match=r"2 quality gate\(s\) failed"):
        enforce_gates(scores, {"humaneval": 0.3, "gsm8k": 0.1})


def test_gate_and_path_config_errors(tmp_path):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="unknown gate keys"):
        EvalConfig(gates={"suite.coding": 0.5})
    with pytest.raises(ValidationError, match=r"fractions in \[0, 1\]"):
        EvalConfig(gates={"suite": 50})
    assert EvalConfig(gates={"suite": {"code": 0.5}}).gates == {"suite.code": 0.5}
    with pytest.raises(EvalError, match="benchmark folder 'no/such/dir' not found"):
        resolve_benchmarks_dir("no/such/dir")
    with pytest.raises(EvalError, match="does not exist"):
        benchmark_file(EvalConfig(benchmarks_dir=str(tmp_path)), "humaneval.jsonl")


@pytest.fixture
def _one_torch_thread():
    import torch

    torch.set_num_threads(1)


def test_cli_eval_exits_2_on_an_unmet_gate(tmp_path, tiny_model_dir, capsys, _one_torch_thread):
    from cogumi_ray.cli import main

    args = ["eval", "--root", str(tmp_path), "--name", "r", "--model", tiny_model_dir,
            "--benchmark", "gsm8k", "--benchmark", "humaneval",
            "--set", "eval.limit={gsm8k: 3, humaneval: 2}",
            "--set", "eval.params.max_new_tokens=8"]
    assert main([*args, "--set", "eval.gates.gsm8k=0.9"]) == 2
    err = capsys.readouterr().err
    assert "quality gate(s) failed" in err and "gsm8k: 0.000 < 0.900" in err
    report = json.loads((tmp_path / "r" / "eval" / "report.json").read_text())
    assert report["failed_gates"] == ["gsm8k: 0.000 < 0.900"]
    assert report["scores"]["gsm8k"]["total"] == 3
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["stages"]["eval"]["status"] == "failed"

    assert main([*args, "--set", "eval.gates.gsm8k=0.0"]) == 0
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    rec = manifest["stages"]["eval"]
    assert rec["status"] == "done"
    assert rec["metrics"]["gsm8k.total"] == 3 and rec["metrics"]["humaneval.total"] == 2
    assert set(rec["outputs"]) == {"report", "items"}
