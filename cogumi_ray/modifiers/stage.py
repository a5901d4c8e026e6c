"""Stage "modifiers" (`cogumi modifiers train --domain D`): one PEFT LoRA adapter per domain.

Each adapter trains on the model later stages use (the base after distillation) with the same
Ray Train machinery as the base and is saved as a PEFT folder `adapters/<domain>/` and as a
llama.cpp LoRA GGUF `adapters/<domain>.gguf` (f16, for `cogumi serve`'s llama.cpp backend); with
`modifiers.merge`, base+adapter is also saved as a plain HF folder `merged/<domain>/`. The
training set is filtered by domain: by default the curated training split plus the distill
stage's distillation set (the base's judged failures with their self-critique/teacher
corrections, so each failure weighs twice), or any Example Parquet named by `modifiers.data`.
A domain is any name the data labels rows with: before anything trains, each configured domain
must have `modifiers.min_examples` rows there.

Then every option (the base, and base + each adapter) answers the validation and held-out rows
of every domain (`modifiers.score`): the manifest records each adapter's uplift on its own
domain and its cost on the others, flags an adapter that does not beat the base by more than
`modifiers.min_uplift_pp`, and `scores.parquet` keeps each row's pass/fail per option.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import TYPE_CHECKING, Any

from cogumi_ray import storage

if TYPE_CHECKING:
    from cogumi_ray.config import CogumiConfig
    from cogumi_ray.runs import RunContext, StageOutput

log = logging.getLogger(__name__)

STAGE = "modifiers"
_HEADLINE = ("train_loss", "eval_loss", "steps", "train_rows", "tokens_per_s", "wall_s")


def _merge(base: str, checkpoint: Any, out: str) -> None:
    """Merge the adapter in a Ray Train checkpoint into the base; save to `out` (local or URI)."""
    from cogumi_ray.train.checkpoints import HF_CHECKPOINT
    from cogumi_ray.train.lora import merge_adapter

    with checkpoint.as_directory() as ckpt_dir:
        adapter = os.path.join(ckpt_dir, HF_CHECKPOINT)
        if storage.is_local(out):
            merge_adapter(base, adapter, storage.local_path(out))
            return
        with tempfile.TemporaryDirectory() as local_out:
            merge_adapter(base, adapter, local_out)
            fs, path = storage.fs_and_path(out)
            fs.put(local_out.rstrip("/") + "/", path.rstrip("/") + "/", recursive=True)


def _export_gguf(adapter_dir: str, base: str, out: str) -> Any:
    """The adapter as a llama.cpp LoRA GGUF, or None (logged) when the base cannot have one: the
    PEFT folder is the stage's product, and the HF serve backend needs nothing more."""
    from cogumi_ray.errors import ModelError
    from cogumi_ray.export.lora_gguf import export_lora_gguf

    try:
        return export_lora_gguf(adapter_dir, base, out, outtype="f16")
    except ModelError as e:
        log.warning("modifier %s: no LoRA GGUF (%s)", os.path.basename(adapter_dir), e)
        return None


def _pack(adapter_dir: str, out: str, level: int) -> Any:
    """The PEFT folder as one verified lossless archive (written locally, then copied to a URI)."""
    from cogumi_ray.compress.pack import pack

    if storage.is_local(out) and storage.is_local(adapter_dir):
        return pack(storage.local_path(adapter_dir), storage.local_path(out), level=level)
    with tempfile.TemporaryDirectory() as tmp:
        src = adapter_dir
        if not storage.is_local(adapter_dir):
            fs, path = storage.fs_and_path(adapter_dir)
            fs.get(path.rstrip("/") + "/", os.path.join(tmp, "adapter") + "/", recursive=True)
            src = os.path.join(tmp, "adapter")
        report = pack(storage.local_path(src), os.path.join(tmp, "adapter.cogz"), level=level)
        fs, path = storage.fs_and_path(out)
        fs.put(report.archive, path)
        return report


