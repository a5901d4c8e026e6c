"""The AWQ W4A16 checkpoint of the compress stage's GPU branch loads and generates in vLLM
(needs CUDA and vLLM: `pip install cogumi-ray[gpu]` on a GPU host; skipped elsewhere)."""

from __future__ import annotations

import json
import os

import pytest


@pytest.mark.gpu
def test_vllm_serves_the_awq_checkpoint(tiny_sft_model_dir, tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: vLLM runs the W4A16 (Marlin) kernels on a GPU only")
    vllm = pytest.importorskip("vllm", reason="vLLM is not installed (the `gpu` extra)")
    from testkit import tiny_pairs

    from cogumi_ray.compress.awq import awq_quantize
    from cogumi_ray.compress.config import AWQConfig
    from cogumi_ray.models.chat import build_prompt
    from cogumi_ray.models.load import load_tokenizer

    rows = [{"instruction": a, "response": b} for a, b in tiny_pairs(16)]
    out = awq_quantize(tiny_sft_model_dir, str(tmp_path / "awq"), rows, AWQConfig(enabled="on"))
    with open(os.path.join(out, "config.json")) as f:
        assert json.load(f)["quantization_config"]["quant_method"] == "compressed-tensors"

    llm = vllm.LLM(model=out, tokenizer=out, max_model_len=512, gpu_memory_utilization=0.2,
                   enforce_eager=True, dtype="float16")
    assert llm.llm_engine.model_config.quantization == "compressed-tensors"
    tok = load_tokenizer(out)
    prompts = [build_prompt(tok, a) for a, _ in tiny_pairs(4)]
    greedy = vllm.SamplingParams(temperature=0.0, max_tokens=16)
    outs = llm.generate(prompts, greedy)
    assert len(outs) == len(prompts)
    assert all(len(o.outputs[0].token_ids) > 0 for o in outs)
