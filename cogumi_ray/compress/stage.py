"""Stage "compress" (`cogumi compress`): what each compression step really buys, per branch.

Two branches from the final base, each measured on the same held-out rows:

  dense   the base -> GGUF f16 -> K-quants (Q5_K_M "desktop", Q4_K_M "mobile")
  pruned  llm-compressor one-shot pruning per layer group -> recovery fine-tuning on the hardest
          rows (distill's failure corrections first, then replay) with the masks held fixed
          -> GGUF f16 -> the same K-quants
  awq     (GPU branch, where CUDA is present or `compress.awq.enabled: on`) AWQ + W4A16 into a
          compressed-tensors checkpoint that transformers reloads and vLLM serves

Every variant gets its size on disk, packed size (the project's lossless packer), perplexity of
held-out responses, suite pass rate per domain and, for GGUF, llama.cpp tokens/s on this CPU. The
stage's `gguf` output is the smallest GGUF whose quality stays within `compress.max_drop_pp` and
`compress.max_ppl_increase` of the dense base; the table and a size-vs-quality plot go to the
stage dir and the manifest.
"""

from __future__ import annotations

import json
import logging
import random
from typing import TYPE_CHECKING, Any

from cogumi_ray import storage
from cogumi_ray.compress.variants import Variant
from cogumi_ray.errors import ModelError

if TYPE_CHECKING:
    from cogumi_ray.config import CogumiConfig
    from cogumi_ray.runs import RunContext, StageOutput

log = logging.getLogger(__name__)
STAGE = "compress"


def _sample_rows(path: str, n: int, seed: int) -> list[dict[str, Any]]:
    from cogumi_ray.eval.stage import read_examples

    rows = [e.to_row() for e in read_examples(path)]
    random.Random(seed).shuffle(rows)
    return rows[:n]


def _write_examples(rows: list[dict[str, Any]], path: str) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cogumi_ray.data.schema import arrow_schema

    pq.write_table(pa.Table.from_pylist(rows, schema=arrow_schema()), storage.local_path(path))
    return path


