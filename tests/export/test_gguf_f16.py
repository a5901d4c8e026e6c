"""The f16 GGUF decodes greedily like the HF model it came from: the compress stage relies on it
(it does not score dense/F16 and pruned/F16, taking them to answer as the HF folders do)."""

from __future__ import annotations

import numpy as np
import pytest

from cogumi_ray.export.gguf_export import export_gguf

PROMPTS = [
    "What is 48 + 17? Answer with the number only.",
    "Sort the list [9, 0, 3, 3] in ascending order.",
    "Write a Python function add_7(x) that returns x + 7.",
    "What is 5 + 80? Answer with the number only.",
    "Sort the list [4, 1, 8, 2] in ascending order.",
    "Write a Python function add_3(x) that returns x + 3.",
]
GREEDY_STEPS = 24


@pytest.fixture(scope="module")
def hf(tiny_sft_model_dir):
    import torch

    from cogumi_ray.models.load import load_model_and_tokenizer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core box: spinning OpenMP threads cost more than they give
    yield load_model_and_tokenizer(tiny_sft_model_dir, dtype="float32")
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def llm_f16(tiny_sft_model_dir, tmp_path_factory):
    pytest.importorskip("llama_cpp")
    from cogumi_ray.generate.engines.llama_load import open_llama

    path = export_gguf(tiny_sft_model_dir, str(tmp_path_factory.mktemp("gguf") / "tiny-f16.gguf"),
                       outtype="f16").path
    # f32 KV cache (type 0): what is compared is the f16 weights alone
    model = open_llama(path, n_ctx=512, n_threads=1, n_threads_batch=1, logits_all=True,
                       verbose=False, type_k=0, type_v=0)
    yield model
    model.close()


def _hf_greedy(model, ids: list[int], steps: int) -> list[int]:
    import torch

    out = list(ids)
    with torch.no_grad():
        for _ in range(steps):
            out.append(int(model(torch.tensor([out])).logits[0, -1].argmax()))
    return out[len(ids):]


def _llama_greedy(llm, ids: list[int], steps: int) -> list[int]:
    llm.reset()
    llm.eval(ids)
    out = []
    for _ in range(steps):
        nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        out.append(nxt)
        llm.eval([nxt])
    return out


def test_f16_gguf_greedy_tokens_equal_hf(hf, llm_f16):
    from cogumi_ray.models.chat import build_prompt, encode_chat

    model, tok = hf
    for prompt in PROMPTS:
        ids = encode_chat(tok, build_prompt(tok, prompt))
        assert _llama_greedy(llm_f16, ids, GREEDY_STEPS) == _hf_greedy(model, ids, GREEDY_STEPS), \
            prompt
