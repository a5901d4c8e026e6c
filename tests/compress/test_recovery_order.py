"""Recovery fine-tuning trains on the hardest rows first: what the Ray Train worker's model is fed
starts with every one of distill's failure corrections, then the replay rows."""

from __future__ import annotations

import dataclasses
import json

import pyarrow as pa
import pyarrow.parquet as pq
from testkit import tiny_pairs

HARD = "zebra"  # a word no replay row (tiny_pairs: sums, sorts, functions) contains


def _record_batches(path: str):
    """Factory of a callback that appends the input_ids of every training forward pass to
    `path` (one JSON line each), read where the worker's model really gets them."""

    def make():
        from transformers import TrainerCallback

        class Record(TrainerCallback):
            def on_train_begin(self, args, state, control, model=None, **kwargs):
                def hook(module, a, kw):
                    if module.training:
                        with open(path, "a") as f:
                            f.write(json.dumps(kw["input_ids"].tolist()) + "\n")

                model.register_forward_pre_hook(hook, with_kwargs=True)

        return Record()

    return make


def _write(path: str, pairs: list[tuple[str, str]]) -> str:
    from cogumi_ray.data.schema import Example, arrow_schema

    rows = [Example(id=str(i), instruction=a, response=b, domain="general").to_row()
            for i, (a, b) in enumerate(pairs)]
    pq.write_table(pa.Table.from_pylist(rows, schema=arrow_schema()), path)
    return path


def test_recovery_streams_the_hard_rows_first(ray_session, tiny_sft_model_dir, tmp_path,
                                              monkeypatch):
    from cogumi_ray.compress.stage import recover
    from cogumi_ray.config import CogumiConfig
    from cogumi_ray.models.load import load_tokenizer
    from cogumi_ray.runs import RunContext
    from cogumi_ray.train import trainer

    seen = str(tmp_path / "batches.jsonl")
    real = trainer.run_sft
    monkeypatch.setattr(trainer, "run_sft", lambda job: real(dataclasses.replace(
        job, callbacks=(*job.callbacks, _record_batches(seen)))))
    inputs = {
        "hard": _write(str(tmp_path / "hard.parquet"),
                       [(f"Say {HARD} {i}.", f"{HARD} {i}") for i in range(6)]),
        "train": _write(str(tmp_path / "train.parquet"), tiny_pairs(40)),
    }
    cfg = CogumiConfig.model_validate({"compress": {"prune": {"replay_rows": 20, "recovery": {
        "max_steps": 2, "save_steps": 2, "eval_steps": 2, "per_device_batch_size": 2,
        "max_seq_len": 64, "packing": False, "cpus_per_worker": 1}}}})
    out = tmp_path / "run" / "compress"
    out.mkdir(parents=True)
    _, m = recover(cfg, RunContext(str(tmp_path / "run")), inputs, tiny_sft_model_dir, str(out))

    tok = load_tokenizer(tiny_sft_model_dir)
    with open(seen) as f:
        batches = [[tok.decode(r, skip_special_tokens=True) for r in json.loads(line)]
                   for line in f]
    assert m["recovery_hard_rows"] == 6 and m["recovery_first_steps"] == 3
    assert m["recovery_steps"] == len(batches) == 3 + 2  # the hard rows' steps, then max_steps
    head = [t for b in batches[:3] for t in b]
    assert all(HARD in t for t in head)  # 3 steps x 2 rows: all six hard rows, each once
    assert len({t.rsplit(HARD, 1)[-1] for t in head}) == 6
    assert not any(HARD in t for b in batches[3:] for t in b)  # then replay only