def recovery_rows(cfg: CogumiConfig, inputs: dict[str, str]
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(hardest rows: distill's corrections of the judge's failures, replay rows)."""
    from cogumi_ray.eval.stage import read_examples

    hard = [e.to_row() for e in read_examples(inputs["hard"])] if inputs.get("hard") and \
        storage.exists(inputs["hard"]) else []
    replay = _sample_rows(inputs["train"], cfg.compress.prune.replay_rows, cfg.run.seed)
    return hard, replay


def recover(cfg: CogumiConfig, ctx: RunContext, inputs: dict[str, str], pruned: str,
            out: str) -> tuple[str, dict[str, Any]]:
    """Fine-tune the pruned model through the training stage's Ray Train SFT with its masks held
    fixed, the hardest rows streamed first (then shuffled replay passes); proves afterwards that
    every pruned weight is still zero."""
    from cogumi_ray.compress.masks import keep_masks_callback, masks_of, violations
    from cogumi_ray.models.load import load_model_and_tokenizer
    from cogumi_ray.train.base_stage import checkpoint_root
    from cogumi_ray.train.checkpoints import export_checkpoint
    from cogumi_ray.train.trainer import SFTJob, run_sft

    rc = cfg.compress.prune.recovery
    hard, replay = recovery_rows(cfg, inputs)
    # Without replay rows the hard rows are the whole run (plain shuffled passes).
    first = _write_examples(hard, storage.join(out, "recovery-hard.parquet")) \
        if hard and replay else None
    data = _write_examples(replay or hard, storage.join(out, "recovery.parquet"))
    result = run_sft(SFTJob(
        name=f"{STAGE}_recovery", model_path=pruned, train_path=data, val_path=None, cfg=rc,
        storage_path=checkpoint_root(rc.storage_path, out), resume=ctx.resume,
        callbacks=(keep_masks_callback,), first_path=first))
    recovered = export_checkpoint(result.checkpoint, storage.join(out, "recovered"))
    before, _ = load_model_and_tokenizer(pruned, dtype="float32")
    after, _ = load_model_and_tokenizer(recovered, dtype="float32")
    masks = masks_of(before)
    bad = violations(after, masks)
    if bad:
        raise ModelError(f"recovery broke the pruning masks: {bad} pruned weights are non-zero")
    metrics = {"recovery_rows": len(hard) + len(replay), "recovery_hard_rows": len(hard),
               "recovery_first_steps": result.metrics.get("curriculum_steps"),
               "recovery_steps": result.metrics.get("steps"),
               "recovery_train_loss": result.metrics.get("train_loss"),
               "recovery_mask_violations": bad, "recovery_masked_tensors": len(masks)}
    return recovered, metrics


def _awq_wanted(cfg: CogumiConfig) -> bool:
    mode = cfg.compress.awq.enabled
    if mode == "auto":
        import torch

        return torch.cuda.is_available()
    return mode == "on"


def _ggufs(cfg: CogumiConfig, branch: str, hf: str, out: str) -> list[Variant]:
    from cogumi_ray.compress.quantize import quantize_gguf
    from cogumi_ray.export.gguf_export import export_gguf

    cc = cfg.compress
    f16 = export_gguf(hf, storage.join(out, "gguf", f"{branch}-f16.gguf"), outtype="f16")
    found = [Variant(f"{branch}/F16", branch, "gguf", f16.path)]
    for q in cc.kquants:
        r = quantize_gguf(f16.path, storage.join(out, "gguf", f"{branch}-{q.upper()}.gguf"), q,
                          imatrix=cc.imatrix, strict=cc.strict_kquants)
        found.append(Variant(f"{branch}/{r.qtype}", branch, "gguf", r.dst, extra={
            "bits_per_weight": round(r.bits_per_weight, 3), "type_counts": dict(r.type_counts),
            "fallbacks": [f.name for f in r.fallbacks]}))
    return found


def _measure(cfg: CogumiConfig, variants: list[Variant], examples: list[Any], out: str,
             cache: str | None = None) -> None:
    from cogumi_ray.compress.pack import pack
    from cogumi_ray.compress.perplexity import gguf_perplexity, hf_perplexity, response_tokens
    from cogumi_ray.compress.variants import disk_bytes, gguf_speed, score
    from cogumi_ray.models.load import load_tokenizer

    cc = cfg.compress
    tok = load_tokenizer(variants[0].path)
    seqs = response_tokens(tok, [e.to_row() for e in examples[: cc.ppl_rows]], max_len=512)
    prompt = seqs[0][0][: seqs[0][1]]
    for v in variants:
        v.size_bytes = disk_bytes(v.path)
        packed = pack(v.path, storage.join(out, "packed", v.name.replace("/", "-") + ".cogz"),
                      level=cc.pack_level)
        v.packed_bytes = packed.out_bytes
        v.perplexity = round(gguf_perplexity(v.path, seqs) if v.kind == "gguf"
                             else hf_perplexity(v.path, seqs), 4)
        if v.kind == "gguf":
            v.prompt_tok_s, v.gen_tok_s = (round(x, 1) for x in gguf_speed(v.path, prompt))
        if v.kind != "gguf" or not v.name.endswith("/F16"):  # f16 GGUF == HF (export tests)
            score(v, cfg, examples, cache)
        log.info("compress: %s %.2f MB ppl %.3f pass %s", v.name, v.size_bytes / 2**20,
                 v.perplexity, v.pass_rate)


def choose(cfg: CogumiConfig, variants: list[Variant]) -> Variant | None:
    """The smallest GGUF within the quality budget relative to the dense base."""
    ref = variants[0]
    ok = []
    for v in variants:
        if v.kind != "gguf" or v.pass_rate is None or ref.pass_rate is None:
            continue
        drop_pp = (ref.pass_rate - v.pass_rate) * 100
        ppl_up = (v.perplexity or 0) / (ref.perplexity or 1) - 1
        v.extra.update(drop_pp=round(drop_pp, 2), ppl_increase=round(ppl_up, 4))
        v.extra["within_budget"] = (drop_pp <= cfg.compress.max_drop_pp
                                    and ppl_up <= cfg.compress.max_ppl_increase)
        if v.extra["within_budget"]:
            ok.append(v)
    return min(ok, key=lambda v: v.size_bytes) if ok else None


def plot(variants: list[Variant], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for branch, marker in (("dense", "o"), ("pruned", "s"), ("awq", "^")):
        vs = [v for v in variants if v.branch == branch and v.pass_rate is not None]
        ax.scatter([v.size_bytes / 2**20 for v in vs], [v.pass_rate * 100 for v in vs],
                   marker=marker, label=branch)
        for v in vs:
            ax.annotate(v.name.split("/", 1)[1], (v.size_bytes / 2**20, v.pass_rate * 100),
                        fontsize=8, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("size on disk (MiB)")
    ax.set_ylabel("held-out suite pass rate (%)")
    ax.set_title("compression: size vs quality")
    ax.legend()
    fig.tight_layout()
    fig.savefig(storage.local_path(path), dpi=110)
    plt.close(fig)


def run(cfg: CogumiConfig, ctx: RunContext, inputs: dict[str, str]) -> StageOutput:
    from cogumi_ray.compress.prune import prune_model
    from cogumi_ray.eval import score_cache
    from cogumi_ray.eval.stage import read_examples
    from cogumi_ray.runs import StageOutput

    out = ctx.stage_dir(STAGE)
    for sub in ("gguf", "packed"):
        storage.makedirs(storage.join(out, sub))
    m: dict[str, Any] = {}
    if cfg.compress.tune.enabled:
        cfg = _tuned(cfg, inputs, out, m)
    cc = cfg.compress
    examples = read_examples(inputs["test"])[: cc.eval_limit]
    m["eval_rows"] = len(examples)
    branches = {"dense": inputs["model"]}
    variants = [Variant("dense/hf", "dense", "hf", inputs["model"])]
    if cc.prune.enabled:
        pruned = storage.join(out, "pruned")
        report = prune_model(inputs["model"], pruned, calib_rows(cfg, inputs), cc.prune)
        m.update(report.metrics())
        storage.atomic_write_json(storage.join(out, "sparsity.json"), report.per_tensor)
        if cc.prune.recover:
            pruned, rec = recover(cfg, ctx, inputs, pruned, out)
            m.update(rec)
        branches["pruned"] = pruned
        variants.append(Variant("pruned/hf", "pruned", "hf", pruned))
    for branch, hf in branches.items():
        variants += _ggufs(cfg, branch, hf, out)
    if _awq_wanted(cfg):
        from cogumi_ray.compress.awq import awq_quantize

        awq_dir = awq_quantize(inputs["model"], storage.join(out, "awq"), calib_rows(cfg, inputs),
                               cc.awq)
        variants.append(Variant(f"awq/{cc.awq.scheme}", "awq", "hf", awq_dir))
    cache = score_cache.cache_dir(ctx.run_dir)
    _measure(cfg, variants, examples, out, cache)
    chosen = choose(cfg, variants)
    table = [v.row() for v in variants]
    storage.atomic_write_json(storage.join(out, "variants.json"), table)
    plot(variants, storage.join(out, "size_vs_quality.png"))
    if chosen is None:
        log.warning("compress: no GGUF variant stays within %.1f pp / %.0f%% ppl of the base; "
                    "the stage's gguf output is the dense f16 GGUF", cc.max_drop_pp,
                    cc.max_ppl_increase * 100)
        chosen = next(v for v in variants if v.name == "dense/F16")
    m.update(flat_metrics(variants))
    m["variants"] = manifest_table(variants)
    m["chosen"] = chosen.name
    outputs_extra = {}
    if cc.calibration.enabled and inputs.get("val"):
        outputs_extra["calibrator"] = calibrate_confidence(
            cfg, chosen.path, inputs["model"], inputs["val"], out, m, cache)
    report_path = storage.join(out, "report.json")
    storage.atomic_write_text(report_path, json.dumps(
        {"metrics": m, "variants": table, "chosen": chosen.name}, indent=2, default=str))
    outputs = {"gguf": chosen.path, "ggufs": storage.join(out, "gguf"), "report": report_path,
               "model": branches.get("pruned", inputs["model"]), **outputs_extra}
    return StageOutput(outputs=outputs, metrics=m)


def manifest_table(variants: list[Variant]) -> list[dict[str, Any]]:
    """The per-variant table for the run manifest: the issue's columns, one row per variant
    (variants.json keeps every field, e.g. K-quant type counts)."""
    return [{"name": v.name, "branch": v.branch, "kind": v.kind,
             "size_mb": round(v.size_bytes / 2**20, 3),
             "packed_mb": None if v.packed_bytes is None else round(v.packed_bytes / 2**20, 3),
             "ppl": v.perplexity, "pass_rate": v.pass_rate, "pass_rate_by_domain": dict(v.per_domain),
             "prompt_tok_s": v.prompt_tok_s, "gen_tok_s": v.gen_tok_s,
             **{k: v.extra[k] for k in ("drop_pp", "ppl_increase", "within_budget") if k in v.extra}}
            for v in variants]


def flat_metrics(variants: list[Variant]) -> dict[str, Any]:
    """The same numbers as flat `<variant>.<column>` keys (what summaries and dashboards read)."""
    m: dict[str, Any] = {}
    for v in variants:
        key = v.name.replace("/", "_").lower()
        m.update({f"{key}.size_mb": round(v.size_bytes / 2**20, 3),
                  f"{key}.packed_mb": round((v.packed_bytes or 0) / 2**20, 3),
                  f"{key}.ppl": v.perplexity})
        if v.pass_rate is not None:
            m[f"{key}.pass_rate"] = v.pass_rate
            m.update({f"{key}.pass_rate.{d}": r for d, r in v.per_domain.items()})
        if v.gen_tok_s is not None:
            m[f"{key}.gen_tok_s"], m[f"{key}.prompt_tok_s"] = v.gen_tok_s, v.prompt_tok_s
    return m


def calibrate_confidence(cfg: CogumiConfig, gguf: str, tokenizer_dir: str, val: str, out: str,
                         m: dict[str, Any], cache: str | None = None) -> str:
    """Fit temperature/Platt scaling of the served GGUF's confidence against its own verifier
    verdicts on validation rows; the calibrator JSON (read by the router) is returned."""
    import numpy as np

    from cogumi_ray.compress import calibration as cal
    from cogumi_ray.compress.variants import engine_config
    from cogumi_ray.eval.stage import read_examples, score_model

    c = cfg.compress.calibration
    examples = read_examples(val)[: c.max_rows]
    s = score_model(cfg, gguf, examples, engine=engine_config("gguf", gguf), cache=cache)
    passed = {it.id: it.passed for it in s.items}
    rows = [e for e in examples if e.id in passed]
    labels = np.array([int(passed[e.id]) for e in rows])
    ids = cal.chat_token_ids(tokenizer_dir, [e.instruction for e in rows])
    feats = cal.gguf_features(gguf, ids, c.first_tokens)
    fit, held = cal.split_rows(labels, seed=cfg.run.seed)
    report = cal.calibrate(feats[fit], labels[fit], feats[held], labels[held], bins=c.bins)
    path = report.best.save(storage.local_path(storage.join(out, "calibrator.json")))
    cal.reliability_plot(storage.local_path(storage.join(out, "reliability.png")),
                         cal.raw_confidence(feats[held]), report.best.predict(feats[held]),
                         labels[held], bins=c.bins)
    storage.atomic_write_json(storage.join(out, "calibration.json"), report.as_dict())
    m["calibration_chosen"] = report.chosen
    for kind, vals in report.metrics.items():
        m[f"calibration_{kind}_ece"] = round(vals["ece"], 4)
    m["calibration_rows"] = len(rows)
    return path


def _tuned(cfg: CogumiConfig, inputs: dict[str, str], out: str, m: dict[str, Any]) -> CogumiConfig:
    """Run the Ray Tune recipe search; the config with its chosen recipe."""
    from cogumi_ray.tune.sparsity import apply_recipe, tune_sparsity

    if not inputs.get("val"):
        raise ModelError("compress.tune needs the validation split (input 'val')")
    t = cfg.compress.tune
    n_val = max(t.ppl_rows, t.pass_rows if t.max_drop_pp is not None else 0)
    val = _sample_rows(inputs["val"], n_val, cfg.run.seed)
    res = tune_sparsity(cfg.compress, inputs["model"], calib_rows(cfg, inputs), val, out,
                        seed=cfg.run.seed, eval_params=cfg.eval.params.model_dump(),
                        eval_batch_size=cfg.eval.batch_size)
    m.update({f"tune_{k}": v for k, v in res.recipe.items()})
    m["tune_trials"] = len(res.table)
    m["tune_feasible_trials"] = sum(bool(r["feasible"]) for r in res.table)
    m["tune_stopped_early"] = sum(not r["finished"] for r in res.table)
    if res.reference_pass_rate is not None:
        m["tune_reference_pass_rate"] = res.reference_pass_rate
    return cfg.model_copy(update={"compress": apply_recipe(cfg.compress, res.recipe)})


def calib_rows(cfg: CogumiConfig, inputs: dict[str, str]) -> list[dict[str, Any]]:
    return _sample_rows(inputs["train"], cfg.compress.prune.calibration_rows, cfg.run.seed)
