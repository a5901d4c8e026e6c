"""serve_configs/*.yaml are valid Ray Serve config files, and their application args are valid for
the builders they name (checked without deploying anything)."""

from __future__ import annotations

from pathlib import Path

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


def test_gpu_args_build_the_cogumi_app_on_vllm(tiny_sft_model_dir, peft_adapters):
    from ray import serve

    from cogumi_ray.config import load_config
    from cogumi_ray.serve.app import build_app
    from cogumi_ray.serve.backends.vllm import engine_kwargs
    from cogumi_ray.serve.config import serve_config_from_args

    app = _schema(GPU).applications[0]
    assert app.import_path == "cogumi_ray.serve.app:build_app"  # Ingress -> Router -> Generator
    cfg = serve_config_from_args(app.args)
    assert cfg.backend == "vllm" and cfg.policy == "learned" and cfg.router_path
    assert cfg.generator.num_gpus >= cfg.vllm.tensor_parallel_size
    assert cfg.base.startswith("s3://") and not cfg.base.endswith(".gguf")
    # fits the cluster config's modifiers: one PEFT folder each, all resident, every rank held
    run = load_config(ROOT / "configs" / "llama31-8b.yaml")
    mods = run.modifiers
    assert sorted(cfg.adapters) == sorted(mods.domains)
    assert all(p.endswith(f"/modifiers/adapters/{d}") for d, p in cfg.adapters.items())
    assert cfg.max_adapters_per_replica >= len(mods.domains)
    kwargs = engine_kwargs(cfg, "/local/base", {d: mods.spec(d).rank for d in mods.domains})
    assert kwargs["enable_lora"] and kwargs["max_loras"] == len(mods.domains)
    assert kwargs["max_lora_rank"] >= max(mods.spec(d).rank for d in mods.domains)
    assert kwargs["max_model_len"] >= cfg.limits.max_tokens
    auto = cfg.generator.autoscaling
    assert auto is not None and auto.max_replicas >= auto.min_replicas >= 1
    # the same args with an HF folder and PEFT folders that exist here: the graph builds on CPU
    # (the vLLM engine itself starts in the Generator replica, on a GPU node)
    args = {**app.args, "base": tiny_sft_model_dir, "adapters": peft_adapters}
    assert isinstance(build_app(args), serve.Application)
