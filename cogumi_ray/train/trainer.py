"""SFT on Ray Train: a `TorchTrainer` whose workers each run an HF `Trainer`.

Driver (`run_sft`): builds the tokenised Ray Datasets, the ScalingConfig / RunConfig (keep-best
checkpoints by eval_loss, FailureConfig), runs the workers and returns the best checkpoint and
metrics. Worker (`train_loop`): loads the model through the chosen backend, wraps HF Trainer with
`prepare_trainer` (so it streams its Ray Data shard) and `RayTrainReportCallback` (so every HF
checkpoint becomes a durable Ray Train checkpoint with its metrics), and resumes from
`ray.train.get_checkpoint()` when there is one: after a worker failure, or on `--resume`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cogumi_ray import storage
from cogumi_ray.errors import CogumiError, TrainError
from cogumi_ray.train.config import LoraSpec, TrainConfig

log = logging.getLogger(__name__)

HF_CHECKPOINT = "checkpoint"  # sub-folder RayTrainReportCallback puts the HF checkpoint in


@dataclass
class SFTJob:
    """One training run. `name` + `storage_path` identify its checkpoints (and what resumes)."""

    name: str
    model_path: str
    train_path: str | list[str]  # one Example Parquet file/dir, or several read as one dataset
    val_path: str | None
    cfg: TrainConfig
    storage_path: str
    lora: LoraSpec | None = None
    domain: str | None = None  # keep only this domain's examples
    resume: bool = False
    min_rows: int = 1  # fewer training rows (after the domain filter) is an error
    # Rows streamed once before the passes over train_path (compress recovery: the judge's
    # failures first); like a curriculum warm-up, their steps come on top of the epochs.
    first_path: str | list[str] | None = None
    # Test and benchmark hooks: factories of extra HF TrainerCallbacks, built in each worker.
    callbacks: tuple[Callable[[], Any], ...] = field(default_factory=tuple)


@dataclass
class SFTResult:
    checkpoint: Any  # ray.train.Checkpoint picked by train.select_checkpoint
    metrics: dict[str, Any]
    final: Any = None  # the last checkpoint (annealed weights)
    best: Any = None  # the lowest-eval_loss checkpoint, when validation ran


def cpu_has_bf16() -> bool:
    """Native bf16 matmuls on this CPU (oneDNN with AVX512-BF16 or AMX): autocast pays off."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(cfg: TrainConfig, on_gpu: bool) -> str:
    if cfg.precision == "auto":
        return "bf16" if on_gpu or cpu_has_bf16() else "fp32"
    if cfg.precision == "fp16" and not on_gpu:
        raise TrainError("train.precision fp16 needs GPU workers; use fp32 or bf16 on CPU")
    return cfg.precision


def plan_steps(cfg: TrainConfig, n_rows: int, world_size: int) -> tuple[int, int]:
    """(max_steps, optimizer steps per epoch) for `n_rows` training rows split over the workers."""
    rows_per_worker = n_rows // world_size  # Ray's equal split drops the remainder
    if rows_per_worker == 0:
        raise TrainError(
            f"{n_rows} training rows cannot feed {world_size} workers; add data or lower "
            "train.num_workers"
        )
    batches = math.ceil(rows_per_worker / cfg.per_device_batch_size)
    per_epoch = max(1, batches // cfg.grad_accum_steps)
    max_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * per_epoch))
    return max_steps, per_epoch


def training_arguments(
    cfg: TrainConfig, *, output_dir: str, max_steps: int, has_eval: bool, on_gpu: bool
) -> Any:
    """HF TrainingArguments for this config (backend extras such as DeepSpeed included)."""
    from transformers import TrainingArguments

    from cogumi_ray.train.backends import get_backend

    precision = resolve_precision(cfg, on_gpu)
    return TrainingArguments(
        output_dir=output_dir,
        max_steps=max_steps,
        per_device_train_batch_size=cfg.per_device_batch_size,
        per_device_eval_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=cfg.grad_accum_steps,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=int(round(cfg.warmup_ratio * max_steps)),
        max_grad_norm=cfg.max_grad_norm,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not on_gpu,
        gradient_checkpointing=cfg.gradient_checkpointing and cfg.backend != "unsloth",
        logging_strategy="steps",
        logging_steps=min(cfg.logging_steps, max_steps),  # a short run still logs its loss
        eval_strategy="steps" if has_eval else "no",
        eval_steps=cfg.eval_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=1,  # local scratch copies only; Ray Train keeps the durable ones
        include_num_input_tokens_seen="non_padding",
        restore_callback_states_from_checkpoint=True,  # early-stopping counters survive restores
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to="none",
        disable_tqdm=True,
        remove_unused_columns=False,
        ddp_find_unused_parameters=False,
        dataloader_num_workers=0,  # Ray Data already prefetches in the worker
        **get_backend(cfg.backend).training_kwargs(cfg),
    )


