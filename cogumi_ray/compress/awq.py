"""GPU branch: AWQ + W4A16 with llm-compressor into a compressed-tensors checkpoint.

The checkpoint reloads with plain transformers (compressed-tensors decompresses the packed int4
weights on load) and is what vLLM serves on a GPU. On a CPU-only host llm-compressor's AWQ
still works except for one accelerator assumption, worked around below.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from cogumi_ray.compress.config import AWQConfig
from cogumi_ray.errors import ModelError


@contextlib.contextmanager
def _no_pinning_without_accelerator() -> Iterator[None]:
    """AWQ pins its cached activations for faster host-to-GPU copies before the grid search;
    torch refuses `pin_memory()` when no accelerator exists. Pinning only speeds transfers to a
    device, so on a CPU-only host it is skipped for the duration of the call."""
    import torch
    from llmcompressor.pipelines.cache import IntermediatesCache

    if torch.accelerator.is_available():
        yield
        return
    original = IntermediatesCache.pin_memory
    IntermediatesCache.pin_memory = lambda self, *args, **kwargs: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        IntermediatesCache.pin_memory = original  # type: ignore[method-assign]


def awq_quantize(src: str, dst: str, rows: list[dict[str, Any]], cfg: AWQConfig,
                 max_seq_len: int = 256) -> str:
    """AWQ-smooth then quantise every Linear but lm_head to `cfg.scheme`; returns `dst`."""
    from cogumi_ray.compress.prune import quiet_llmcompressor

    quiet_llmcompressor()
    from llmcompressor import oneshot
    from llmcompressor.modifiers.awq import AWQModifier

    from cogumi_ray.compress.prune import calibration_dataset
    from cogumi_ray.models.load import load_model_and_tokenizer

    if not rows:
        raise ModelError("AWQ needs calibration rows (curated train split is empty)")
    model, tok = load_model_and_tokenizer(src, dtype="float32")
    data = calibration_dataset(tok, rows, max_seq_len)
    recipe = [AWQModifier(ignore=["lm_head"], scheme=cfg.scheme, targets=["Linear"])]
    with _no_pinning_without_accelerator():
        oneshot(model=model, dataset=data, recipe=recipe, num_calibration_samples=len(rows),
                max_seq_length=max_seq_len, shuffle_calibration_samples=False)
    model.save_pretrained(dst, save_compressed=True)
    tok.save_pretrained(dst)
    return dst
