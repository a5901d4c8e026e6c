"""`cogumi distill` on Ray Data: self-critique bookkeeping (scripted student and the real tiny
model), an OpenAI-compatible teacher on localhost, the reference teacher with replay, dedup,
reverse pairs, retraining and before/after scoring, and bad input."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from fake_llm_server import FakeLLMServer, _content

from cogumi_ray.config import CogumiConfig
from cogumi_ray.data.config import SuiteConfig
from cogumi_ray.data.suite.generator import generate_suite
from cogumi_ray.errors import DataError

# Set before Ray starts (at collection), so Ray's workers inherit it like a real key.
KEY_ENV = "COGUMI_TEST_JUDGE_KEY"
os.environ.setdefault(KEY_ENV, "test-key")


def split_suite() -> tuple[list[dict], list[dict]]:
    """(train, test) rows of a small suite in three domains the verifier checks without code."""
    rows = [ex.to_row() for ex in generate_suite(SuiteConfig(
        examples_per_domain=5, domains=["math", "general", "automation"]))]
    test = [r for i, r in enumerate(rows) if i % 5 == 4]
    return [r for r in rows if r not in test], test


def failed(rows: list[dict]) -> list[dict]:
    return [{**r, "answer": "no idea", "verdict": "fail", "rationale": "expected something else"}
            for r in rows]


def write(path: Path, rows: list[dict]) -> str:
    os.makedirs(path, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path / "part-0.parquet")
    return str(path)


def read(path: str) -> list[dict]:
    return pads.dataset(path, format="parquet").to_table().to_pylist()


def config(root: Path, **distill) -> CogumiConfig:
    return CogumiConfig.model_validate({
        "run": {"name": "d", "root": str(root / "runs")},
        "judge": {"concurrency": 1, "batch_size": 8},
        "distill": {"replay_fraction": 0.0, "retrain": False, "evaluate": False, **distill},
    })


def run_distill(cfg: CogumiConfig, data: dict[str, str]):
    """The distill stage with its inputs given as paths (no upstream stages in these tests)."""
    from cogumi_ray.distill.stage import run
    from cogumi_ray.runs import RunContext

    return run(cfg, RunContext(cfg.run_dir), data)


class ScriptedLLM(FakeLLMServer):
    """One endpoint playing the student (answering critique prompts) and the teacher."""

    def __init__(self, answers: dict[str, str], fixable: set[str], teacher_wrong: set[str]):
        super().__init__()
        self.answers, self.fixable, self.teacher_wrong = answers, fixable, teacher_wrong
        self.teacher_calls = 0

    def grade(self, system: str, messages: list[dict]) -> str:
        text = _content(messages[0])
        if system.startswith("You are a teacher"):
            self.teacher_calls += 1
            task = re.search(r"## Task\n(.*?)\n\n## The student", text, re.S).group(1)
            final = "999" if task in self.teacher_wrong else self.answers[task]
            return f"Step 1: read the task.\nStep 2: solve it.\nFinal answer: {final}"
        task = re.search(r"Task:\n(.*?)\n\nEarlier answer:", text, re.S).group(1)
        if task in self.fixable:
            return f"The earlier answer is wrong.\nRevised answer: {self.answers[task]}"
        return "It looks fine.\nRevised answer: 0 wrong"


def final_answer(row: dict) -> str:
    meta = json.loads(row["metadata"])
    if "call" in meta:
        return json.dumps(meta["call"])
    return str(meta.get("answer", meta.get("expected")))


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill_data")
    train, test = split_suite()
    fails = failed(train[:6]) + failed(test[:1])  # one held-out failure: must be dropped
    passing = [{**train[6], "answer": train[6]["response"], "verdict": "pass", "rationale": "ok"}]
    data = {"failures": write(root / "judgments", fails + passing),
            "train": write(root / "train", train), "val": write(root / "val", train[:3]),
            "test": write(root / "test", test)}
    return data, train[:6]


def test_scripted_student_and_openai_compatible_teacher(ray_session, tmp_path, suite):
    data, failures = suite
    answers = {r["instruction"]: final_answer(r) for r in failures}
    math = [r["instruction"] for r in failures if r["domain"] == "math"]
    fixable = set(math[:2])
    wrong = {next(r["instruction"] for r in failures if r["domain"] == "general")}
    server = ScriptedLLM(answers, fixable, wrong).start()
    try:
        cfg = config(tmp_path, engine={
            "kind": "openai", "openai": {"base_url": f"{server.url}/v1", "model": "student",
                                         "api_key_env": KEY_ENV, "concurrency": 1}},
            teacher={"kind": "openai_compatible", "base_url": f"{server.url}/v1",
                     "model": "teacher", "api_key_env": KEY_ENV, "concurrency": 1})
        data = {**data, "model": "unused-by-the-openai-engine"}
        out = run_distill(cfg, data)
        m = out.metrics
        assert (m["failures_in"], m["heldout_excluded"], m["failures"]) == (7, 1, 6)

        critiques = {r["id"]: r for r in read(str(tmp_path / "runs/d/distill/self_critique"))}
        assert len(critiques) == 6  # every failure got a rewrite, re-judged by the verifier
        passed = {i for i, r in critiques.items() if r["verdict"] == "pass"}
        assert {critiques[i]["instruction"] for i in passed} == fixable
        assert all(r["failed_answer"] == "no idea" and r["critique"] for r in critiques.values())
        assert m["self_critique_fixed"] == 2 and m["self_critique_fix_rate"] == round(2 / 6, 4)

        taught = read(str(tmp_path / "runs/d/distill/teacher"))
        assert {r["id"] for r in taught} == set(critiques) - passed  # only what was left
        assert m["teacher_attempted"] == 4 and m["teacher_kept"] == 3  # one wrong answer dropped
        assert m["teacher_output_tokens"] > 0 and m["teacher_errors"] == 0

        rows = {r["id"]: r for r in read(out.outputs["dataset"])}
        assert len(rows) == m["dataset_rows"] == 5
        sources = sorted(r["source"] for r in rows.values())
        assert sources == ["openai_compatible_teacher"] * 3 + ["self_critique"] * 2
        for r in rows.values():
            if r["source"] == "openai_compatible_teacher" and r["domain"] == "math":
                assert r["response"].startswith("Step 1") and "\nAnswer: " in r["response"]
            if r["domain"] == "general":
                assert "Step" not in r["response"]  # exact-match domain: final answer only
        assert out.outputs["model"] == data["model"] and m["retrained"] is False

        # Asking again (a re-run) is served from the stage's reply cache: nothing sent or paid.
        from cogumi_ray.distill.teacher import TeacherWorker, teacher_judge_config

        calls = server.teacher_calls
        tj = teacher_judge_config(cfg.judge, cfg.distill.teacher)
        worker = TeacherWorker(tj.model_dump(mode="json"), cfg.distill.teacher.model_dump(mode="json"),
                               str(tmp_path / "runs/d/distill/cache"), "answer", "response")
        asked = {r["id"] for r in taught}
        again = worker(pa.Table.from_pylist(failed([r for r in failures if r["id"] in asked])))
        assert server.teacher_calls == calls and all(again["teacher_cached"].to_pylist())
        assert sum(again["teacher_paid_usd"].to_pylist()) == 0
    finally:
        server.stop()


def test_tiny_model_self_critique_reference_teacher_replay_dedup_and_reverse_pairs(
        ray_session, tmp_path, suite, tiny_sft_model_dir):
    data, failures = suite
    data = {**data, "model": tiny_sft_model_dir}
    cfg = config(tmp_path, critique_params={"max_new_tokens": 8}, replay_fraction=1.0,
                 reverse_pairs=True)
    out = run_distill(cfg, data)
    m = out.metrics
    critiques = read(str(tmp_path / "runs/d/distill/self_critique"))
    fixed = {r["id"] for r in critiques if r["verdict"] == "pass"}  # the tiny model: maybe none
    assert len(critiques) == 6 and m["self_critique_fixed"] == len(fixed)
    assert all(r["critique"] is not None and r["judge"] == "verifier" for r in critiques)
    assert m["teacher_attempted"] == 6 - len(fixed) == m["teacher_kept"]

    rows = read(out.outputs["dataset"])
    forward = [r for r in rows if not r["source"].startswith("reverse_")]
    reverse = [r for r in rows if r["source"].startswith("reverse_")]
    assert sorted(r["source"] for r in forward) == sorted(
        ["reference_teacher"] * (6 - len(fixed)) + ["self_critique"] * len(fixed))
    by_id = {r["id"]: r for r in forward}
    for r in forward:
        if r["source"] == "reference_teacher":  # the suite's own answer, labelled as such
            assert r["response"] == next(f["response"] for f in failures
                                         if f["id"] == json.loads(r["metadata"])["distill"]["of"])
    for r in reverse:  # answer -> task, pointing back at its forward row
        of = json.loads(r["metadata"])["distill"]["reverse_of"]
        assert r["response"] == by_id[of]["instruction"] and by_id[of]["response"] in r["instruction"]
    assert len(reverse) == len(forward) == m["dataset_rows"] // 2
    report = json.loads(Path(out.outputs["report"]).read_text())
    assert "reference_teacher" in report["note"]
    assert m["retrained"] is False and out.outputs["model"] == tiny_sft_model_dir

    # Each reference correction is its training row again: dedup keeps the correction only.
    mix = read(out.outputs["train_mix"])  # the modifiers' default training set
    assert m["dedup_dropped"] >= 6 - len(fixed)
    assert len({(r["instruction"], r["response"]) for r in mix}) == len(mix)
    replayed = [r for r in mix if r["part"] == "replay"]
    n_train = len(split_suite()[0])
    assert m["replay_rows"] == len(replayed)
    assert n_train - 6 <= len(replayed) <= n_train - (6 - len(fixed))


@pytest.mark.slow
def test_retrain_and_rescore_the_held_out_split(ray_session, tmp_path, suite, tiny_sft_model_dir):
    data, _ = suite
    data = {**data, "model": tiny_sft_model_dir}
    cfg = config(tmp_path, self_critique=False, retrain=True, evaluate=True, eval_limit=3,
                 select="retrained",
                 training={"max_steps": 2, "per_device_batch_size": 4, "eval_steps": 1,
                           "save_steps": 1, "logging_steps": 1, "cpus_per_worker": 1})
    cfg.eval.params.max_new_tokens = 16
    out = run_distill(cfg, data)
    m = out.metrics
    assert m["retrained"] and Path(out.outputs["model"], "config.json").is_file()
    assert out.outputs["model"] != tiny_sft_model_dir and "kept" not in m
    assert m["train_steps"] == 2 and m["eval_examples"] == 3
    assert m["pass_rate_delta"] == pytest.approx(m["pass_rate_after"] - m["pass_rate_before"],
                                                 abs=1e-4)
    assert {"pass_rate_before.math", "pass_rate_after.math", "pass_rate_delta.math"} <= set(m)
    report = json.loads(Path(out.outputs["report"]).read_text())
    assert report["scores"]["before"]["total"] == report["scores"]["after"]["total"] == 3


@pytest.mark.slow
def test_a_retrain_that_does_no_better_on_validation_is_not_exported(
        ray_session, tmp_path, suite, tiny_sft_model_dir):
    data, _ = suite
    data = {**data, "model": tiny_sft_model_dir}
    # Two steps at a learning rate of 1.0 wreck the weights: no more validation rows can pass.
    cfg = config(tmp_path, self_critique=False, retrain=True, evaluate=True,
                 training={"max_steps": 2, "per_device_batch_size": 4, "learning_rate": 1.0,
                           "warmup_ratio": 0.0, "lr_scheduler": "constant_with_warmup",
                           "eval_steps": 1, "save_steps": 2, "logging_steps": 1,
                           "cpus_per_worker": 1})
    cfg.eval.params.max_new_tokens = 16
    out = run_distill(cfg, data)
    m = out.metrics
    assert m["retrained"] and m["kept"] == "base" and m["val_examples"] == 3
    assert m["val_pass_rate_retrained"] <= m["val_pass_rate_base"]
    assert out.outputs["model"] == tiny_sft_model_dir
    # held-out: the exported model is the base, and the retrain's own rate is still reported
    assert m["pass_rate_after"] == m["pass_rate_before"] and m["pass_rate_delta"] == 0
    assert "retrained_pass_rate" in m and "retrained_pass_rate_delta" in m
    report = json.loads(Path(out.outputs["report"]).read_text())
    assert report["scores"]["retrained"]["total"] == m["eval_examples"]
    assert Path(tmp_path, "runs", "d", "distill", "model", "config.json").is_file()


def test_no_failures_completes_with_an_empty_set(ray_session, tmp_path, suite):
    data, _ = suite
    train, _ = split_suite()
    only_passes = write(tmp_path / "passes", [{**r, "answer": r["response"], "verdict": "pass",
                                               "rationale": "ok"} for r in train[:3]])
    data = {**data, "failures": only_passes, "model": "/nonexistent/model"}
    out = run_distill(config(tmp_path, retrain=True, evaluate=True), data)
    assert out.metrics["failures"] == 0 and out.metrics["dataset_rows"] == 0
    assert out.metrics["retrained"] is False and out.outputs["model"] == "/nonexistent/model"
    assert read(out.outputs["dataset"]) == []
    assert pq.read_schema(next(Path(out.outputs["dataset"]).glob("*.parquet"))).names[:2] == [
        "id", "instruction"]


def test_missing_columns_fail_with_the_columns_named(ray_session, tmp_path, suite):
    data, _ = suite
    bad = write(tmp_path / "bad", [{"id": "1", "instruction": "x", "response": "y"}])
    with pytest.raises(DataError, match=r"lack the columns \['answer'\]"):
        run_distill(config(tmp_path), {**data, "failures": bad, "model": "m"})


def test_pipeline_registers_failures_after_judge_and_distill_after_failures():
    from cogumi_ray.pipeline import STAGES

    names = [s.name for s in STAGES]
    assert names.index("judge") < names.index("failures") < names.index("distill")
    inputs = next(s for s in STAGES if s.name == "distill").inputs(CogumiConfig())
    assert inputs == {"model": "train_base.model", "failures": "judge.failures",
                      "train": "curate.train", "val": "curate.val", "test": "curate.test"}