def scaling_config(cfg: TrainConfig) -> Any:
    from ray.train import ScalingConfig

    resources = {"CPU": cfg.cpus_per_worker, **cfg.resources_per_worker}
    if cfg.use_gpu:
        resources.setdefault("GPU", 1)
    return ScalingConfig(
        num_workers=cfg.num_workers, use_gpu=cfg.use_gpu, resources_per_worker=resources
    )


def run_config(job: SFTJob, has_eval: bool) -> Any:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig

    checkpoints = CheckpointConfig(
        num_to_keep=job.cfg.num_to_keep,
        checkpoint_score_attribute="eval_loss" if has_eval else None,
        checkpoint_score_order="min",
    )
    return RunConfig(
        name=job.name,
        storage_path=job.storage_path,
        checkpoint_config=checkpoints,
        failure_config=FailureConfig(max_failures=job.cfg.max_failures),
    )


def train_loop(config: dict[str, Any]) -> None:
    """Runs in every Ray Train worker."""
    import os
    import tempfile

    import ray.train
    import torch
    from ray.train.huggingface.transformers import RayTrainReportCallback, prepare_trainer
    from transformers import Trainer

    from cogumi_ray.train.backends import get_backend
    from cogumi_ray.train.early_stopping import EarlyStopping
    from cogumi_ray.train.sft_data import pad_collate
    from cogumi_ray.train.throughput import Throughput

    cfg = TrainConfig.model_validate(config["train"])
    lora = LoraSpec.model_validate(config["lora"]) if config["lora"] else None
    on_gpu = cfg.use_gpu and torch.cuda.is_available()
    if not on_gpu:
        torch.set_num_threads(max(1, int(cfg.cpus_per_worker)))
    has_eval = config["has_eval"]
    # Per-worker scratch dir: each rank's files (e.g. rng_state_<rank>.pth, ZeRO shards) are
    # merged into one Ray checkpoint directory on report.
    output_dir = tempfile.mkdtemp(prefix=f"cogumi-{config['name']}-")
    # TrainingArguments before the model: under ZeRO-3 it makes from_pretrained load sharded.
    args = training_arguments(
        cfg, output_dir=output_dir, max_steps=config["max_steps"], has_eval=has_eval, on_gpu=on_gpu
    )
    backend = get_backend(cfg.backend)
    model, tok = backend.load(config["model_path"], cfg, lora)
    batches = pad_collate(tok.pad_token_id)
    # An ordered stream is shuffled part by part already; a local shuffle buffer would blur
    # the head into the first pass (8 batches deep).
    shuffle_rows = None if config.get("ordered") else cfg.per_device_batch_size * 8
    train = ray.train.get_dataset_shard("train").iter_torch_batches(
        batch_size=cfg.per_device_batch_size, collate_fn=batches,
        local_shuffle_buffer_size=shuffle_rows, local_shuffle_seed=cfg.seed,
    )
    val = (
        ray.train.get_dataset_shard("val").iter_torch_batches(
            batch_size=cfg.per_device_batch_size, collate_fn=batches
        )
        if has_eval else None
    )
    callbacks: list[Any] = [Throughput(), RayTrainReportCallback()]
    if has_eval and cfg.early_stopping.enabled:
        callbacks.append(EarlyStopping(cfg.early_stopping.patience, cfg.early_stopping.min_delta))
    if cfg.max_minutes:
        from cogumi_ray.train.time_budget import TimeBudget

        callbacks.append(TimeBudget(cfg.max_minutes))
    callbacks += [make() for make in config["callbacks"]]
    trainer = Trainer(
        model=model, args=args, train_dataset=train, eval_dataset=val,
        processing_class=tok, callbacks=callbacks,
    )
    trainer = prepare_trainer(trainer)
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        trainer.train()
        return
    with checkpoint.as_directory() as ckpt_dir:
        trainer.train(resume_from_checkpoint=os.path.join(ckpt_dir, HF_CHECKPOINT))


