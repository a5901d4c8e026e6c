"""The typed pipeline config: one section per area, loaded from YAML with errors that name key and file.

The defaults of every section *are* the embedded default (tiny model, bundled task suite, local Ray),
so `CogumiConfig()` is what `cogumi demo` runs and `configs/demo.yaml` only names the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, Field, ValidationError
from pydantic.fields import FieldInfo

from cogumi_ray.compress.config import CompressConfig
from cogumi_ray.config_base import StrictModel
from cogumi_ray.data.config import CurateConfig, SuiteConfig
from cogumi_ray.distill.config import DistillConfig
from cogumi_ray.errors import ConfigError
from cogumi_ray.eval.config import EvalConfig
from cogumi_ray.export.config import ExportConfig
from cogumi_ray.failures.config import FailuresConfig
from cogumi_ray.generate.config import GenerateConfig
from cogumi_ray.judge.config import JudgeConfig
from cogumi_ray.models.config import ModelConfig
from cogumi_ray.modifiers.config import ModifiersConfig
from cogumi_ray.route.config import RouterConfig
from cogumi_ray.sandbox.config import SandboxConfig
from cogumi_ray.serve.config import ServeConfig
from cogumi_ray.train.config import TrainConfig


class RunConfig(StrictModel):
    name: str = Field("demo", description="Run name: the run lives in <root>/<name>/.")
    root: str = Field("runs", description="Directory or URI (s3://, gs://) holding runs.")
    seed: int = Field(0, description="Global seed for every stage that samples.")


class RayConfig(StrictModel):
    address: str | None = Field(
        None, description="Ray cluster address ('auto' inside `ray job submit`); None starts local Ray."
    )
    num_cpus: int | None = Field(None, ge=1, description="CPUs for a local Ray; None = all.")
    include_dashboard: bool = Field(
        True,
        description="Start the dashboard (http://127.0.0.1:8265) with a local Ray; Ray Train's "
        "controller also needs its state API.",
    )
    object_store_memory_mb: int | None = Field(
        None, ge=64, description="Object store size for a local Ray (MiB); None = Ray's default."
    )
    serve_fast_path: bool = Field(
        True,
        description="A local Ray this process starts runs Ray Serve with handle calls over gRPC "
        "and replica code on the replica's event loop (RAY_SERVE_USE_GRPC_BY_DEFAULT=1, "
        "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD=0, unless already set). On 2 cores a forced request's "
        "added latency went from 27.9 to 18-20 ms p50 (benchmarks/serve.py). A cluster sets these in its "
        "`ray start` environment (clusters/*.yaml).",
    )
    small_cluster_cpus: int = Field(
        8,
        ge=0,
        description="On a Ray with at most this many CPUs, Ray Data operators share every CPU "
        "(no per-operator reservation) and shuffle aggregators take a nominal CPU share, so no "
        "core idles while one operator waits for its reserved slice (0 = never).",
    )
    spare_workers: int = Field(
        4,
        ge=0,
        description="Idle worker processes a local Ray keeps beyond one per CPU. Ray otherwise "
        "kills any worker over that count after 1 s idle, Ray Data's own actors count too, and "
        "each restart re-imports Ray Data (seconds of CPU): on 2 cores that doubled the time of "
        "dedup's later passes.",
    )


class CogumiConfig(StrictModel):
    run: RunConfig = Field(default_factory=RunConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    suite: SuiteConfig = Field(default_factory=SuiteConfig)
    curate: CurateConfig = Field(default_factory=CurateConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    # The demo's base trains for what 2 cores can do in its 8-minute share of the demo (7 min
    # of steps + ~30-60 s of data preparation, start-up and saves): up to 3 epochs, so the
    # budget is what ends the run on a fast box too. Batches of 2 packed rows: twice the
    # optimizer steps for ~5% fewer tokens/s, and copying forms after a number of steps
    # (benchmarks/learning.py, 4 min: 22.3% held-out at batch 2 vs 17.0% at 4). A config that
    # sets `train:` sets its own budget and batch.
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(
        max_minutes=7.0, epochs=3, per_device_batch_size=2))
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    failures: FailuresConfig = Field(default_factory=FailuresConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    modifiers: ModifiersConfig = Field(default_factory=ModifiersConfig)
    route: RouterConfig = Field(default_factory=RouterConfig)
    compress: CompressConfig = Field(default_factory=CompressConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)

    @property
    def run_dir(self) -> str:
        from cogumi_ray.storage import absolute, join

        return join(absolute(self.run.root), self.run.name)


def format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid config in {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            lines.append(f"  - {key}: unknown key (check spelling; see configs/demo.yaml)")
        else:
            lines.append(f"  - {key}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def config_from_dict(data: dict[str, Any], source: str = "<dict>") -> CogumiConfig:
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise ConfigError(f"invalid config in {source}: top level must be a mapping, got {kind}")
    try:
        return CogumiConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_errors(e, source)) from None


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> CogumiConfig:
    """Load a YAML config (None = the embedded default), then apply dotted overrides."""
    import yaml

    data: dict[str, Any] = {}
    source = "<embedded default>"
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise ConfigError(f"config file {source} does not exist")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {source} is not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"invalid config in {source}: top level must be a mapping")
    for dotted, value in (overrides or {}).items():
        node = data
        model: type[BaseModel] | None = CogumiConfig
        *parents, leaf = dotted.split(".")
        for key in parents:
            field = model.model_fields.get(key) if model is not None else None
            if node.get(key) is None:  # absent, or an optional section left unset (None)
                node[key] = _factory_values(field)
            node = node[key]
            if not isinstance(node, dict):
                raise ConfigError(f"override {dotted!r}: {key!r} is not a section")
            model = _section_model(field)
        node[leaf] = value
    return config_from_dict(data, source)


def _factory_values(field: FieldInfo | None) -> dict[str, Any]:
    """What a section's default factory sets beyond its class defaults (the demo's training
    budget), so `--set train.max_steps=10` on a config without `train:` keeps it."""
    if field is None or field.default_factory is None:
        return {}
    value = field.default_factory()  # type: ignore[call-arg]
    return value.model_dump(mode="json", exclude_unset=True) if isinstance(value, BaseModel) else {}


def _section_model(field: FieldInfo | None) -> type[BaseModel] | None:
    if field is None:
        return None
    for t in (field.annotation, *get_args(field.annotation)):
        if isinstance(t, type) and issubclass(t, BaseModel):
            return t
    return None
