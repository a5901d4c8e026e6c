"""llama.cpp engine: a GGUF file through llama-cpp-python, prompts built exactly as in training.

We build the prompt token ids ourselves rather than letting llama.cpp pick a chat handler: with the
model's HF tokenizer beside the GGUF (the exporter writes it there) the ids are the ones training
saw; without one, the GGUF's embedded Jinja chat template is rendered and tokenized by llama.cpp.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from cogumi_ray.generate.config import EngineConfig, GenParams
from cogumi_ray.generate.engines.base import Completion, EngineError, cut_at_stop

log = logging.getLogger(__name__)

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
_LORA_SETTING = "generate.engine.llama_cpp.lora"


def _find_tokenizer_dir(gguf: str, explicit: str | None) -> str | None:
    if explicit:
        if not os.path.isdir(explicit):
            raise EngineError(
                f"generate.engine.llama_cpp.tokenizer = {explicit!r} is not a directory; "
                "point it at the HF model folder the GGUF was exported from, or set it to null"
            )
        return explicit
    folder = os.path.dirname(os.path.abspath(gguf))
    return folder if any(os.path.isfile(os.path.join(folder, f)) for f in _TOKENIZER_FILES) else None


class LlamaCppEngine:
    name = "llama_cpp"

    def __init__(self, cfg: EngineConfig, model: str) -> None:
        from cogumi_ray.generate.engines.llama_load import open_llama
        from cogumi_ray.generate.engines.llama_lora import check_lora_file

        if not os.path.isfile(model):
            raise EngineError(
                f"GGUF file {model!r} does not exist; set generate.engine.model to a .gguf file "
                "(e.g. the compress stage's output)"
            )
        self.cfg = cfg.llama_cpp
        self._lora: Any = None  # llama_adapter_lora pointer while llama_cpp.lora is applied
        if self.cfg.lora:
            check_lora_file(self.cfg.lora, _LORA_SETTING)  # before the base is read
        try:
            self.llm = open_llama(
                model, n_ctx=self.cfg.n_ctx, n_threads=self.cfg.n_threads,
                n_gpu_layers=self.cfg.n_gpu_layers, verbose=False,
            )
        except (ValueError, RuntimeError) as e:
            raise EngineError(f"llama.cpp cannot load {model!r}: {e}") from e
        self.model_path = model
        if self.cfg.lora:
            self._apply_lora(self.cfg.lora)
        self._hf_tokenizer: Any = None
        self._formatter: Any = None
        tok_dir = _find_tokenizer_dir(model, self.cfg.tokenizer)
        if tok_dir:
            from transformers import AutoTokenizer

            self._hf_tokenizer = AutoTokenizer.from_pretrained(tok_dir)
        else:
            self._formatter = self._embedded_formatter()

    def _apply_lora(self, path: str) -> None:
        from cogumi_ray.generate.engines.llama_lora import load_lora, set_lora

        try:
            self._lora = load_lora(self.llm, path, _LORA_SETTING)
            set_lora(self.llm, self._lora, 1.0)
        except EngineError:
            self.close()
            raise
        log.info("llama.cpp: LoRA adapter %s on %s", path, self.model_path)

    def _embedded_formatter(self) -> Any:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise EngineError(
                f"{self.model_path!r} has no embedded chat template and no HF tokenizer beside it; "
                "set generate.engine.llama_cpp.tokenizer to the HF folder it was exported from"
            )
        detok = self.llm.detokenize
        return Jinja2ChatFormatter(
            template,
            eos_token=detok([self.llm.token_eos()], special=True).decode("utf-8", "replace"),
            bos_token=detok([self.llm.token_bos()], special=True).decode("utf-8", "replace"),
            add_generation_prompt=True,
        )

    def prompt_ids(self, instruction: str) -> list[int]:
        """The token ids fed to llama.cpp for one instruction (chat template applied)."""
        if self._hf_tokenizer is not None:
            from cogumi_ray.models.chat import build_prompt

            text = build_prompt(self._hf_tokenizer, instruction)
            # The template emits BOS itself, as in training; don't add a second one.
            return list(self._hf_tokenizer(text, add_special_tokens=False)["input_ids"])
        text = self._formatter(messages=[{"role": "user", "content": instruction}]).prompt
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def generate(self, prompts: list[str], params: GenParams) -> list[Completion]:
        return [self._one(p, params) for p in prompts]  # the high-level API serves one sequence

    def _one(self, instruction: str, params: GenParams) -> Completion:
        """Our own decode loop over `Llama.generate` rather than `create_completion`, whose
        UTF-8 repair can run past max_tokens: counts and stops here match the HF engine's."""
        import llama_cpp

        ids = self.prompt_ids(instruction)
        if len(ids) + params.max_new_tokens > self.cfg.n_ctx:
            raise EngineError(
                f"prompt ({len(ids)} tokens) + max_new_tokens ({params.max_new_tokens}) exceed "
                f"n_ctx {self.cfg.n_ctx}; raise generate.engine.llama_cpp.n_ctx"
            )
        vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self.llm.set_seed(params.seed)
        out: list[int] = []
        hit_eos = hit_stop = False
        t0 = time.perf_counter()
        # llama.cpp's sampler defaults (top_k 40, min_p 0.05) would make sampling differ from the
        # HF engine's; use HF's (top_k 50, no min_p, no repetition penalty).
        for tok in self.llm.generate(ids, top_k=50, top_p=params.top_p, min_p=0.0,
                                     temp=params.temperature, repeat_penalty=1.0, reset=True):
            out.append(tok)
            if llama_cpp.llama_vocab_is_eog(vocab, tok):
                hit_eos = True  # counted, not shown: as the HF engine does with EOS
                break
            if params.stop and cut_at_stop(self._decode(out), params.stop)[1]:
                hit_stop = True
                break
            if len(out) >= params.max_new_tokens:
                break
        latency = time.perf_counter() - t0
        text, _ = cut_at_stop(self._decode(out[:-1] if hit_eos else out), params.stop)
        reason = "stop" if hit_eos or hit_stop else "length"
        return Completion(text, len(ids), len(out), latency, reason)

    def _decode(self, tokens: list[int]) -> str:
        # Invalid UTF-8 (a byte-level model mid-character) decodes to U+FFFD, as HF's decode does.
        return self.llm.detokenize(tokens).decode("utf-8", errors="replace")

    def close(self) -> None:
        if getattr(self, "llm", None) is None:
            return
        if self._lora is not None:
            from cogumi_ray.generate.engines.llama_lora import free_lora, set_lora

            set_lora(self.llm, None)
            free_lora(self._lora)
            self._lora = None
        self.llm.close()
        self.llm = None