def domain_counts(paths: list[str]) -> dict[str, int]:
    """Rows per domain over Example Parquet files/dirs/URIs (reads the domain column only)."""
    from collections import Counter

    import pyarrow.dataset as pads

    from cogumi_ray.errors import DataError

    counts: Counter[str] = Counter()
    for path in paths:
        fs, p = storage.fs_and_path(path)
        try:
            column = pads.dataset(p, filesystem=fs, format="parquet").to_table(columns=["domain"])
        except Exception as e:  # missing file, not Parquet, no domain column
            raise DataError(f"cannot read the domains of training data {path!r} as Example "
                            f"Parquet: {type(e).__name__}: {e}") from None
        counts.update(str(d) for d in column.column("domain").to_pylist())
    return dict(counts)


def check_domains(domains: list[str], paths: list[str], min_rows: int) -> None:
    """Every configured domain needs `min_rows` training rows, checked before any adapter trains:
    domains are free names, so a typo or a domain without data is caught here, not in config."""
    from cogumi_ray.errors import TrainError

    counts = domain_counts(paths)
    short = {d: counts.get(d, 0) for d in domains if counts.get(d, 0) < min_rows}
    if short:
        have = ", ".join(f"{d} ({n})" for d, n in sorted(counts.items())) or "none"
        raise TrainError(
            "; ".join(f"domain {d!r} has {n} training rows" for d, n in short.items())
            + f" in {paths}, fewer than modifiers.min_examples={min_rows}. The data's domains: "
            f"{have}. Add rows labelled with the domain (modifiers.data), or drop it from "
            "modifiers.domains"
        )


def run(cfg: CogumiConfig, ctx: RunContext, inputs: dict[str, str]) -> StageOutput:
    from cogumi_ray.runs import StageOutput
    from cogumi_ray.train.base_stage import checkpoint_root
    from cogumi_ray.train.checkpoints import export_checkpoint
    from cogumi_ray.train.trainer import SFTJob, run_sft

    mods = cfg.modifiers
    train_paths = [inputs["train"], *([inputs["failures"]] if "failures" in inputs else [])]
    check_domains(mods.domains, train_paths, mods.min_examples)
    stage_dir = ctx.stage_dir(STAGE)
    ckpts = checkpoint_root(mods.training.storage_path, stage_dir)
    adapters = storage.join(stage_dir, "adapters")
    storage.makedirs(adapters)
    metrics: dict[str, Any] = {"domains": list(mods.domains)}
    outputs = {"adapters": adapters}
    trained: dict[str, str] = {}
    for domain in mods.domains:
        spec = mods.spec(domain)
        job = SFTJob(
            name=f"modifier_{domain}",
            model_path=inputs["model"],
            # the failures' corrections on top of the domain's rows: each failure counts twice
            train_path=train_paths if len(train_paths) > 1 else train_paths[0],
            val_path=inputs.get("val"),
            cfg=mods.training,
            storage_path=ckpts,
            lora=spec,
            domain=domain,
            resume=ctx.resume,
            min_rows=mods.min_examples,
        )
        result = run_sft(job)
        adapter_dir = export_checkpoint(result.checkpoint, storage.join(adapters, domain))
        trained[domain] = adapter_dir
        gguf = _export_gguf(adapter_dir, inputs["model"], storage.join(adapters, f"{domain}.gguf"))
        if gguf is not None:
            outputs[f"{domain}_adapter_gguf"] = gguf.path
            metrics[f"{domain}_adapter_gguf_mb"] = round(gguf.bytes / 2**20, 3)
        if mods.pack_level is not None:
            packed = _pack(adapter_dir, storage.join(adapters, f"{domain}.cogz"), mods.pack_level)
            outputs[f"{domain}_adapter_packed"] = storage.join(adapters, f"{domain}.cogz")
            metrics[f"{domain}_adapter_mb"] = round(packed.in_bytes / 2**20, 3)
            metrics[f"{domain}_adapter_packed_mb"] = round(packed.out_bytes / 2**20, 3)
            metrics[f"{domain}_adapter_pack_ratio"] = round(packed.ratio, 3)
        if mods.merge:
            outputs["merged"] = storage.join(stage_dir, "merged")
            _merge(inputs["model"], result.checkpoint, storage.join(outputs["merged"], domain))
        for key in _HEADLINE:
            metrics[f"{domain}_{key}"] = result.metrics.get(key)
        metrics[f"{domain}_rank"] = spec.rank
        log.info("modifier %s: %s", domain, os.path.basename(adapter_dir))
    if mods.score:
        scores_path = storage.join(stage_dir, "scores.parquet")
        metrics.update(_score(cfg, inputs, trained, scores_path, ctx.run_dir))
        outputs["scores"] = scores_path
    return StageOutput(outputs=outputs, metrics=metrics)


