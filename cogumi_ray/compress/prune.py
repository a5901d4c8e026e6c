"""One-shot pruning with llm-compressor (SparseGPT or Wanda) per layer group, verified per tensor.

Calibration rows are chat-formatted exactly as in training (prompt + answer), so the Hessian
statistics see the activations the model really serves. lm_head is excluded by name; what each
group's regex matches is checked afterwards (a pattern that matches nothing would otherwise
leave a group dense without a word).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

from cogumi_ray.compress.config import PruneConfig
from cogumi_ray.errors import ModelError

log = logging.getLogger(__name__)

GROUP_TARGETS = {
    "attention": r"re:.*self_attn\.(q|k|v|o)_proj$",
    "mlp": r"re:.*mlp\.(gate|up|down)_proj$",
}
_TOLERANCE = 0.01  # achieved share of zeros may fall this short of the target (N:M rounding)


@dataclass
class PruneReport:
    method: str
    targets: dict[str, float]  # group -> requested sparsity
    per_tensor: dict[str, float]  # weight name -> achieved share of zeros
    groups: dict[str, float] = field(default_factory=dict)  # group -> achieved (weighted)
    overall: float = 0.0  # zeros / all parameters
    seconds: float = 0.0

    def metrics(self) -> dict[str, Any]:
        return {"prune_method": self.method, "prune_seconds": round(self.seconds, 2),
                "sparsity_overall": round(self.overall, 4),
                **{f"sparsity_{g}": round(v, 4) for g, v in self.groups.items()}}


def group_of(name: str) -> str | None:
    """The layer group a parameter belongs to (None: never pruned, e.g. norms and lm_head)."""
    if name.endswith("embed_tokens.weight"):
        return "embeddings"
    for group, pattern in GROUP_TARGETS.items():
        module = name.removesuffix(".weight")
        if name.endswith(".weight") and re.match(pattern.removeprefix("re:"), module):
            return group
    return None


def quiet_llmcompressor() -> None:
    """llm-compressor logs every layer's error at INFO to the console (hundreds of lines per
    run); keep warnings unless the user asked for its level. Must run before its first import."""
    import os

    os.environ.setdefault("LLM_COMPRESSOR_LOG_LEVEL", "WARNING")


def calibration_dataset(tokenizer: Any, rows: list[dict[str, Any]], max_seq_len: int) -> Any:
    """A `datasets.Dataset` of token ids, one chat-formatted training example per row."""
    from datasets import Dataset

    from cogumi_ray.models.chat import build_sft_pair, encode_chat

    ids = []
    for r in rows:
        _, full = build_sft_pair(tokenizer, str(r["instruction"]), str(r["response"]))
        ids.append(encode_chat(tokenizer, full)[:max_seq_len])
    return Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * len(x) for x in ids]})


def _modifiers(cfg: PruneConfig) -> list[Any]:
    if cfg.method == "sparsegpt":
        from llmcompressor.modifiers.pruning import SparseGPTModifier as Modifier
    else:
        from llmcompressor.modifiers.pruning import WandaPruningModifier as Modifier
    out = []
    for group, target in GROUP_TARGETS.items():
        sparsity = getattr(cfg.sparsity, group)
        if sparsity > 0:
            out.append(Modifier(sparsity=sparsity, mask_structure=cfg.mask_structure,
                                targets=[target], ignore=["lm_head"]))
    return out


def _magnitude_prune_(weight: Any, sparsity: float) -> None:
    """Zero the smallest-|w| share of a tensor in place (embeddings: not a Linear for SparseGPT)."""
    import torch

    k = int(weight.numel() * sparsity)
    if k:
        threshold = torch.kthvalue(weight.detach().abs().flatten().float(), k).values
        weight.data[weight.detach().abs() <= threshold] = 0


def measure(model: Any, cfg: PruneConfig) -> PruneReport:
    """Achieved sparsity of every prunable tensor, per group and overall."""
    per, zeros, sizes = {}, {}, {}
    total = total_zero = 0
    for name, p in model.named_parameters():
        z = int((p.detach() == 0).sum())
        total, total_zero = total + p.numel(), total_zero + z
        group = group_of(name)
        if group is not None:
            per[name] = z / p.numel()
            zeros[group] = zeros.get(group, 0) + z
            sizes[group] = sizes.get(group, 0) + p.numel()
    targets = {g: getattr(cfg.sparsity, g) for g in ("attention", "mlp", "embeddings")}
    return PruneReport(cfg.method, targets, per, {g: zeros[g] / sizes[g] for g in sizes},
                       total_zero / max(1, total))


def check(report: PruneReport, tied: bool) -> None:
    """Every tensor of a pruned group reached its target (else the recipe did not apply)."""
    short = []
    for name, achieved in report.per_tensor.items():
        group = group_of(name)
        want = 0.0 if group == "embeddings" and tied else report.targets.get(group or "", 0.0)
        if want and achieved < want - _TOLERANCE:
            short.append(f"{name}: {achieved:.3f} < {want:.2f}")
    if short:
        raise ModelError("pruning did not reach the requested sparsity for: " + "; ".join(short))


def prune_model(src: str, dst: str, rows: list[dict[str, Any]], cfg: PruneConfig) -> PruneReport:
    """Prune the HF folder `src` into `dst` (a dense HF folder with zeros) and verify it."""
    quiet_llmcompressor()
    from llmcompressor import oneshot

    from cogumi_ray.models.load import load_model_and_tokenizer

    if not rows:
        raise ModelError("pruning needs calibration rows (curated train split is empty)")
    t0 = time.perf_counter()
    model, tok = load_model_and_tokenizer(src, dtype="float32")
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    mods = _modifiers(cfg)
    if mods:
        data = calibration_dataset(tok, rows, cfg.max_seq_len)
        # llm-compressor warns and falls back to CPU without an accelerator: nothing to work
        # around for SparseGPT/Wanda, whose sequential pipeline runs on the model's device.
        oneshot(model=model, dataset=data, recipe=mods, num_calibration_samples=len(rows),
                max_seq_length=cfg.max_seq_len, shuffle_calibration_samples=False)
    if cfg.sparsity.embeddings > 0:
        if tied:
            log.warning("prune: lm_head is tied to the embeddings; embeddings stay dense")
        else:
            _magnitude_prune_(model.get_input_embeddings().weight, cfg.sparsity.embeddings)
    report = measure(model, cfg)
    check(report, tied)
    # Dense safetensors with zeros (not compressed-tensors' sparse format): the GGUF exporter,
    # the trainer and every engine read it as a plain HF folder.
    model.save_pretrained(dst, save_compressed=False)
    tok.save_pretrained(dst)
    report.seconds = time.perf_counter() - t0
    log.info("prune: %s", report.metrics())
    return report
