"""llama.cpp model server: one base GGUF loaded once, LoRA GGUF adapters switched per request.

The base is loaded by the batch engine (`LlamaCppEngine`: same prompt ids, chat template and
sampler settings as `cogumi generate`). Adapters are loaded once each against the base's weights
and made active per request (`generate.engines.llama_lora`, the code the batch engine's
`llama_cpp.lora` uses too), which replaces the context's whole adapter set in microseconds; no
base reload, no second copy of the base.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from cogumi_ray.generate.config import EngineConfig, GenParams
from cogumi_ray.generate.engines.base import EngineError, cut_at_stop
from cogumi_ray.generate.engines.llama_lora import free_lora, load_lora, set_lora
from cogumi_ray.serve.backends.common import final_result
from cogumi_ray.serve.backends.probe import load_calibrator, require_calibrator
from cogumi_ray.serve.config import ServeConfig
from cogumi_ray.serve.errors import check_context
from cogumi_ray.serve.protocol import GenResult, Prompt
from cogumi_ray.serve.text_stream import DeltaText

log = logging.getLogger(__name__)


class LlamaCppGenerator:
    def __init__(self, cfg: ServeConfig) -> None:
        import llama_cpp

        from cogumi_ray.generate.engines.llama_cpp import LlamaCppEngine

        if cfg.llama_cpp.lora:
            raise EngineError(
                f"serve.llama_cpp.lora = {cfg.llama_cpp.lora!r}: the served base carries no fixed "
                "adapter; name each LoRA .gguf in serve.adapters (switched per request) instead"
            )
        self._lc = llama_cpp
        self.engine = LlamaCppEngine(EngineConfig(kind="llama_cpp", llama_cpp=cfg.llama_cpp), cfg.base or "")
        self.llm = self.engine.llm
        threads = cfg.llama_cpp.n_threads or self.llm.n_threads
        # Llama() sizes prompt processing to every core of the machine (n_threads_batch); a replica
        # owns only its share, and ggml threads spin at barriers when they outnumber free cores.
        llama_cpp.llama_set_n_threads(self.llm.ctx, threads, threads)
        self.model_name = cfg.served_base_name()
        self.n_ctx = cfg.llama_cpp.n_ctx
        self.paths = dict(cfg.adapters)
        self._vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self._adapters: dict[str, Any] = {}  # name -> llama_adapter_lora pointer
        self._active: str | None = None
        self._lock = threading.Lock()  # one llama context: one sequence at a time
        self.calibrator = load_calibrator(cfg)

    # adapters

    def load_adapter(self, name: str) -> None:
        with self._lock:
            self._load_locked(name)

    def _load_locked(self, name: str) -> Any:
        if name in self._adapters:
            return self._adapters[name]
        path = self.paths.get(name)
        if path is None:
            raise EngineError(f"no adapter named {name!r}; configured: {sorted(self.paths)}")
        t0 = time.perf_counter()
        ptr = load_lora(self.llm, path, f"serve.adapters.{name}")
        self._adapters[name] = ptr
        log.info("adapter %s loaded in %.1f ms", name, 1000 * (time.perf_counter() - t0))
        return ptr

    def unload_adapter(self, name: str) -> None:
        with self._lock:
            ptr = self._adapters.pop(name, None)
            if ptr is None:
                return
            if self._active == name:
                self._set_active(None)
            free_lora(ptr)

    def _set_active(self, name: str | None) -> None:
        if name == self._active:
            return  # same weights: the cached KV prefix is still valid
        # set_lora also drops the KV cache, computed with the previous adapter
        set_lora(self.llm, None if name is None else self._load_locked(name), 1.0)
        self._active = name

    # generation

    def prompt_ids(self, prompt: Prompt) -> list[int]:
        eng = self.engine
        tok = eng._hf_tokenizer  # set when the HF tokenizer sits beside the GGUF
        if isinstance(prompt, str):  # raw completion: the tokenizer's own specials (BOS) only
            if tok is not None:
                return list(tok(prompt)["input_ids"])
            return self.llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)
        if tok is not None:
            from cogumi_ray.models.chat import build_chat_prompt, encode_chat

            return encode_chat(tok, build_chat_prompt(tok, prompt))
        text = eng._formatter(messages=prompt).prompt
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def generate(self, prompt: Prompt, params: GenParams, adapter: str | None) -> GenResult:
        return final_result(self.stream(prompt, params, adapter))

    def stream(self, prompt: Prompt, params: GenParams, adapter: str | None) -> Iterator[str | GenResult]:
        """The batch engine's decode loop (same sampler), yielding stop-safe text as it grows."""
        ids = self.prompt_ids(prompt)
        check_context(len(ids), params.max_new_tokens, self.n_ctx, prompt)
        with self._lock:
            self._set_active(adapter)
            self.llm.set_seed(params.seed)
            delta = DeltaText(params.stop)
            out: list[int] = []
            hit_eos = False
            for tok in self.llm.generate(ids, top_k=50, top_p=params.top_p, min_p=0.0,
                                         temp=params.temperature, repeat_penalty=1.0, reset=True):
                out.append(tok)
                if self._lc.llama_vocab_is_eog(self._vocab, tok):
                    hit_eos = True  # counted, not shown, as the batch engine does
                    break
                piece = delta.update(self._decode(out))
                if piece:
                    yield piece
                if delta.stopped or len(out) >= params.max_new_tokens:
                    break
            text, hit_stop = cut_at_stop(self._decode(out[:-1] if hit_eos else out), params.stop)
        rest = delta.finish(text)
        if rest:
            yield rest
        reason = "stop" if hit_eos or hit_stop else "length"
        yield GenResult(text, reason, len(ids), len(out))

    def base_confidence(self, prompt: Prompt, ks: list[int]) -> list[float]:
        """`ConfidenceProbe`: calibrated confidence after each k of `ks` greedy base tokens.

        `calibration.gguf_steps`, the decode loop of the router stage's features, on the loaded
        context instead of a second model. The prompt stays in the KV cache, so a base
        answer to the same prompt next skips re-reading it.
        """
        from cogumi_ray.compress import calibration as cal

        calibrator = require_calibrator(self.calibrator)
        ks = cal._check_ks(ks)
        ids = self.prompt_ids(prompt)
        check_context(len(ids), max(ks), self.n_ctx, prompt)
        with self._lock:
            self._set_active(None)
            steps = cal.gguf_steps(self.llm, ids, max(ks))  # the router stage's own decode loop
        return calibrator.predict(cal._prefix_rows(steps, ks)).tolist()

    def _decode(self, tokens: list[int]) -> str:
        return self.llm.detokenize(tokens).decode("utf-8", errors="replace")

    def close(self) -> None:
        with self._lock:
            if self.engine.llm is None:
                return
            self._set_active(None)
            for ptr in self._adapters.values():
                free_lora(ptr)
            self._adapters.clear()
            self.engine.close()
