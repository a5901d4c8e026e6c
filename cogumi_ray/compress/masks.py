"""Pruning masks held fixed through recovery fine-tuning: zeros stay zero.

The callback re-applies each pruned tensor's mask after every optimizer step (HF Trainer calls
`on_step_end` after the step), so whatever the gradient does, a pruned weight is zero again
before the next forward pass and in every checkpoint.
"""

from __future__ import annotations

from typing import Any

MIN_SPARSITY = 0.05  # a tensor with fewer zeros than this was not pruned (chance zeros only)


def masks_of(model: Any) -> dict[str, Any]:
    """name -> bool mask (True = keep) of every 2-D weight that was pruned."""
    out = {}
    for name, p in model.named_parameters():
        if p.dim() == 2:
            keep = p.detach() != 0
            if 1 - keep.float().mean().item() >= MIN_SPARSITY:
                out[name] = keep
    return out


def violations(model: Any, masks: dict[str, Any]) -> int:
    """Weights that are non-zero where the mask says pruned (0 = the masks held)."""
    params = dict(model.named_parameters())
    return sum(int(((params[n].detach() != 0) & ~m).sum()) for n, m in masks.items() if n in params)


def keep_masks_callback() -> Any:
    """A TrainerCallback (built inside each Ray Train worker) that holds the masks fixed."""
    import torch
    from transformers import TrainerCallback

    class KeepMasks(TrainerCallback):
        def __init__(self) -> None:
            self.masks: dict[str, Any] = {}

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.masks = masks_of(model)

        def on_step_end(self, args, state, control, model=None, **kwargs):
            params = dict(model.named_parameters())
            with torch.no_grad():
                for name, keep in self.masks.items():
                    params[name].mul_(keep.to(params[name].dtype))

    return KeepMasks()
