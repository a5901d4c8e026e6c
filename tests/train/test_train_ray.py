"""Real Ray Train runs on the tiny model: the base SFT stage and fault tolerance."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import pytest
from testkit import FAST_TRAIN, sft_inputs, write_sft_splits

from cogumi_ray.config import CogumiConfig
from cogumi_ray.runs import RunContext
from cogumi_ray.train.config import TrainConfig


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_sft_splits(tmp_path_factory.mktemp("sft_data"))


def test_train_base_stage_gives_loadable_model_and_metrics(
    ray_session, tiny_model_dir, data_dir, tmp_path
):
    import torch

    from cogumi_ray.models.load import load_model_and_tokenizer
    from cogumi_ray.train.base_stage import run

    cfg = CogumiConfig(train=TrainConfig(**FAST_TRAIN, num_to_keep=1))
    ctx = RunContext(str(tmp_path / "run"))
    out = run(cfg, ctx, sft_inputs(tiny_model_dir, data_dir))

    model_dir = out.outputs["model"]
    assert sorted(os.listdir(model_dir)) == sorted(
        n for n in os.listdir(model_dir) if not n.startswith(("optimizer", "rng_state", "trainer"))
    )
    trained, tok = load_model_and_tokenizer(model_dir)
    base, _ = load_model_and_tokenizer(tiny_model_dir)
    assert tok.chat_template  # the folder stays usable by generation and serving
    assert not torch.equal(trained.lm_head.weight, base.lm_head.weight)  # training changed it

    m = out.metrics
    assert m["steps"] == 6 and m["max_steps"] == 6 and m["train_rows"] == 96
    assert math.isfinite(m["eval_loss"]) and math.isfinite(m["train_loss"])
    assert m["tokens_per_s"] > 0 and m["tokens_seen"] > 0 and m["wall_s"] > 0
    assert m["best_step"] in (2, 4, 6)
    # keep-best kept the best and the latest (num_to_keep=1 plus the latest, when different)
    ckpts = [d for d in os.listdir(m["checkpoints"]) if d.startswith("checkpoint_")]
    assert 1 <= len(ckpts) <= 2
    json.dumps(m)  # manifest-serialisable


def _crash_once_at(step: int, marker: str):
    """Factory of a callback that kills its worker process at `step` on the first attempt."""

    def make():
        from transformers import TrainerCallback

        class CrashOnce(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step == step and not os.path.exists(marker):
                    Path(marker).write_text(str(step))
                    # Ray Train's controller registers reported checkpoints when it polls the
                    # workers (every 2 s); give it time to see the last one, then die hard, as
                    # an OOM kill or a lost node would.
                    time.sleep(6)
                    os._exit(1)

        return CrashOnce()

    return make


@pytest.mark.slow  # a worker group restart: over a minute on 2 cores
def test_worker_killed_mid_run_resumes_from_last_checkpoint(
    ray_session, tiny_model_dir, data_dir, tmp_path
):
    from cogumi_ray.train.trainer import SFTJob, run_sft

    marker = str(tmp_path / "crashed")
    cfg = TrainConfig(**{**FAST_TRAIN, "max_steps": 8, "eval_steps": 2, "save_steps": 4}, max_failures=1)
    job = SFTJob(
        name="ft", model_path=tiny_model_dir, train_path=str(data_dir / "train.parquet"),
        val_path=str(data_dir / "val.parquet"), cfg=cfg, storage_path=str(tmp_path / "ckpt"),
        callbacks=(_crash_once_at(6, marker),),
    )
    result = run_sft(job)
    assert os.path.exists(marker)  # the worker did die at step 6
    # the restarted worker group resumed from the step-4 checkpoint (the last one before the
    # crash at step 6), not from 0, and finished
    assert result.metrics["start_step"] == 4
    assert result.metrics["steps"] == 8


def _slow_after(step: int, released: str, reached: str):
    """Factory of a callback that, on the first attempt, slows every step after `step` (so the
    test has time to kill the worker from outside) until the test writes `released`."""

    def make():
        from transformers import TrainerCallback

        class SlowAfter(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step > step and not os.path.exists(released):
                    Path(reached).write_text(str(state.global_step))
                    time.sleep(4.0)

        return SlowAfter()

    return make


def _training_worker_pids() -> list[int]:
    """Live Ray Train workers from Ray's actor table in the GCS (what the state API serves; the
    test session runs without the dashboard that `ray.util.state` would query)."""
    from ray._private import state

    return [int(a["Pid"]) for a in state.actors().values()
            if a["ActorClassName"] == "RayTrainWorker" and a["State"] == "ALIVE" and a.get("Pid")]


@pytest.mark.slow  # a worker group restart: over a minute on 2 cores
def test_worker_sigkilled_from_outside_resumes_from_last_checkpoint(
    ray_session, tiny_model_dir, data_dir, tmp_path
):
    """SIGKILL of the training worker process, found through Ray's state API, as an OOM killer
    or a lost node would do it: Ray Train restarts the group from the last checkpoint."""
    import signal
    import threading

    from cogumi_ray.train.trainer import SFTJob, run_sft

    released, reached = str(tmp_path / "released"), str(tmp_path / "reached")
    cfg = TrainConfig(**{**FAST_TRAIN, "max_steps": 8, "eval_steps": 2, "save_steps": 4}, max_failures=1)
    job = SFTJob(
        name="sigkill", model_path=tiny_model_dir, train_path=str(data_dir / "train.parquet"),
        val_path=str(data_dir / "val.parquet"), cfg=cfg, storage_path=str(tmp_path / "ckpt"),
        callbacks=(_slow_after(4, released, reached),),
    )
    out: dict = {}
    runner = threading.Thread(target=lambda: out.update(result=run_sft(job)), daemon=True)
    runner.start()
    deadline = time.monotonic() + 300
    while not os.path.exists(reached) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert os.path.exists(reached), "training never got past step 4"
    time.sleep(3)  # the controller polls workers every 2 s: let it register the step-4 checkpoint
    pids = _training_worker_pids()
    assert pids, "no live RayTrainWorker actor in Ray's state API"
    Path(released).write_text("go")  # the restarted group runs at full speed
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    runner.join(timeout=600)
    result = out["result"]
    assert int(Path(reached).read_text()) < 8  # killed before the run could finish
    assert result.metrics["start_step"] == 4
    assert result.metrics["steps"] == 8
