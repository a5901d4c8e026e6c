"""Stage "export_gguf" (`cogumi export gguf`): the model as one GGUF file for llama.cpp."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cogumi_ray import storage
from cogumi_ray.errors import ModelError

if TYPE_CHECKING:
    from cogumi_ray.config import CogumiConfig
    from cogumi_ray.runs import RunContext, StageOutput


def run(cfg: CogumiConfig, ctx: RunContext, inputs: dict[str, str]) -> StageOutput:
    from cogumi_ray.export.gguf_export import export_gguf
    from cogumi_ray.runs import StageOutput

    if "model" not in inputs:
        raise ModelError("export_gguf needs input 'model' (a HF Llama folder)")
    outtype = cfg.export.gguf_outtype
    out = storage.join(ctx.stage_dir("export_gguf"), f"model-{outtype}.gguf")
    res = export_gguf(inputs["model"], out, outtype=outtype)
    return StageOutput(
        outputs={"gguf": res.path},
        metrics={
            "outtype": res.outtype,
            "tensors": res.n_tensors,
            "params": res.n_params,
            "size_mb": round(res.bytes / 2**20, 2),
            "pre_tokenizer": res.pre_tokenizer,
            "export_s": round(res.seconds, 2),
        },
    )