def _reraise_worker_error(err: Exception) -> None:
    """Surface a worker's own CogumiError (e.g. a missing dependency) instead of Ray's wrapper."""
    failures = getattr(err, "worker_failures", None) or {}
    for exc in failures.values():
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, CogumiError):
                raise cause from None
            cause = cause.__cause__
    raise TrainError(f"training failed after {type(err).__name__}: {err}") from err


def _best(result: Any, has_eval: bool) -> tuple[Any, dict[str, Any]]:
    """The lowest-eval_loss checkpoint and its metrics (the latest one without validation)."""
    candidates = [(c, m) for c, m in (result.best_checkpoints or []) if c is not None]
    if has_eval:
        scored = [(c, m) for c, m in candidates if m.get("eval_loss") is not None]
        if scored:
            return min(scored, key=lambda cm: cm[1]["eval_loss"])
    return _final(result)


def _final(result: Any) -> tuple[Any, dict[str, Any]]:
    if result.checkpoint is None:
        raise TrainError(f"training run {result.path} reported no checkpoint")
    final_metrics = dict(result.metrics or {})
    for c, m in result.best_checkpoints or []:  # the last report of a run may carry no eval_loss
        if c is not None and c.path == result.checkpoint.path:
            final_metrics = {**m, **final_metrics}
    return result.checkpoint, final_metrics


def with_curriculum(job: SFTJob, train_ds: Any, max_steps: int, per_epoch: int,
                    kw: dict[str, Any]) -> tuple[Any, int]:
    """The run's whole stream in order, and the optimizer steps its head takes. The head is
    `curriculum.steps` steps of the curriculum's rows, or `job.first_path`'s rows once (in their
    own shuffled order); then come as many shuffled passes over `train_ds` as the steps need.

    Spelled out as one pass because the HF Trainer re-reads its dataset every epoch: with the
    warm-up inside each epoch, a second epoch would warm up again.
    """
    from cogumi_ray.train.sft_data import build_dataset, concat_in_order, curriculum_rows

    cfg = job.cfg
    warm = cfg.curriculum
    per_step = cfg.per_device_batch_size * cfg.grad_accum_steps * cfg.num_workers
    if job.first_path is not None:
        if warm.steps:
            raise TrainError("a job with first rows (first_path) takes no train.curriculum: "
                             "both would be the head of the stream")
        head = build_dataset(job.first_path, job.model_path, seed=cfg.seed + 1,
                             prompt_loss=cfg.prompt_loss, **kw)
        steps, what = math.ceil(head.count() / per_step), f"{head.count()} first rows"
    else:
        selected = build_dataset(job.train_path, job.model_path, seed=cfg.seed + 1,
                                 prompt_loss=cfg.prompt_loss, only=warm, **kw)
        head = curriculum_rows(selected, warm.steps * per_step, cfg.seed + 1)
        steps, what = warm.steps, f"{selected.count()} selected rows"
    # Enough passes for every step: a head that ends mid-step (first rows) takes its last
    # step's remainder from the first pass, and running dry would restart the stream's head.
    need = (steps + max_steps) * per_step - head.count()
    n_passes = max(math.ceil(max_steps / per_epoch), math.ceil(need / max(train_ds.count(), 1)))
    passes = [train_ds.random_shuffle(seed=cfg.seed + 100 + i) if i else train_ds
              for i in range(n_passes)]
    stream = concat_in_order([head, *passes])
    log.info("training %s: %d warm-up steps on %s, then %d steps", job.name, steps, what,
             max_steps)
    return stream.materialize(), steps


def data_config(ordered: bool) -> Any:
    """How Ray Train feeds the workers: in the dataset's order when a curriculum needs it."""
    from ray.train import DataConfig

    if not ordered:
        return DataConfig()
    train = DataConfig.default_ingest_options()
    train.preserve_order = True
    return DataConfig(execution_options={"train": train})


