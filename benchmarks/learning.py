"""Held-out pass rate against training minutes on this machine: where the embedded default's knee is.

Each budget is its own run from the same random init with the pipeline's recipe (the embedded
default's `model` and `train` sections, `--set` overrides applied: tokenizer, shape, packing,
prompt loss, bf16 autocast where the CPU has it, lr and warm-up, the curriculum's first steps),
its cosine schedule sized to end at the budget, so every point is an annealed model. The loop is
plain PyTorch over the pipeline's own tokenisation and packing, so the curve measures the recipe,
not Ray start-up. Held-out rows: 20 per domain x difficulty,
drawn from the same generator and never trained on; graded by the suite's verifiers (greedy).

    python benchmarks/learning.py --minutes 2 4 8 --out bench-learning.json
    python benchmarks/learning.py --minutes 4 --set train.curriculum.steps=500   # easy rows first
"""

from __future__ import annotations

import argparse
import json
import math
import random
import tempfile
import time
from collections import defaultdict


def split_suite(per_domain: int, test_per_cell: int):
    from cogumi_ray.data.config import SuiteConfig
    from cogumi_ray.data.suite import generate_suite

    rows = generate_suite(SuiteConfig(examples_per_domain=per_domain))
    random.Random(0).shuffle(rows)
    test, train, seen = [], [], defaultdict(int)
    for e in rows:
        cell = (e.domain, e.difficulty)
        if seen[cell] < test_per_cell:
            seen[cell] += 1
            test.append(e)
        else:
            train.append(e)
    return train, test


def train_for(minutes: float, train, test, model_dir: str, threads: int,
              sets: dict | None = None, show: int = 0) -> dict:
    import torch

    from cogumi_ray.config import load_config
    from cogumi_ray.eval.suite import grade_suite
    from cogumi_ray.generate.config import EngineConfig, GenParams
    from cogumi_ray.generate.engines.hf import HFEngine
    from cogumi_ray.models.tiny import build_tiny
    from cogumi_ray.train.sft_data import collate, pack_rows, tokenize_pair
    from cogumi_ray.train.trainer import resolve_precision

    torch.set_num_threads(threads)
    sets = sets or {}
    cfg = load_config(None, sets)  # the pipeline's defaults (the embedded default's recipe)
    mcfg, tcfg = cfg.model, cfg.train
    build_tiny(mcfg, (t for e in train for t in (e.instruction, e.response)), model_dir)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.config.use_cache = False
    cur = tcfg.curriculum
    pairs, warm_rows = [], []
    for e in train:
        if p := tokenize_pair(tok, e.instruction, e.response, tcfg.max_seq_len, tcfg.prompt_loss):
            pairs.append(p)
            if cur.steps and cur.selects(e.difficulty, e.metadata.get("task")):
                warm_rows.append(p)
    bf16 = resolve_precision(tcfg, on_gpu=False) == "bf16"
    opt = torch.optim.AdamW(model.parameters(), lr=tcfg.learning_rate,
                            weight_decay=tcfg.weight_decay)

    def epochs(rows):
        epoch = 0
        while True:
            order = list(range(len(rows)))
            random.Random(epoch).shuffle(order)
            ids, labels, pos = pack_rows([rows[i][0] for i in order], [rows[i][1] for i in order],
                                         tcfg.max_seq_len)
            b = tcfg.per_device_batch_size
            for s in range(0, len(ids) - b + 1, b):
                yield collate({"input_ids": ids[s:s + b], "labels": labels[s:s + b],
                               "position_ids": pos[s:s + b]}, pad_id=tok.pad_token_id)
            epoch += 1

    def batches():  # the curriculum's rows alone for its first steps, then every row
        first, mixed = epochs(warm_rows), epochs(pairs)
        while True:
            yield next(first if warm_rows and steps < cur.steps else mixed)

    def step(batch, lr: float) -> float:
        for g in opt.param_groups:
            g["lr"] = lr
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    # Size the schedule from the measured step time (steps 5..25, after warm-up of the kernels).
    it = batches()
    model.train()
    t_train, steps, tokens = 0.0, 0, 0
    total = None
    warm = 30
    while total is None or steps < total:
        batch = next(it)
        if steps == 5:
            t5 = t_train
        if steps == 25 and total is None:
            total = max(26, int(minutes * 60 / ((t_train - t5) / 20)))
        t = total or 10**9
        frac = min(1.0, max(0, steps - warm) / max(1, t - warm))
        lr = tcfg.learning_rate * (min(1.0, (steps + 1) / warm) if steps < warm
                                   else 0.5 * (1 + math.cos(math.pi * frac)))
        t0 = time.perf_counter()
        loss = step(batch, lr)
        t_train += time.perf_counter() - t0
        steps += 1
        tokens += int((batch["labels"] != -100).sum())
    model.eval()
    model.save_pretrained(model_dir)
    engine = HFEngine(EngineConfig.model_validate({"kind": "hf", "hf": {"batch_size": 32}}),
                      model_dir)
    answers = [c.text for c in engine.generate([e.instruction for e in test],
                                               GenParams(max_new_tokens=128))]
    score = grade_suite(test, answers)
    failed = [(e, a) for e, a, item in zip(test, answers, score.items, strict=True)
              if not item.passed]
    for e, a in random.Random(1).sample(failed, min(show, len(failed))):
        print(f"--- {e.domain}/{e.difficulty}\n  Q: {e.instruction[:160]!r}\n"
              f"  want: {e.response[:120]!r}\n  got:  {a[:120]!r}", flush=True)
    cells: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for e, item in zip(test, score.items, strict=True):
        for key in (e.domain, e.difficulty, f"{e.domain}.{e.difficulty}"):
            cells[key][0] += item.passed
            cells[key][1] += 1
    return {
        "minutes": minutes, "sets": sets,
        "train_s": round(t_train, 1), "steps": steps,
        "tokens": tokens, "tokens_per_s": round(tokens / t_train), "final_loss": round(loss, 4),
        "pass_rate": round(score.overall.rate, 4),
        "by": {k: round(p / n, 3) for k, (p, n) in sorted(cells.items())},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, nargs="+", default=[2, 4, 8])
    ap.add_argument("--per-domain", type=int, default=6000, help="suite rows per domain")
    ap.add_argument("--test-per-cell", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="write the JSON here too")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="override a model/train default, e.g. model.tiny.num_hidden_layers=4 "
                    "or train.prompt_loss=false (repeatable)")
    ap.add_argument("--show", type=int, default=0, help="print this many failed answers")
    a = ap.parse_args()
    from cogumi_ray.cli import _parse_set

    sets = _parse_set(a.sets)
    unknown = [k for k in sets if k.partition(".")[0] not in ("model", "train")]
    if unknown:
        ap.error(f"--set takes model.* or train.* keys, got {unknown}")
    train, test = split_suite(a.per_domain, a.test_per_cell)
    results = []
    for m in a.minutes:
        with tempfile.TemporaryDirectory() as d:
            r = train_for(m, train, test, d, a.threads, sets, a.show)
        results.append(r)
        print(json.dumps(r), flush=True)
    out = {"train_rows": len(train), "test_rows": len(test), "curve": results}
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
