"""Held-out pass rate against training minutes on this machine: where the embedded default's knee is.

Each budget is its own run from the same random init with the pipeline's recipe (the defaults of
`ModelConfig` and `TrainConfig`: tokenizer, shape, packing, prompt loss, bf16 autocast where the
CPU has it, lr and warm-up), its cosine schedule sized to end at the budget, so every point is an
annealed model. The loop is plain PyTorch over the pipeline's own tokenisation and packing, so
the curve measures the recipe, not Ray start-up. Held-out rows: 20 per domain x difficulty,
drawn from the same generator and never trained on; graded by the suite's verifiers (greedy).

    python benchmarks/learning.py --minutes 2 4 8 --out bench-learning.json
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


def train_for(minutes: float, train, test, model_dir: str, threads: int) -> dict:
    import torch

    from cogumi_ray.eval.suite import grade_suite
    from cogumi_ray.generate.config import EngineConfig, GenParams
    from cogumi_ray.generate.engines.hf import HFEngine
    from cogumi_ray.models.config import ModelConfig
    from cogumi_ray.models.tiny import build_tiny
    from cogumi_ray.train.config import TrainConfig
    from cogumi_ray.train.sft_data import collate, pack_rows, tokenize_pair
    from cogumi_ray.train.trainer import resolve_precision

    torch.set_num_threads(threads)
    mcfg, tcfg = ModelConfig(), TrainConfig()
    build_tiny(mcfg, (t for e in train for t in (e.instruction, e.response)), model_dir)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.config.use_cache = False
    pairs = [p for e in train if (p := tokenize_pair(tok, e.instruction, e.response,
                                                      tcfg.max_seq_len, tcfg.prompt_loss))]
    bf16 = resolve_precision(tcfg, on_gpu=False) == "bf16"
    opt = torch.optim.AdamW(model.parameters(), lr=tcfg.learning_rate,
                            weight_decay=tcfg.weight_decay)

    def batches():
        epoch = 0
        while True:
            order = list(range(len(pairs)))
            random.Random(epoch).shuffle(order)
            ids, labels, pos = pack_rows([pairs[i][0] for i in order], [pairs[i][1] for i in order],
                                         tcfg.max_seq_len)
            b = tcfg.per_device_batch_size
            for s in range(0, len(ids) - b + 1, b):
                yield collate({"input_ids": ids[s:s + b], "labels": labels[s:s + b],
                               "position_ids": pos[s:s + b]}, pad_id=tok.pad_token_id)
            epoch += 1

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
    cells: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for e, item in zip(test, score.items, strict=True):
        for key in (e.domain, e.difficulty, f"{e.domain}.{e.difficulty}"):
            cells[key][0] += item.passed
            cells[key][1] += 1
    return {
        "minutes": minutes, "train_s": round(t_train, 1), "steps": steps,
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
    a = ap.parse_args()
    train, test = split_suite(a.per_domain, a.test_per_cell)
    results = []
    for m in a.minutes:
        with tempfile.TemporaryDirectory() as d:
            r = train_for(m, train, test, d, a.threads)
        results.append(r)
        print(json.dumps(r), flush=True)
    out = {"train_rows": len(train), "test_rows": len(test), "curve": results}
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
