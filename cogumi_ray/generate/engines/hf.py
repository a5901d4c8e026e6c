"""HF transformers engine: batched, left-padded `generate` on CPU or GPU.

Left padding keeps every prompt's last token at the end of the row, so one batched call gives the
same greedy answers as one-by-one calls (the tests check this).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from cogumi_ray.generate.config import EngineConfig, GenParams
from cogumi_ray.generate.engines.base import Completion, EngineError, cut_at_stop

log = logging.getLogger(__name__)


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        from cogumi_ray.errors import MissingDependencyError

        raise MissingDependencyError(
            f"CUDA device {device!r}", "set generate.engine.hf.device=cpu (or 'auto')", "no GPU found"
        )
    return device


class HFEngine:
    name = "hf"

    def __init__(self, cfg: EngineConfig, model: str) -> None:
        from cogumi_ray.models.load import load_model_and_tokenizer

        self.cfg = cfg.hf
        self.device = _resolve_device(self.cfg.device)
        self.model, self.tokenizer = load_model_and_tokenizer(
            model, dtype=self.cfg.dtype, device=self.device
        )
        self.model.eval()
        self.tokenizer.padding_side = "left"
        self.tokenizer.truncation_side = "left"  # keep the end of an over-long prompt
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model_path = model

    def generate(self, prompts: list[str], params: GenParams) -> list[Completion]:
        out: list[Completion] = []
        for i in range(0, len(prompts), self.cfg.batch_size):
            out.extend(self._generate_batch(prompts[i : i + self.cfg.batch_size], params))
        return out

    def _generation_config(self, params: GenParams) -> Any:
        from transformers import GenerationConfig

        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "do_sample": not params.greedy,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.tokenizer.eos_token_id,
        }
        if not params.greedy:  # setting these with do_sample=False only earns warnings
            kwargs.update(temperature=params.temperature, top_p=params.top_p)
        if params.stop:
            kwargs["stop_strings"] = list(params.stop)
        return GenerationConfig(**kwargs)

    def _generate_batch(self, instructions: list[str], params: GenParams) -> list[Completion]:
        import torch

        from cogumi_ray.models.chat import build_prompt

        texts = [build_prompt(self.tokenizer, ins) for ins in instructions]
        trunc = self.cfg.max_input_tokens is not None
        # The chat template already emits BOS; adding special tokens again would double it.
        enc = self.tokenizer(
            texts, return_tensors="pt", padding=True, add_special_tokens=False,
            truncation=trunc, max_length=self.cfg.max_input_tokens if trunc else None,
        ).to(self.device)
        if not params.greedy:
            torch.manual_seed(params.seed)
        t0 = time.perf_counter()
        try:
            with torch.inference_mode():
                seqs = self.model.generate(
                    **enc, generation_config=self._generation_config(params),
                    tokenizer=self.tokenizer if params.stop else None,
                )
        except RuntimeError as e:
            raise EngineError(f"HF generate failed on {self.model_path}: {e}") from e
        latency = time.perf_counter() - t0
        width = enc["input_ids"].shape[1]  # prompts are left-padded to this width
        prompt_lens = enc["attention_mask"].sum(dim=1).tolist()
        eos = self.tokenizer.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos])
        pad = self.tokenizer.pad_token_id
        out = []
        for row, n_prompt in zip(seqs[:, width:].tolist(), prompt_lens, strict=True):
            n, hit_eos = len(row), False
            for j, tok in enumerate(row):
                if tok in eos_ids:
                    n, hit_eos = j + 1, True
                    break
                if tok == pad:  # a row finished by a stop string is padded to the batch's length
                    n = j
                    break
            text = self.tokenizer.decode(row[:n], skip_special_tokens=True)
            text, hit_stop = cut_at_stop(text, params.stop)
            finished = hit_eos or hit_stop or n < len(row)
            out.append(Completion(text, int(n_prompt), n, latency, "stop" if finished else "length"))
        return out

    def close(self) -> None:
        self.model = None
