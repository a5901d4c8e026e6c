"""The pipeline: an ordered registry of stages, each a `module:function` called lazily as
`fn(cfg, ctx, inputs) -> StageOutput`, wired by named outputs ("stage.output") and recorded in the
run manifest. The CLI, `cogumi demo` and the tests all run stages through `run_pipeline`.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cogumi_ray.errors import RunError

if TYPE_CHECKING:  # keep `cogumi --help` free of pydantic/fsspec imports
    from cogumi_ray.config import CogumiConfig
    from cogumi_ray.runs import RunContext, StageOutput

log = logging.getLogger(__name__)

StageFn = Callable[["CogumiConfig", "RunContext", dict[str, str]], "StageOutput"]


@dataclass(frozen=True)
class Option:
    """A stage-specific CLI flag that sets one config key (`--domain code` -> modifiers.domains)."""

    flag: str
    key: str
    help: str
    type: Callable[[str], Any] = str
    many: bool = False
    switch: bool = False  # a bare flag that sets the key to True


@dataclass(frozen=True)
class Stage:
    name: str
    target: str  # "module:function", imported only when the stage runs
    sections: tuple[str, ...]  # config sections whose values the stage's hash covers
    # input name -> "stage.output" or a path/URI; "stage.output?" is optional: left out (logged)
    # when that stage has not finished in the run or has no such output
    inputs: Callable[[CogumiConfig], dict[str, str]]
    command: tuple[str, ...]  # CLI words, e.g. ("data", "curate")
    help: str
    options: tuple[Option, ...] = field(default_factory=tuple)
    uses_ray: bool = True
    then: tuple[str, ...] = ()  # stages its CLI command also runs (train base -> its pass rates)

    def load(self) -> StageFn:
        module, _, fn = self.target.partition(":")
        return getattr(importlib.import_module(module), fn)


def _curate_inputs(cfg: CogumiConfig) -> dict[str, str]:
    if cfg.curate.inputs:
        return {f"source{i}": p for i, p in enumerate(cfg.curate.inputs)}
    return {"source0": "suite.raw"}


def _model_input(engine: Any, default: str) -> dict[str, str]:
    """An engine's model: its explicit path, else `default` (a "stage.output" reference); an
    OpenAI-compatible endpoint needs none."""
    if engine.kind == "openai":
        return {}
    return {"model": engine.model or default}


def _pre_sft_input(cfg: CogumiConfig) -> dict[str, str]:
    """The model before SFT, for eval_base's reference score (HF-folder engines on the default
    model only: a GGUF or endpoint has no such counterpart)."""
    engine = cfg.eval.engine or cfg.generate.engine
    if engine.kind in ("hf", "vllm") and not engine.model and cfg.eval.pre_sft_sample:
        return {"pre_sft": "model.model"}
    return {}


# The model later stages default to: the base after distillation (`distill` passes the trained
# base through unchanged when it has nothing to retrain on).
FINAL_MODEL = "distill.model"


def _final(engine: Any) -> str:
    """Default model of the final evaluation: the exported GGUF for llama.cpp, else the HF folder."""
    return "export_gguf.gguf" if engine is not None and engine.kind == "llama_cpp" else FINAL_MODEL


STAGES: tuple[Stage, ...] = (
    Stage(
        name="suite",
        target="cogumi_ray.data.suite.stage:run",
        sections=("suite",),
        inputs=lambda cfg: {},
        command=("data", "generate"),
        help="Generate the bundled, verifiable task suite (with planted mess for curation).",
        uses_ray=False,
    ),
    Stage(
        name="curate",
        target="cogumi_ray.data.curate:run",
        sections=("curate",),
        inputs=_curate_inputs,
        command=("data", "curate"),
        help="Read, normalise, filter, deduplicate (MinHash LSH on Ray Data) and split.",
        options=(Option("--input", "curate.inputs", "JSONL/Parquet file, dir or URI", many=True),),
    ),
    Stage(
        name="model",
        target="cogumi_ray.models.stage:run",
        sections=("model",),
        inputs=lambda cfg: {"train": "curate.train"} if cfg.model.source == "tiny" else {},
        command=("model", "build"),
        help="Build the tiny Llama + tokenizer from the curated data, or check a HF model folder.",
        uses_ray=False,
    ),
    Stage(
        name="train_base",
        target="cogumi_ray.train.base_stage:run",
        sections=("train",),
        inputs=lambda cfg: {"model": "model.model", "train": "curate.train", "val": "curate.val"},
        command=("train", "base"),
        help="Full-precision SFT of the base on Ray Train (HF Trainer; hf/deepspeed/unsloth), "
        "then its held-out pass rate per domain (eval_base).",
        then=("eval_base",),
    ),
    Stage(
        name="eval_base",
        target="cogumi_ray.eval.stage:run_base",
        sections=("generate", "eval"),
        inputs=lambda cfg: {
            **_model_input(cfg.eval.engine or cfg.generate.engine, "train_base.model"),
            **_pre_sft_input(cfg),
            "test": f"curate.{cfg.eval.suite_split}",
        },
        command=("eval-base",),
        help="Pass rate of the base model on the held-out task suite, per domain and difficulty.",
        uses_ray=False,
    ),
    Stage(
        name="generate",
        target="cogumi_ray.generate.stage:run",
        sections=("generate",),
        inputs=lambda cfg: {
            **_model_input(cfg.generate.engine, "train_base.model"),
            "data": cfg.generate.data or f"curate.{cfg.generate.split}",
        },
        command=("generate",),
        help="Answer a dataset split with a model on Ray Data (engine actors) into Parquet.",
        options=(
            Option("--engine", "generate.engine.kind", "hf, llama_cpp, openai or vllm"),
            Option("--model", "generate.engine.model", "HF folder or .gguf (default: the base)"),
            Option("--split", "generate.split", "curated split to answer (train, val, test)"),
            Option("--limit", "generate.limit", "answer only the first N rows", type=int),
        ),
    ),
    Stage(
        name="judge",
        target="cogumi_ray.judge.stage:run",
        sections=("judge",),
        inputs=lambda cfg: {"answers": cfg.judge.input or "generate.answers"},
        command=("judge",),
        help="Judge answers on Ray Data (verifier or Anthropic/OpenAI/compatible LLM judge).",
        options=(
            Option("--judge", "judge.judge", "verifier, anthropic, openai or openai_compatible"),
            Option("--mode", "judge.mode", "reference or pairwise (LLM judges)"),
            Option("--judge-model", "judge.model", "judge model name"),
            Option("--input", "judge.input", "answers Parquet (default: the generate stage's)"),
        ),
    ),
    Stage(
        name="failures",
        target="cogumi_ray.failures.stage:run",
        sections=("failures",),
        inputs=lambda cfg: {"failures": cfg.failures.input or "judge.failures"},
        command=("failures", "analyze"),
        help="Embed the judged failures (Ray Data), cluster them (KMeans), label and report.",
        options=(
            Option("--input", "failures.input", "failures/judgments Parquet (default: the judge's)"),
            Option("--k", "failures.k", "number of clusters (default: best silhouette)", type=int),
        ),
    ),
    Stage(
        name="distill",
        target="cogumi_ray.distill.stage:run",
        sections=("distill", "judge", "generate", "eval"),
        inputs=lambda cfg: {
            "model": "train_base.model",
            "failures": cfg.distill.failures or "judge.failures",
            "train": "curate.train",
            "val": "curate.val",
            "test": f"curate.{cfg.eval.suite_split}",
        },
        command=("distill",),
        help="Self-critique + teacher corrections of the failures, retrain, re-score held-out.",
        options=(
            Option("--teacher", "distill.teacher.kind",
                   "reference, anthropic, openai, openai_compatible or none"),
            Option("--teacher-model", "distill.teacher.model", "teacher model name"),
            Option("--teacher-url", "distill.teacher.base_url", "teacher API base URL"),
            Option("--failures", "distill.failures", "failures Parquet (default: the judge's)"),
        ),
    ),
    Stage(
        name="compress",
        target="cogumi_ray.compress.stage:run",
        sections=("compress", "generate", "eval"),
        inputs=lambda cfg: {
            "model": FINAL_MODEL,
            "train": "curate.train",
            "hard": "distill.dataset",
            "val": "curate.val",
            "test": f"curate.{cfg.eval.suite_split}",
        },
        command=("compress",),
        help="Prune (llm-compressor) + masked recovery, GGUF K-quants, AWQ on GPU, lossless "
        "packing; size, perplexity, pass rate and tokens/s of every variant.",
        options=(Option("--tune", "compress.tune.enabled",
                        "search sparsity + K-quant with Ray Tune first", switch=True),),
    ),
    Stage(
        name="modifiers",
        target="cogumi_ray.modifiers.stage:run",
        sections=("modifiers", "generate", "eval"),
        inputs=lambda cfg: {
            "model": FINAL_MODEL,
            "train": cfg.modifiers.data or "curate.train",
            **({"failures": "distill.dataset"} if cfg.modifiers.failures and not cfg.modifiers.data
               else {}),
            "val": "curate.val",
            "test": f"curate.{cfg.eval.suite_split}",
        },
        command=("modifiers", "train"),
        help="Train one LoRA adapter per domain on Ray Train (PEFT folders; optional merge).",
        options=(Option("--domain", "modifiers.domains", "domain to train (repeatable)", many=True),),
    ),
    Stage(
        name="router",
        target="cogumi_ray.route.stage:run",
        sections=("route",),
        inputs=lambda cfg: {"scores": "modifiers.scores", "val": "curate.val",
                            "test": f"curate.{cfg.eval.suite_split}",
                            # the base's calibrated confidence as a router feature
                            "calibrator": "compress.calibrator?", "gguf": "compress.gguf?",
                            "base": "compress.model?"},
        command=("router", "train"),
        help="Learned router (MLP / kNN / logistic regression on MiniLM+PCA, temperature-"
        "calibrated) on the modifiers' per-row verdicts; RouteLLM-style report; escalation "
        "detector.",
        options=(Option("--tune", "route.tune.enabled",
                        "tune the cut and progressive thresholds with Ray Tune", switch=True),),
    ),
    Stage(
        name="export_gguf",
        target="cogumi_ray.export.stage:run",
        sections=("export",),
        inputs=lambda cfg: {"model": cfg.export.model or FINAL_MODEL},
        command=("export", "gguf"),
        help="Export the model (HF Llama folder) to a GGUF file for llama.cpp (f32 or f16).",
        options=(
            Option("--outtype", "export.gguf_outtype", "f32 or f16"),
            Option("--model", "export.model",
                   "HF folder, or a stage output such as model.model (default: distill.model)"),
        ),
        uses_ray=False,
    ),
    Stage(
        name="eval",
        target="cogumi_ray.eval.stage:run",
        sections=("generate", "eval"),
        inputs=lambda cfg: {
            **_model_input(cfg.eval.engine or cfg.generate.engine, _final(cfg.eval.engine)),
            **({"test": f"curate.{cfg.eval.suite_split}"} if "suite" in cfg.eval.benchmarks else {}),
        },
        command=("eval",),
        help="Benchmarks (HumanEval, GSM8K, task suite) with quality gates; exits 2 if a gate fails.",
        options=(
            Option("--benchmark", "eval.benchmarks", "humaneval, gsm8k or suite", many=True),
            Option("--engine", "eval.engine.kind", "hf, llama_cpp, openai or vllm"),
            Option("--model", "eval.engine.model", "HF folder or .gguf (default: the base)"),
        ),
        uses_ray=False,
    ),
)


def stage_by_name(name: str) -> Stage:
    for s in STAGES:
        if s.name == name:
            return s
    raise RunError(f"unknown stage {name!r}; stages are {[s.name for s in STAGES]}")


def _is_ref(value: str) -> bool:
    stage, dot, _ = value.partition(".")
    return bool(dot) and "/" not in value and any(s.name == stage for s in STAGES)


def _finished(ctx: RunContext, ref: str) -> bool:
    stage, _, name = ref.partition(".")
    rec = ctx.manifest.stages.get(stage)
    return rec is not None and rec.status == "done" and name in rec.outputs


def run_pipeline(
    cfg: CogumiConfig,
    *,
    only: Iterable[str] | None = None,
    until: str | None = None,
    force: Iterable[str] = (),
    resume: bool = False,
    run_log: bool = False,
) -> dict[str, StageOutput]:
    """Run the stages in order (all, `only` some, or up to `until`), skipping unchanged ones.

    `run_log`: Ray's logs and worker output go to the run's log file instead of the terminal,
    which keeps the stage lines (start, done with headline metrics, skipped).
    """
    from cogumi_ray import run_log as run_log_file
    from cogumi_ray import storage
    from cogumi_ray.ray_session import init_ray
    from cogumi_ray.runs import RunContext

    force = set(force)
    for name in force | set(only or ()) | ({until} if until else set()):
        stage_by_name(name)
    selected: list[Stage] = []
    for s in STAGES:
        if only is None or s.name in set(only):
            selected.append(s)
        if until and s.name == until:
            break
    ctx = RunContext(cfg.run_dir, name=cfg.run.name, resume=resume)
    if run_log:
        log.info("log: %s (Ray's logs and every worker's output)",
                 run_log_file.attach(run_log_path(cfg)))
    env_vars = cfg.sandbox.apply()
    results: dict[str, StageOutput] = {}
    for stage in selected:
        inputs: dict[str, str] = {}
        hashes: dict[str, str] = {}
        for key, ref in stage.inputs(cfg).items():
            if ref.endswith("?"):
                ref = ref[:-1]
                if not _finished(ctx, ref):
                    log.info("stage %s: optional input %s (%s) is not in this run; going without",
                             stage.name, key, ref)
                    continue
            if _is_ref(ref):
                inputs[key], hashes[key] = ctx.output(ref), ctx.output_hash(ref)
            else:
                if not storage.exists(ref):
                    raise RunError(f"stage {stage.name}: input {key} = {ref!r} does not exist")
                inputs[key], hashes[key] = storage.absolute(ref), storage.content_hash(ref)
        if stage.uses_ray:
            init_ray(cfg.ray, env_vars)
        section_cfg = {sec: getattr(cfg, sec).model_dump(mode="json") for sec in stage.sections}
        fn = stage.load()
        run_log_file.quiet_libraries()  # loading the stage may have configured another Ray library
        try:
            results[stage.name] = ctx.run_stage(
                stage.name,
                lambda fn=fn, inputs=inputs: fn(cfg, ctx, inputs),
                section_cfg,
                hashes,
                force=stage.name in force,
            )
        except Exception as e:  # not KeyboardInterrupt: an interrupt is no failure to explain
            # The exception keeps its type (callers catch DataError etc.); the CLI reads the stage
            # name off it to say what failed and what to run next.
            with contextlib.suppress(AttributeError):
                setattr(e, _FAILED_STAGE, stage.name)
            _log_traceback(stage.name, e)
            raise
    return results


_FAILED_STAGE = "cogumi_failed_stage"


def failed_stage(e: BaseException) -> str | None:
    """The stage `e` escaped from inside `run_pipeline`, or None (it failed elsewhere)."""
    name = getattr(e, _FAILED_STAGE, None)
    return name if isinstance(name, str) else None


def _log_traceback(stage: str, e: BaseException) -> None:
    """The traceback into the run log file only: the terminal gets the CLI's one-paragraph message
    (a traceback there buries what to do next). No run log attached (`-v`): the CLI prints it."""
    from cogumi_ray import run_log as run_log_file

    path = run_log_file.active_path()
    handlers = [h for h in logging.getLogger().handlers
                if isinstance(h, logging.FileHandler) and h.baseFilename == path]
    if not handlers:
        return
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "stage %s failed", (stage,),
                            (type(e), e, e.__traceback__))
    for h in handlers:
        h.handle(record)


def run_log_path(cfg: CogumiConfig) -> str:
    """`<run dir>/logs/pipeline.log`; a run on object storage logs to the local temp dir."""
    import tempfile

    from cogumi_ray import storage

    if storage.is_local(cfg.run_dir):
        return os.path.join(storage.local_path(cfg.run_dir), "logs", "pipeline.log")
    return os.path.join(tempfile.gettempdir(), "cogumi", cfg.run.name, "logs", "pipeline.log")
