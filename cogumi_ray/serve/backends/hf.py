"""transformers + PEFT model server: one base in memory, PEFT adapters loaded once each.

`load_adapter` adds an adapter's LoRA weights next to the base's, `set_adapter` picks one per
request and `disable_adapter()` answers with the base alone, so switching costs nothing. Decoding
is a token loop over the KV cache (not `generate`) so the answer streams as it is produced, with
`generate`'s sampling steps (temperature, top-k 50, top-p) from transformers' own warpers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from cogumi_ray.generate.config import EngineConfig, GenParams
from cogumi_ray.generate.engines.base import EngineError, cut_at_stop
from cogumi_ray.serve.backends.common import final_result, hf_prompt_ids
from cogumi_ray.serve.backends.probe import load_calibrator, require_calibrator
from cogumi_ray.serve.config import ServeConfig
from cogumi_ray.serve.errors import check_context
from cogumi_ray.serve.protocol import GenResult, Prompt
from cogumi_ray.serve.text_stream import DeltaText

log = logging.getLogger(__name__)

TOP_K = 50  # transformers' GenerationConfig default, which the batch HF engine samples with


class HFGenerator:
    def __init__(self, cfg: ServeConfig) -> None:
        from cogumi_ray.generate.engines.hf import HFEngine

        self.engine = HFEngine(EngineConfig(kind="hf", hf=cfg.hf), cfg.base or "")
        self.tokenizer = self.engine.tokenizer
        self.device = self.engine.device
        self.model_name = cfg.served_base_name()
        self.n_ctx = int(getattr(self.engine.model.config, "max_position_embeddings", 0) or 1 << 30)
        self.paths = dict(cfg.adapters)
        self._peft: Any = None  # the PeftModel wrapping the base once an adapter is loaded
        self._lock = threading.Lock()  # PEFT's active adapter is model-wide state
        eos = self.tokenizer.eos_token_id
        self._eos = set(eos if isinstance(eos, list) else [eos])
        self.calibrator = load_calibrator(cfg)

    # adapters

    def load_adapter(self, name: str) -> None:
        with self._lock:
            self._load_locked(name)

    def _load_locked(self, name: str) -> None:
        if self._peft is not None and name in self._peft.peft_config:
            return
        path = self.paths.get(name)
        if path is None:
            raise EngineError(f"no adapter named {name!r}; configured: {sorted(self.paths)}")
        if not os.path.isfile(os.path.join(path, "adapter_config.json")):
            raise EngineError(f"adapter {name!r}: {path!r} is not a PEFT adapter folder "
                              "(adapter_config.json missing); use the modifiers stage's output")
        t0 = time.perf_counter()
        if self._peft is None:
            from peft import PeftModel

            self._peft = PeftModel.from_pretrained(self.engine.model, path, adapter_name=name)
        else:
            self._peft.load_adapter(path, adapter_name=name)
        self._peft.eval()
        log.info("adapter %s loaded in %.1f ms", name, 1000 * (time.perf_counter() - t0))

    def unload_adapter(self, name: str) -> None:
        with self._lock:
            if self._peft is None or name not in self._peft.peft_config:
                return
            if len(self._peft.peft_config) == 1:
                # PEFT cannot delete its last adapter (the model is left without an active
                # config), so drop the LoRA layers and go back to the plain base.
                self.engine.model = self._peft.unload()
                self._peft = None
            else:
                if self._peft.active_adapter == name:  # PEFT would warn and pick one itself
                    self._peft.set_adapter(next(n for n in self._peft.peft_config if n != name))
                self._peft.delete_adapter(name)

    @contextlib.contextmanager
    def _selected(self, adapter: str | None) -> Iterator[Any]:
        if adapter is not None:
            self._load_locked(adapter)
            self._peft.set_adapter(adapter)
            yield self._peft
        elif self._peft is None:
            yield self.engine.model
        else:
            with self._peft.disable_adapter():
                yield self._peft

    # generation

    def prompt_ids(self, prompt: Prompt) -> list[int]:
        return hf_prompt_ids(self.tokenizer, prompt)

    def generate(self, prompt: Prompt, params: GenParams, adapter: str | None) -> GenResult:
        return final_result(self.stream(prompt, params, adapter))

    def _warpers(self, params: GenParams) -> Any:
        from transformers import (
            LogitsProcessorList,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        steps: list[Any] = [TemperatureLogitsWarper(params.temperature), TopKLogitsWarper(TOP_K)]
        if params.top_p < 1.0:
            steps.append(TopPLogitsWarper(params.top_p))
        return LogitsProcessorList(steps)

    def stream(self, prompt: Prompt, params: GenParams, adapter: str | None) -> Iterator[str | GenResult]:
        import torch

        ids = self.prompt_ids(prompt)
        check_context(len(ids), params.max_new_tokens, self.n_ctx, prompt)
        delta = DeltaText(params.stop)
        out: list[int] = []
        hit_eos = False
        with self._lock, self._selected(adapter) as model, torch.inference_mode():
            warp = None if params.greedy else self._warpers(params)
            gen = None if params.greedy else torch.Generator(self.device).manual_seed(params.seed)
            seq = torch.tensor([ids], device=self.device)  # (1, T): the whole sequence so far
            step_in, past = seq, None
            while len(out) < params.max_new_tokens:
                res = model(input_ids=step_in, past_key_values=past, use_cache=True)
                past = res.past_key_values
                logits = res.logits[:, -1, :].float()  # (1, vocab)
                if warp is None:
                    tok = int(logits.argmax(-1))
                else:
                    probs = torch.softmax(warp(seq, logits), dim=-1)
                    tok = int(torch.multinomial(probs, 1, generator=gen))
                out.append(tok)
                if tok in self._eos:
                    hit_eos = True
                    break
                piece = delta.update(self.tokenizer.decode(out, skip_special_tokens=True))
                if piece:
                    yield piece
                if delta.stopped:
                    break
                step_in = torch.tensor([[tok]], device=self.device)
                seq = torch.cat([seq, step_in], dim=1)
        text, hit_stop = cut_at_stop(
            self.tokenizer.decode(out[:-1] if hit_eos else out, skip_special_tokens=True), params.stop)
        rest = delta.finish(text)
        if rest:
            yield rest
        yield GenResult(text, "stop" if hit_eos or hit_stop else "length", len(ids), len(out))

    def base_confidence(self, prompt: Prompt, ks: list[int]) -> list[float]:
        """`ConfidenceProbe`: calibrated confidence after each k of `ks` greedy base tokens, read
        by `calibration.hf_prefix_features`' own greedy loop on the loaded base (adapters off)."""
        import torch

        from cogumi_ray.compress import calibration as cal

        calibrator = require_calibrator(self.calibrator)
        ks = cal._check_ks(ks)
        ids = self.prompt_ids(prompt)
        check_context(len(ids), max(ks), self.n_ctx, prompt)
        eos = cal._hf_eos_ids(self.engine.model, self.tokenizer)
        with self._lock, self._selected(None) as model, torch.inference_mode():
            steps = cal._hf_steps(model, ids, max(ks), eos)
        return calibrator.predict(cal._prefix_rows(steps, ks)).tolist()

    def close(self) -> None:
        with self._lock:
            self._peft = None
            self.engine.close()
