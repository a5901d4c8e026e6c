"""Perplexity of held-out responses, for a HF folder or a GGUF file, on the same token ids.

Both read the chat-formatted example (prompt + response) tokenised by the model's HF tokenizer
(the GGUF carries the same vocabulary, which the export tests prove) and average the negative
log-likelihood of the response tokens only, so the figures of every variant are comparable.
"""

from __future__ import annotations

import math
from typing import Any

from cogumi_ray.errors import ModelError


def response_tokens(tokenizer: Any, rows: list[dict[str, Any]], max_len: int) -> list[tuple[list[int], int]]:
    """(token ids, index of the first response token) per row."""
    from cogumi_ray.models.chat import build_sft_pair, encode_chat

    out = []
    for r in rows:
        prompt, full = build_sft_pair(tokenizer, str(r["instruction"]), str(r["response"]))
        ids = encode_chat(tokenizer, full)[:max_len]
        start = len(encode_chat(tokenizer, prompt))
        if start < len(ids):
            out.append((ids, start))
    if not out:
        raise ModelError("no held-out row leaves room for a response within the context")
    return out


def _log_softmax_at(logits: Any, targets: Any) -> float:
    import numpy as np

    logits = np.asarray(logits, dtype=np.float64)
    m = logits.max(axis=-1, keepdims=True)
    lse = (m + np.log(np.exp(logits - m).sum(axis=-1, keepdims=True)))[:, 0]
    return float((logits[np.arange(len(targets)), targets] - lse).sum())


def hf_perplexity(model_dir: str, seqs: list[tuple[list[int], int]]) -> float:
    import torch

    from cogumi_ray.models.load import load_model_and_tokenizer

    model, _ = load_model_and_tokenizer(model_dir, dtype="float32")
    nll, n = 0.0, 0
    with torch.inference_mode():
        for ids, start in seqs:
            logits = model(torch.tensor([ids])).logits[0, start - 1:-1].numpy()
            nll -= _log_softmax_at(logits, ids[start:])
            n += len(ids) - start
    return math.exp(nll / n)


def gguf_perplexity(gguf: str, seqs: list[tuple[list[int], int]], n_ctx: int = 1024,
                    n_threads: int | None = None) -> float:
    from cogumi_ray.generate.engines.llama_load import open_llama

    llm = open_llama(gguf, n_ctx=n_ctx, logits_all=True, n_threads=n_threads, verbose=False)
    nll, n = 0.0, 0
    try:
        for ids, start in seqs:
            llm.reset()
            llm.eval(ids)
            logits = llm.scores[start - 1:len(ids) - 1]
            nll -= _log_softmax_at(logits, ids[start:])
            n += len(ids) - start
    finally:
        llm.close()
    return math.exp(nll / n)
