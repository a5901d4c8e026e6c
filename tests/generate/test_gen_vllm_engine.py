"""vLLM engine: argument building (no GPU needed) and a clear refusal without CUDA/vllm."""

from __future__ import annotations

import pytest

from cogumi_ray.errors import MissingDependencyError
from cogumi_ray.generate.config import EngineConfig, GenParams, VLLMEngineConfig
from cogumi_ray.generate.engines import make_engine
from cogumi_ray.generate.engines.vllm import llm_kwargs, sampling_kwargs


def test_llm_kwargs_follow_the_config():
    cfg = VLLMEngineConfig(tensor_parallel_size=4, gpu_memory_utilization=0.8, max_model_len=4096,
                           quantization="compressed-tensors", dtype="bfloat16")
    kw = llm_kwargs(cfg, "/models/awq", seed=7)
    assert kw == {
        "model": "/models/awq", "tokenizer": "/models/awq", "tensor_parallel_size": 4,
        "gpu_memory_utilization": 0.8, "dtype": "bfloat16", "enforce_eager": False, "seed": 7,
        "max_model_len": 4096, "quantization": "compressed-tensors",
    }
    assert "max_model_len" not in llm_kwargs(VLLMEngineConfig(), "m")
    assert "quantization" not in llm_kwargs(VLLMEngineConfig(), "m")


def test_sampling_kwargs_greedy_and_sampled():
    greedy = sampling_kwargs(GenParams(max_new_tokens=64, top_p=0.5))
    assert greedy == {"max_tokens": 64, "temperature": 0.0, "top_p": 1.0, "seed": 0}
    sampled = sampling_kwargs(GenParams(max_new_tokens=8, temperature=0.7, top_p=0.9, seed=3,
                                        stop=["\n\n"]))
    assert sampled == {"max_tokens": 8, "temperature": 0.7, "top_p": 0.9, "seed": 3, "stop": ["\n\n"]}


def test_refuses_without_cuda(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(MissingDependencyError, match="vLLM engine.*no CUDA.*To resolve"):
        make_engine(EngineConfig(kind="vllm"), str(tmp_path))