def run_sft(job: SFTJob) -> SFTResult:
    """Train on Ray Train; return the best checkpoint (by eval_loss) and the run's metrics."""
    from ray.train.torch import TorchTrainer

    from cogumi_ray.train.backends import get_backend
    from cogumi_ray.train.sft_data import build_dataset

    t0, t0_unix = time.perf_counter(), time.time()
    cfg = job.cfg
    get_backend(cfg.backend).check(cfg)
    kw = {"max_seq_len": cfg.max_seq_len, "packing": cfg.packing, "domain": job.domain}
    train_ds = build_dataset(job.train_path, job.model_path, seed=cfg.seed,
                             prompt_loss=cfg.prompt_loss, **kw)
    val_ds = (
        build_dataset(job.val_path, job.model_path, shuffle=False, **kw) if job.val_path else None
    )
    n_train = train_ds.count()
    n_val = val_ds.count() if val_ds is not None else 0
    if n_train < job.min_rows:
        where = f" of domain {job.domain!r}" if job.domain else ""
        raise TrainError(
            f"{job.train_path!r} has {n_train} usable training rows{where}, fewer than the "
            f"{job.min_rows} needed; add data or lower the minimum"
        )
    has_eval = n_val >= cfg.num_workers
    max_steps, per_epoch = plan_steps(cfg, n_train, cfg.num_workers)
    # A curriculum or first rows make the stream's order part of the recipe.
    ordered, warm_steps = bool(cfg.curriculum.steps or job.first_path is not None), 0
    if ordered:
        train_ds, warm_steps = with_curriculum(job, train_ds, max_steps, per_epoch, kw)
        max_steps += warm_steps
    experiment = storage.join(job.storage_path, job.name)
    if not job.resume and storage.exists(experiment):
        # A fresh run must not pick up an older run's checkpoints (Ray restores by name).
        fs, path = storage.fs_and_path(experiment)
        fs.rm(path, recursive=True)
    datasets = {"train": train_ds, **({"val": val_ds} if has_eval else {})}
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={
            "train": cfg.model_dump(mode="json"),
            "lora": job.lora.model_dump(mode="json") if job.lora else None,
            "model_path": job.model_path,
            "name": job.name,
            "max_steps": max_steps,
            "has_eval": has_eval,
            "ordered": ordered,
            "callbacks": list(job.callbacks),
        },
        scaling_config=scaling_config(cfg),
        run_config=run_config(job, has_eval),
        datasets=datasets,
        dataset_config=data_config(ordered=ordered),
    )
    prep_s = time.perf_counter() - t0
    try:
        result = trainer.fit()
    except Exception as e:  # ray.train.TrainingFailedError and friends
        _reraise_worker_error(e)
    best_ckpt, best = _best(result, has_eval)
    final_ckpt, final = _final(result)
    checkpoint = best_ckpt if cfg.select_checkpoint == "best_eval_loss" else final_ckpt
    last = dict(result.metrics or {})
    steps = int(last.get("step", 0))
    metrics: dict[str, Any] = {
        "train_rows": n_train,
        "val_rows": n_val,
        "num_workers": cfg.num_workers,
        "max_steps": max_steps,
        "steps": steps,
        "epochs": round(max(steps - warm_steps, 0) / per_epoch, 3),
        "budget_steps": last.get("budget_steps"),  # train.max_minutes' cut, when it cut
        "stopped_early": steps < (last.get("budget_steps") or max_steps),
        "train_loss": last.get("loss"),
        "eval_loss": final.get("eval_loss"),
        "best_eval_loss": best.get("eval_loss"),
        "best_step": best.get("step"),
        "selected": "best_eval_loss" if checkpoint is best_ckpt and checkpoint is not final_ckpt
        else "final",
        "learning_rate": last.get("learning_rate"),
        "tokens_per_s": last.get("tokens_per_s"),
        "tokens_seen": last.get("num_input_tokens_seen"),
        "curriculum_steps": warm_steps,
        "start_step": last.get("start_step", 0),
        "data_prep_s": round(prep_s, 2),
        # driver start -> the (last) worker attempt's first step: data, workers, model load
        "startup_s": round(last["train_begin_unix"] - t0_unix, 2) if last.get("train_begin_unix")
        else None,
        "wall_s": round(time.perf_counter() - t0, 2),
        "checkpoints": storage.join(job.storage_path, job.name),
    }
    log.info("training %s: %s", job.name, {k: v for k, v in metrics.items() if v is not None})
    return SFTResult(checkpoint=checkpoint, metrics=metrics, final=final_ckpt, best=best_ckpt)
