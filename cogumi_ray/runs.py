"""A run is a directory with one sub-directory per stage and a manifest.json recording, per stage:
config hash, input content hashes, outputs (with hashes), status, timings and metrics.

A stage whose config and inputs are unchanged (and whose outputs still exist) is skipped on re-run;
`force` re-runs it. Every manifest write is atomic (temp file + rename).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, Field

from cogumi_ray import storage
from cogumi_ray.errors import RunError

log = logging.getLogger(__name__)

Status = Literal["running", "done", "failed"]


class StageRecord(BaseModel):
    config_hash: str
    inputs: dict[str, str] = Field(default_factory=dict, description="input name -> content hash")
    outputs: dict[str, str] = Field(default_factory=dict, description="output name -> path/URI")
    output_hashes: dict[str, str] = Field(default_factory=dict)
    status: Status = "running"
    started_at: str = ""
    finished_at: str | None = None
    seconds: float | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None


class Manifest(BaseModel):
    run: str
    stages: dict[str, StageRecord] = Field(default_factory=dict)


@dataclass
class StageOutput:
    """What a stage function returns: named output paths (inside its stage dir) and metrics."""

    outputs: dict[str, str]
    metrics: dict[str, Any] = field(default_factory=dict)
    skipped: bool = False


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunContext:
    """Handle on one run directory; every stage gets one."""

    def __init__(self, run_dir: str, name: str | None = None, resume: bool = False) -> None:
        self.run_dir = str(run_dir).rstrip("/")
        # True when an interrupted stage should continue from its last durable checkpoint.
        self.resume = resume
        self.manifest_path = storage.join(self.run_dir, "manifest.json")
        storage.makedirs(self.run_dir)
        if storage.exists(self.manifest_path):
            try:
                self.manifest = Manifest.model_validate(storage.read_json(self.manifest_path))
            except Exception as e:  # a corrupt manifest must not be silently replaced
                raise RunError(
                    f"manifest {self.manifest_path} is unreadable ({e}); move it away to start afresh"
                ) from None
        else:
            self.manifest = Manifest(run=name or self.run_dir.rsplit("/", 1)[-1])
            self.save()

    def save(self) -> None:
        storage.atomic_write_json(self.manifest_path, self.manifest.model_dump(mode="json"))

    def stage_dir(self, stage: str) -> str:
        path = storage.join(self.run_dir, stage)
        storage.makedirs(path)
        return path

    def output(self, ref: str) -> str:
        """Resolve 'stage.output' to the path a finished stage recorded."""
        stage, _, name = ref.partition(".")
        rec = self.manifest.stages.get(stage)
        if rec is None or rec.status != "done":
            raise RunError(
                f"stage {stage!r} has not finished in run {self.run_dir}; run it first "
                f"(e.g. `cogumi pipeline run CONFIG --until {stage}`)"
            )
        if name not in rec.outputs:
            raise RunError(f"stage {stage!r} has no output {name!r}; it has {sorted(rec.outputs)}")
        return rec.outputs[name]

    def output_hash(self, ref: str) -> str:
        stage, _, name = ref.partition(".")
        rec = self.manifest.stages[stage]
        return rec.output_hashes.get(name) or storage.content_hash(rec.outputs[name])

    def is_fresh(self, stage: str, config_hash: str, input_hashes: Mapping[str, str]) -> bool:
        rec = self.manifest.stages.get(stage)
        return (
            rec is not None
            and rec.status == "done"
            and rec.config_hash == config_hash
            and rec.inputs == dict(input_hashes)
            and all(storage.exists(p) for p in rec.outputs.values())
        )

    def run_stage(
        self,
        stage: str,
        fn: Callable[[], StageOutput],
        config: Any,
        input_hashes: Mapping[str, str] | None = None,
        force: bool = False,
    ) -> StageOutput:
        """Run `fn` as stage `stage` unless an identical run already finished; record everything."""
        input_hashes = dict(input_hashes or {})
        cfg = config.model_dump(mode="json") if isinstance(config, BaseModel) else config
        config_hash = storage.hash_object(cfg)
        if not force and self.is_fresh(stage, config_hash, input_hashes):
            rec = self.manifest.stages[stage]
            log.info("stage %s: unchanged config and inputs, skipped", stage)
            return StageOutput(outputs=dict(rec.outputs), metrics=dict(rec.metrics), skipped=True)
        log.info("stage %s: starting", stage)
        rec = StageRecord(config_hash=config_hash, inputs=input_hashes, started_at=_now())
        self.manifest.stages[stage] = rec
        self.save()
        t0 = time.perf_counter()
        try:
            out = fn()
        except BaseException as e:  # record interrupts too, then re-raise
            rec.status = "failed"
            rec.error = f"{type(e).__name__}: {e}"[:2000]
            rec.finished_at = _now()
            rec.seconds = round(time.perf_counter() - t0, 3)
            self.save()
            raise
        rec.outputs = {k: storage.absolute(v) for k, v in out.outputs.items()}
        rec.output_hashes = {k: storage.content_hash(v) for k, v in rec.outputs.items()}
        rec.metrics = out.metrics
        rec.status = "done"
        rec.finished_at = _now()
        rec.seconds = round(time.perf_counter() - t0, 3)
        self.save()
        from cogumi_ray.summary import fmt_metrics

        log.info("stage %s: done in %.0f s  %s", stage, rec.seconds, fmt_metrics(out.metrics, limit=4))
        return out
