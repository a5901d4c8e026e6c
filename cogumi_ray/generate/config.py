"""Config sections for generation engines, generation parameters and `cogumi generate`.

`EngineConfig` is shared: batch generation, the evaluation harness and the judges' self-critique all
build their engine from one, so a YAML block that works in one place works everywhere.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from cogumi_ray.config_base import StrictModel

EngineKind = Literal["hf", "llama_cpp", "openai", "vllm"]


class GenParams(StrictModel):
    """Sampling parameters for one generate call. temperature 0 = greedy (the default)."""

    max_new_tokens: int = Field(128, ge=1, description="Most tokens generated per answer.")
    temperature: float = Field(0.0, ge=0, description="0 = greedy decoding; >0 samples.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass (sampling only).")
    stop: list[str] = Field(
        default_factory=list, description="Strings that end an answer (not included in it)."
    )
    seed: int = Field(0, description="Sampling seed (same seed + same batch -> same answers).")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


class HFEngineConfig(StrictModel):
    device: str = Field("cpu", description="'cpu', 'cuda', 'cuda:1' or 'auto' (cuda if available).")
    dtype: str = Field("auto", description="'auto', 'float32', 'bfloat16' or 'float16'.")
    batch_size: int = Field(8, ge=1, description="Prompts per forward pass (left-padded).")
    max_input_tokens: int | None = Field(
        None, ge=1, description="Keep only the last N prompt tokens; None = no truncation."
    )


class LlamaCppEngineConfig(StrictModel):
    n_ctx: int = Field(2048, ge=64, description="Context window (prompt + answer tokens).")
    n_threads: int | None = Field(None, ge=1, description="CPU threads; None = llama.cpp's choice.")
    n_gpu_layers: int = Field(0, description="Layers offloaded to GPU (-1 = all); 0 on CPU builds.")
    tokenizer: str | None = Field(
        None,
        description="HF folder whose tokenizer + chat template build the prompt (exactly as in "
        "training). None = the GGUF's folder if it holds a tokenizer, else the GGUF's embedded "
        "chat template.",
    )
    lora: str | None = Field(
        None,
        description="A LoRA .gguf exported for this base (e.g. the modifiers stage's "
        "adapters/<domain>.gguf), applied at scale 1.0 on top of the GGUF (f16 or K-quant), so "
        "base + adapter is scored as one model. None = the base alone. Batch engine only: "
        "`cogumi serve` switches adapters per request from serve.adapters.",
    )


class OpenAIEngineConfig(StrictModel):
    base_url: str = Field("http://127.0.0.1:8000/v1", description="OpenAI-compatible base URL.")
    api_key_env: str = Field(
        "OPENAI_API_KEY",
        description="NAME of the environment variable holding the API key (never the key itself). "
        "Local endpoints without one get a placeholder key.",
    )
    model: str | None = Field(
        None, description="Served model name; None = the first model the endpoint lists."
    )
    timeout_s: float = Field(60.0, gt=0, description="Per-request timeout.")
    max_retries: int = Field(
        3, ge=0, description="SDK retries (exponential backoff) on 429/5xx/timeouts/connection errors."
    )
    concurrency: int = Field(4, ge=1, description="Requests in flight per engine (threads).")
    extra_body: dict[str, Any] = Field(
        default_factory=dict,
        description="Server-specific request fields sent as-is, e.g. {repeat_penalty: 1.0} for "
        "llama.cpp's server (whose default is 1.1) or {top_k: 50} for vLLM.",
    )


class VLLMEngineConfig(StrictModel):
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one model is sharded across.")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="Share of GPU memory vLLM may use.")
    max_model_len: int | None = Field(None, ge=64, description="Context length; None = model's own.")
    dtype: str = Field("auto", description="vLLM dtype ('auto', 'bfloat16', 'float16').")
    quantization: str | None = Field(
        None, description="e.g. 'compressed-tensors' for AWQ W4A16 output; None = detect."
    )
    enforce_eager: bool = Field(False, description="Disable CUDA graphs (faster start, slower decode).")


class EngineConfig(StrictModel):
    """Which engine answers, and its per-engine settings (only the chosen kind's block is used)."""

    kind: EngineKind = Field("hf", description="Engine: hf, llama_cpp, openai or vllm.")
    model: str | None = Field(
        None,
        description="HF folder (hf, vllm), GGUF file (llama_cpp); None = the pipeline's upstream "
        "model. Ignored by openai (see openai.model).",
    )
    hf: HFEngineConfig = Field(default_factory=HFEngineConfig)
    llama_cpp: LlamaCppEngineConfig = Field(default_factory=LlamaCppEngineConfig)
    openai: OpenAIEngineConfig = Field(default_factory=OpenAIEngineConfig)
    vllm: VLLMEngineConfig = Field(default_factory=VLLMEngineConfig)


class GenerateConfig(StrictModel):
    """`cogumi generate`: a model's answers over a dataset split, on Ray Data."""

    engine: EngineConfig = Field(default_factory=EngineConfig)
    params: GenParams = Field(default_factory=GenParams)
    split: str = Field(
        "train",
        description="Curated split to answer: 'train' (default: mining the base's failures for "
        "distillation and modifiers; held-out rows never feed training), 'val' or 'test'.",
    )
    data: str | None = Field(
        None, description="Parquet/JSONL file or dir of Examples; None = the curated `split`."
    )
    limit: int | None = Field(
        1000, ge=1, description="Answer at most N rows, a seeded random sample of the split "
        "(enough to mine failures per domain; None = every row)."
    )
    concurrency: int = Field(1, ge=1, description="Engine actors (each holds one model replica).")
    batch_size: int = Field(16, ge=1, description="Rows per actor call (Ray Data batch).")
    num_cpus_per_actor: float = Field(1.0, ge=0, description="CPUs reserved per engine actor.")
    num_gpus_per_actor: float = Field(0.0, ge=0, description="GPUs per engine actor (vLLM/HF on GPU).")