def _score(cfg: CogumiConfig, inputs: dict[str, str], adapters: dict[str, str],
           out_path: str, run_dir: str) -> dict[str, Any]:
    """Base vs base + each adapter on the validation and held-out rows; flags and row verdicts."""
    from cogumi_ray.eval.score_cache import cache_dir
    from cogumi_ray.eval.stage import read_examples, score_model
    from cogumi_ray.modifiers.scoring import (
        BASE,
        OptionRows,
        scorable,
        score_adapter,
        uplift,
        write_rows,
    )

    # every verifiable row, as eval_base and distill score them, so the base's score of the same
    # suite rows is read from the run's score cache
    rows_in = scorable({s: read_examples(inputs[s]) for s in ("val", "test") if inputs.get(s)})
    metrics: dict[str, Any] = {}
    if rows_in.unverifiable:
        # no verifier fits these rows (no suite metadata): they are left out, and counted
        metrics["unverifiable_rows"] = rows_in.unverifiable
        log.warning("modifiers: %s validation/held-out rows carry no verifier data and are not "
                    "scored", ", ".join(f"{n} {d}" for d, n in rows_in.unverifiable.items()))
    splits = rows_in.splits
    if not splits:
        log.warning("modifiers: no validation/held-out row carries verifier data (rows from "
                    "outside the task suite); adapters are not scored")
        return {"scored": False, **metrics}
    cache = cache_dir(run_dir)
    rows = [OptionRows(BASE, s, score_model(cfg, inputs["model"], ex, cache=cache))
            for s, ex in splits.items()]
    base_test = next((r.score for r in rows if r.split == "test"), None)
    flagged, unscored = [], []
    for domain, adapter_dir in adapters.items():
        scores = score_adapter(cfg, inputs["model"], adapter_dir, splits, cache)
        rows += [OptionRows(domain, s, sc) for s, sc in scores.items()]
        if base_test is None or "test" not in scores:
            continue
        u = uplift(domain, base_test, scores["test"], cfg.modifiers.min_uplift_pp)
        if not u.own_rows:
            # an uplift over zero rows would read as "no uplift" and flag a good adapter
            unscored.append(domain)
            metrics[f"{domain}_scored_rows"] = 0
            log.warning("modifier %s: no verifiable held-out row of its domain (%d without "
                        "verifier data); its uplift is unknown", domain,
                        rows_in.unverifiable.get(domain, 0))
            continue
        metrics.update(u.metrics())
        log.info("modifier %s: %s %.1f%% -> %.1f%% (%+.1f pp), other domains %+.1f pp",
                 domain, domain, 100 * u.own_base, 100 * u.own_adapter, u.uplift_pp,
                 u.other_delta_pp)
        if not u.beats_base:
            flagged.append(domain)
            log.warning("modifier %s does not beat the base on its own domain: %.1f%% vs %.1f%% "
                        "(%+.1f pp, needs > %+.1f pp)", domain, 100 * u.own_adapter,
                        100 * u.own_base, u.uplift_pp, cfg.modifiers.min_uplift_pp)
    write_rows(out_path, rows)
    metrics["flagged"] = flagged
    if unscored:
        metrics["unscored"] = unscored
    return metrics
