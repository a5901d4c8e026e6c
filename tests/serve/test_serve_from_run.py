"""`cogumi serve`'s choice of models from a run manifest (no Ray, no models loaded)."""

from __future__ import annotations

import os

import pytest

from cogumi_ray.config import load_config
from cogumi_ray.errors import RunError
from cogumi_ray.runs import RunContext, StageOutput
from cogumi_ray.serve.from_run import serve_config_for_run, usage_lines


def _file(path: str) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(b"x")
    return path


def _stage(ctx: RunContext, name: str, outputs: dict[str, str], metrics: dict | None = None) -> None:
    ctx.run_stage(name, lambda: StageOutput(outputs, metrics or {}), {"fake": name})


def _run(root, *stages: str) -> RunContext:
    """A run whose finished stages are `stages` (export_gguf, compress, distill, modifiers)."""
    ctx = RunContext(str(root / "fake"))
    d = ctx.run_dir
    made = {
        "export_gguf": {"gguf": _file(f"{d}/export_gguf/model-f16.gguf")},
        "compress": {"gguf": _file(f"{d}/compress/gguf/model-Q5_K_M.gguf")},
        "distill": {"model": os.path.dirname(_file(f"{d}/distill/model/config.json"))},
        "modifiers": {"adapters": os.path.dirname(_file(f"{d}/modifiers/adapters/code/a.json")),
                      "code_adapter_gguf": _file(f"{d}/modifiers/adapters/code.gguf")},
    }
    for name in stages:
        metrics = {"domains": ["code", "math"]} if name == "modifiers" else {}  # math: no GGUF
        _stage(ctx, name, made[name], metrics)
    return ctx


def _cfg(root, **overrides):
    return load_config(overrides={"run.root": str(root), "run.name": "fake", **overrides})


def test_llama_cpp_prefers_the_compressed_gguf_and_takes_the_lora_ggufs(tmp_path):
    ctx = _run(tmp_path, "export_gguf", "modifiers")
    cfg = serve_config_for_run(_cfg(tmp_path))
    assert cfg.backend == "llama_cpp" and cfg.base == ctx.output("export_gguf.gguf")
    assert cfg.adapters == {"code": ctx.output("modifiers.code_adapter_gguf")}
    _stage(ctx, "compress", {"gguf": _file(f"{ctx.run_dir}/compress/gguf/model-Q5_K_M.gguf")})
    assert serve_config_for_run(_cfg(tmp_path)).base == ctx.output("compress.gguf")


def test_hf_backend_serves_the_hf_base_and_peft_folders(tmp_path):
    ctx = _run(tmp_path, "distill", "modifiers")
    cfg = serve_config_for_run(_cfg(tmp_path), backend="hf", host="0.0.0.0", port=9001)
    assert (cfg.backend, cfg.host, cfg.port) == ("hf", "0.0.0.0", 9001)
    assert cfg.base == ctx.output("distill.model")
    adapters = ctx.output("modifiers.adapters")
    assert cfg.adapters == {"code": f"{adapters}/code", "math": f"{adapters}/math"}


def test_explicit_serve_values_win_over_the_run_and_flags_over_both(tmp_path):
    _run(tmp_path, "export_gguf", "modifiers")
    cfg = serve_config_for_run(
        _cfg(tmp_path, **{"serve.adapters": {"mine": "/x/mine.gguf"}, "serve.port": 8100,
                          "serve.base_name": "tiny"}), port=8200)
    assert cfg.adapters == {"mine": "/x/mine.gguf"} and cfg.port == 8200
    assert cfg.base.endswith("model-f16.gguf") and cfg.served_base_name() == "tiny"
    text = "\n".join(usage_lines(cfg, "http://127.0.0.1:8200/v1"))
    assert "models: tiny, cogumi, cogumi:mine" in text
    assert "curl http://127.0.0.1:8200/v1/chat/completions" in text
    assert 'OpenAI(base_url="http://127.0.0.1:8200/v1", api_key="none")' in text


def test_missing_run_or_export_names_the_command(tmp_path):
    with pytest.raises(RunError, match="no run at .*cogumi demo"):
        serve_config_for_run(_cfg(tmp_path))
    _run(tmp_path, "distill")
    hint = f"no GGUF to serve .*`cogumi export gguf --name fake --root {tmp_path}`"
    with pytest.raises(RunError, match=hint):
        serve_config_for_run(_cfg(tmp_path))
    # a failed export is no export
    ctx = RunContext(str(tmp_path / "fake"))
    with pytest.raises(ValueError):
        ctx.run_stage("export_gguf", lambda: (_ for _ in ()).throw(ValueError("boom")), {})
    with pytest.raises(RunError, match="no finished export_gguf stage"):
        serve_config_for_run(_cfg(tmp_path))
    # the base alone (no modifiers stage) is served
    _stage(ctx, "export_gguf", {"gguf": _file(f"{ctx.run_dir}/export_gguf/model-f16.gguf")})
    assert serve_config_for_run(_cfg(tmp_path)).adapters == {}


def test_a_run_without_lora_ggufs_gets_them_from_its_peft_folders(tmp_path, tiny_sft_model_dir,
                                                                  peft_adapters):
    import shutil

    import gguf

    ctx = RunContext(str(tmp_path / "fake"))
    adapters = os.path.join(ctx.stage_dir("modifiers"), "adapters")
    shutil.copytree(peft_adapters["code"], os.path.join(adapters, "code"))
    _stage(ctx, "distill", {"model": tiny_sft_model_dir})
    _stage(ctx, "export_gguf", {"gguf": _file(f"{ctx.run_dir}/export_gguf/model-f16.gguf")})
    _stage(ctx, "modifiers", {"adapters": adapters}, {"domains": ["code"]})  # as before GGUFs

    path = serve_config_for_run(_cfg(tmp_path)).adapters["code"]
    assert path.startswith(f"{ctx.run_dir}/serve/adapters-") and path.endswith("/code.gguf")
    assert gguf.GGUFReader(path).fields["general.type"].contents() == "adapter"
    made = os.path.getmtime(path)
    assert serve_config_for_run(_cfg(tmp_path)).adapters["code"] == path  # exported once
    assert os.path.getmtime(path) == made
    assert RunContext(ctx.run_dir).manifest == ctx.manifest  # no stage's record changed
