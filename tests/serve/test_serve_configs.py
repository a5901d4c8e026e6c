"""serve_configs/*.yaml are valid Ray Serve config files, and their application args are valid for
the builders they name (checked without deploying anything)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CPU, GPU = ROOT / "serve_configs" / "local-cpu.yaml", ROOT / "serve_configs" / "gpu-vllm.yaml"


def _schema(path: Path):
    from ray.serve.schema import ServeDeploySchema

    return ServeDeploySchema.model_validate(yaml.safe_load(path.read_text()))


def test_both_files_are_serve_deploy_configs():
    for path in (CPU, GPU):
        schema = _schema(path)
        assert len(schema.applications) == 1 and schema.applications[0].route_prefix == "/"


def test_cpu_args_build_the_cogumi_app(serve_gguf, lora_ggufs):
    from ray import serve

    from cogumi_ray.serve.app import build_app
    from cogumi_ray.serve.config import serve_config_from_args

    app = _schema(CPU).applications[0]
    assert app.import_path == "cogumi_ray.serve.app:build_app"
    cfg = serve_config_from_args(app.args)
    assert cfg.backend == "llama_cpp" and sorted(cfg.adapters) == ["automation", "code", "reasoning"]
    assert cfg.base == "runs/demo/export_gguf/model-f16.gguf"  # the demo run's export
    auto = cfg.generator.autoscaling
    assert auto is not None and auto.min_replicas >= 1 and auto.max_replicas > auto.min_replicas
    assert cfg.max_adapters_per_replica >= len(cfg.adapters)
    # the same args with files that exist here (the demo run is not built by the tests)
    args = {**app.args, "base": serve_gguf, "adapters": {"code": lora_ggufs["code"]}}
    assert isinstance(build_app(args), serve.Application)


def test_gpu_args_are_ray_serve_llm_configs_with_lora():
    from cogumi_ray.config import load_config

    app = _schema(GPU).applications[0]
    assert app.import_path == "ray.serve.llm:build_openai_app"
    try:  # `ray.serve.llm` itself needs vLLM; its config models do not
        from ray.llm._internal.serve.core.configs.llm_config import LLMConfig
    except ImportError as e:  # pragma: no cover - Ray moved its internals
        pytest.skip(f"Ray Serve LLM's LLMConfig is not importable here: {e}")
    (llm,) = [LLMConfig.model_validate(c) for c in app.args["llm_configs"]]
    assert llm.model_loading_config.model_id == "cogumi"  # clients ask for "cogumi:<domain>"
    assert llm.lora_config.dynamic_lora_loading_path.startswith("s3://")
    assert llm.engine_kwargs["enable_lora"] is True
    # fits the cluster config's modifiers: every rank, every adapter resident at once
    mods = load_config(ROOT / "configs" / "llama31-8b.yaml").modifiers
    assert llm.engine_kwargs["max_lora_rank"] >= max(mods.spec(d).rank for d in mods.domains)
    assert llm.lora_config.max_num_adapters_per_replica >= len(mods.domains)
    assert llm.deployment_config["autoscaling_config"]["max_replicas"] >= 1
