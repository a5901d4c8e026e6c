"""Benchmark: Ray Train (1 and 2 workers) vs a plain HF Trainer in one process.

Same model (the tiny Llama built on the suite), same tokenised data, same global batch and
steps, same TrainingArguments (built by `cogumi_ray.train.trainer.training_arguments`); no
evaluation and one final checkpoint, so the loops differ only in what Ray adds (worker
processes, Ray Data streaming, the report callback, DDP for 2 workers). Reports steady-state
tokens/s (after warm-up, eval/save intervals excluded), end-to-end wall time and start-up
overhead (start -> first training step), and the ratios to the plain Trainer.

    .venv/bin/python benchmarks/train.py --steps 200 --batch 4 --per-domain 2000
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time


def build_inputs(work: str, per_domain: int, seed: int) -> tuple[str, str]:
    """Suite examples -> Example Parquet, and the tiny model built on them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cogumi_ray.data.config import SuiteConfig
    from cogumi_ray.data.schema import arrow_schema
    from cogumi_ray.data.suite.generator import generate_suite
    from cogumi_ray.models.config import ModelConfig
    from cogumi_ray.models.tiny import build_tiny

    examples = generate_suite(SuiteConfig(examples_per_domain=per_domain, seed=seed))
    data = os.path.join(work, "train.parquet")
    pq.write_table(pa.Table.from_pylist([e.to_row() for e in examples], schema=arrow_schema()), data)
    texts = [t for e in examples for t in (e.instruction, e.response)]
    model = build_tiny(ModelConfig(), texts, os.path.join(work, "model"))
    return data, model


def plain_trainer(data: str, model_dir: str, cfg, threads: int) -> dict:
    """The reference: HF Trainer over a map-style dataset, one process, no Ray."""
    import random

    import pyarrow.parquet as pq
    import torch
    from torch.utils.data import Dataset
    from transformers import AutoModelForCausalLM, Trainer

    from cogumi_ray.models.load import load_tokenizer
    from cogumi_ray.train.sft_data import collate, pack_rows, tokenize_pair
    from cogumi_ray.train.throughput import Throughput
    from cogumi_ray.train.trainer import training_arguments

    t0, t0_unix = time.perf_counter(), time.time()
    torch.set_num_threads(threads)
    tok = load_tokenizer(model_dir)
    table = pq.read_table(data, columns=["instruction", "response"]).to_pylist()
    rows = [p for r in table if (p := tokenize_pair(tok, r["instruction"], r["response"],
                                                    cfg.max_seq_len, cfg.prompt_loss))]
    random.Random(cfg.seed).shuffle(rows)
    if cfg.packing:  # the same packed rows (block-diagonal via position_ids) as the Ray path
        rows = list(zip(*pack_rows([a for a, _ in rows], [b for _, b in rows], cfg.max_seq_len),
                        strict=True))

    class Rows(Dataset):
        def __len__(self) -> int:
            return len(rows)

        def __getitem__(self, i: int):
            return rows[i]

    def batch(items):
        cols = {"input_ids": [it[0] for it in items], "labels": [it[1] for it in items]}
        if cfg.packing:
            cols["position_ids"] = [it[2] for it in items]
        return collate(cols, pad_id=tok.pad_token_id)

    with tempfile.TemporaryDirectory() as out:
        args = training_arguments(cfg, output_dir=out, max_steps=cfg.max_steps, has_eval=False,
                                  on_gpu=False)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        model.config.use_cache = False  # as in the Ray path: packed rows need no KV cache
        meter = Throughput()
        trainer = Trainer(model=model, args=args, train_dataset=Rows(), data_collator=batch,
                          processing_class=tok, callbacks=[meter])
        trainer.train()
    return {"tokens_per_s": meter.tokens_per_s, "wall_s": time.perf_counter() - t0,
            "startup_s": meter.train_begin_unix - t0_unix}


def ray_trainer(data: str, model_dir: str, cfg, work: str, name: str) -> dict:
    from cogumi_ray.train.trainer import SFTJob, run_sft

    t0 = time.perf_counter()
    result = run_sft(SFTJob(name=name, model_path=model_dir, train_path=data, val_path=None,
                            cfg=cfg, storage_path=os.path.join(work, "ckpt")))
    m = result.metrics
    return {"tokens_per_s": m["tokens_per_s"], "wall_s": time.perf_counter() - t0,
            "startup_s": m["startup_s"], "data_prep_s": m["data_prep_s"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch", type=int, default=16, help="global batch (sequences per step)")
    p.add_argument("--cpus", type=int, default=2, help="CPUs for every variant")
    p.add_argument("--per-domain", type=int, default=200, help="suite examples per domain")
    p.add_argument("--work", default=None, help="scratch dir (default: a temp dir)")
    args = p.parse_args()

    import ray

    from cogumi_ray.train.config import TrainConfig

    work = args.work or tempfile.mkdtemp(prefix="cogumi-bench-train-")
    os.makedirs(work, exist_ok=True)
    data, model = build_inputs(work, args.per_domain, seed=0)
    base = {"max_steps": args.steps, "save_steps": args.steps, "eval_steps": args.steps,
            "logging_steps": 10, "early_stopping": {"enabled": False}}
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    results = {
        "plain HF Trainer": plain_trainer(
            data, model, TrainConfig(**base, per_device_batch_size=args.batch), args.cpus),
        "Ray Train, 1 worker": ray_trainer(
            data, model, TrainConfig(**base, per_device_batch_size=args.batch,
                                     cpus_per_worker=args.cpus), work, "bench1"),
        "Ray Train, 2 workers": ray_trainer(
            data, model, TrainConfig(**base, num_workers=2, per_device_batch_size=args.batch // 2,
                                     cpus_per_worker=args.cpus / 2), work, "bench2"),
    }
    ref = results["plain HF Trainer"]
    print(f"\n{args.steps} steps, global batch {args.batch}, {args.cpus} CPUs")
    print(f"{'variant':<22} {'tokens/s':>10} {'ratio':>7} {'wall s':>8} {'ratio':>7} {'startup s':>10}")
    for name, r in results.items():
        r["tokens_per_s_ratio"] = ref["tokens_per_s"] / r["tokens_per_s"]  # > 1: slower than plain
        r["wall_ratio"] = r["wall_s"] / ref["wall_s"]
        print(f"{name:<22} {r['tokens_per_s']:>10.0f} {r['tokens_per_s_ratio']:>6.2f}x "
              f"{r['wall_s']:>8.1f} {r['wall_ratio']:>6.2f}x {r['startup_s']:>10.1f}")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
