"""Config section for judging (`judge`): the judge, its API settings, throughput, cache and prices."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cogumi_ray.config_base import StrictModel

JUDGES: tuple[str, ...] = ("verifier", "anthropic", "openai", "openai_compatible")

# Model used when `judge.model` is left empty; an OpenAI-compatible endpoint has no sensible default.
DEFAULT_MODELS: dict[str, str] = {"anthropic": "claude-sonnet-4-5", "openai": "gpt-4o-mini"}
# Where each provider's key is read from when `judge.api_key_env` is left empty.
DEFAULT_KEY_ENV: dict[str, str] = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}


class Price(StrictModel):
    """List price of one model, USD per million tokens."""

    input_per_mtok: float = Field(..., ge=0, description="USD per 1M input (prompt) tokens.")
    output_per_mtok: float = Field(..., ge=0, description="USD per 1M output tokens.")


def _default_prices() -> dict[str, Price]:
    # Public list prices (standard tier). Edit in YAML when they change; batch APIs get
    # `batch_discount` on top.
    table = {
        "claude-opus-4-1": (15.0, 75.0),
        "claude-sonnet-4-5": (3.0, 15.0),
        "claude-haiku-4-5": (1.0, 5.0),
        "gpt-4.1": (2.0, 8.0),
        "gpt-4.1-mini": (0.4, 1.6),
        "gpt-4o": (2.5, 10.0),
        "gpt-4o-mini": (0.15, 0.6),
    }
    return {m: Price(input_per_mtok=i, output_per_mtok=o) for m, (i, o) in table.items()}


class JudgeConfig(StrictModel):
    """`cogumi judge`: grade each answer (verifier or LLM judge) on Ray Data.

    Throughput: `concurrency` actors each keep up to `max_in_flight` requests open; `qps` is the
    total request rate over all actors (each actor gets qps / concurrency from its own token bucket,
    so no cross-actor coordination is needed and the sum never exceeds the limit).
    """

    judge: Literal["verifier", "anthropic", "openai", "openai_compatible"] = Field(
        "verifier",
        description="Judge: 'verifier' (task-suite verifiers, numeric match, code execution; no API) "
        "or an LLM judge: 'anthropic', 'openai', 'openai_compatible' (any /v1 endpoint, see base_url).",
    )
    mode: Literal["reference", "pairwise"] = Field(
        "reference",
        description="LLM judges: 'reference' grades the answer against the reference (pass/fail + "
        "1-10 rubric score); 'pairwise' compares it with `other_column` in both orders.",
    )
    input: str | None = Field(
        None, description="Answers to judge (Parquet file/dir/URI); None = the generate stage's output."
    )
    answer_column: str = Field("answer", description="Column holding the answer to judge.")
    reference_column: str = Field("response", description="Column holding the reference answer.")
    other_column: str = Field(
        "response", description="Pairwise: column holding the answer compared against."
    )
    model: str | None = Field(
        None, description="Judge model; None = claude-sonnet-4-5 (anthropic) / gpt-4o-mini (openai)."
    )
    base_url: str | None = Field(
        None, description="API base URL (required for openai_compatible, e.g. http://host:8000/v1)."
    )
    api_key_env: str | None = Field(
        None,
        description="NAME of the environment variable holding the API key (never the key itself); "
        "None = ANTHROPIC_API_KEY / OPENAI_API_KEY; openai_compatible needs none unless set.",
    )
    batch: bool = Field(
        False,
        description="Use the provider's batch API (Anthropic Message Batches / OpenAI Batch): "
        "half price, results within 24h. Each Ray Data batch becomes one API batch.",
    )
    batch_poll_s: float = Field(30.0, gt=0, description="Seconds between batch status polls.")
    batch_max_wait_s: float = Field(
        90000.0, gt=0, description="Give up on an API batch after this long (rows become unjudged)."
    )
    max_tokens: int = Field(512, ge=16, description="Max tokens of one judge reply.")
    temperature: float = Field(
        0.0, ge=0, le=2, description="Judge sampling temperature. Anthropic: sent only where the "
        "API version in effect takes it (before 2026-10-21, see anthropic_version); setting a "
        "non-zero one for a version that rejects it is an error."
    )
    anthropic_version: str | None = Field(
        None, pattern=r"^\d{4}-\d{2}-\d{2}$",
        description="Anthropic judges and teachers: the `anthropic-version` API header; None = the "
        "SDK's default (2023-06-01 for anthropic 1.x, 2026-10-21 for 2.x). Versions before "
        "2026-10-21 take a temperature; 2026-10-21 rejects any sampling parameter.",
    )
    structured_output: Literal["off", "json_schema", "json_object"] = Field(
        "off",
        description="Constrain the reply to the verdict's JSON schema: 'json_schema' = OpenAI "
        "structured outputs (also vLLM, llama.cpp's C++ server) and Anthropic "
        "output_config.format; 'json_object' = {type: json_object, schema} (llama-cpp-python's "
        "server). Servers enforce it with a grammar, so even small judges reply in format.",
    )
    timeout_s: float = Field(60.0, gt=0, description="Per-request HTTP timeout.")
    max_retries: int = Field(
        6, ge=0, description="Retries on 429/5xx/timeouts/connection errors before a row is unjudged."
    )
    backoff_base_s: float = Field(1.0, gt=0, description="First retry delay; doubles each retry.")
    backoff_max_s: float = Field(60.0, gt=0, description="Cap on one retry delay (before jitter).")
    circuit_breaker: int = Field(
        20, ge=0, description="After this many consecutive requests exhaust their retries, "
        "stop sending for circuit_cooldown_s (rows unjudged, a re-run retries them); 0 = off.",
    )
    circuit_cooldown_s: float = Field(
        60.0, gt=0, description="Pause before one request probes whether the API is back."
    )
    max_reasks: int = Field(
        2, ge=0, description="Times a malformed judge reply is re-asked before the row is unjudged."
    )
    qps: float | None = Field(
        None, gt=0, description="Total requests per second over all actors; None = unlimited."
    )
    concurrency: int = Field(2, ge=1, description="Judge actors (Ray Data actor pool size).")
    max_in_flight: int = Field(8, ge=1, description="Concurrent requests per LLM-judge actor.")
    num_cpus_per_actor: float = Field(
        0.5, gt=0, description="CPUs reserved per actor (verifier actors run code in subprocesses)."
    )
    batch_size: int = Field(
        64, ge=1, description="Rows per Ray Data batch (and per API batch when batch=true)."
    )
    cache: bool = Field(True, description="Cache judge replies so a re-run never pays twice.")
    cache_dir: str | None = Field(
        None,
        description="Cache directory (local or shared POSIX path, e.g. NFS on a cluster); "
        "None = <run>/judge/cache. Each actor writes its own SQLite shard; all shards are read.",
    )
    prices: dict[str, Price] = Field(
        default_factory=_default_prices, description="Model -> list price (USD per 1M tokens)."
    )
    batch_discount: float = Field(
        0.5, ge=0, le=1, description="Fraction of the list price charged by the batch APIs."
    )
    sandbox_timeout_s: float = Field(10.0, gt=0, description="Verifier: wall-clock limit per code run.")
    sandbox_memory_mb: int = Field(1024, ge=64, description="Verifier: memory limit per code run.")

    @model_validator(mode="after")
    def _endpoint(self) -> JudgeConfig:
        if self.judge == "openai_compatible":
            if not self.base_url:
                raise ValueError(
                    "judge 'openai_compatible' needs base_url (e.g. http://localhost:8000/v1)"
                )
            if not self.model:
                raise ValueError("judge 'openai_compatible' needs model (the name the server serves)")
            if self.batch:
                raise ValueError(
                    "batch=true needs a provider batch API; use judge 'openai' or 'anthropic'"
                )
        if self.judge == "verifier" and self.mode == "pairwise":
            raise ValueError("mode 'pairwise' needs an LLM judge (anthropic, openai, openai_compatible)")
        return self

    @property
    def model_name(self) -> str:
        """The judge model actually used ('verifier' for the verifier judge)."""
        if self.judge == "verifier":
            return "verifier"
        return self.model or DEFAULT_MODELS[self.judge]

    @property
    def key_env(self) -> str | None:
        return self.api_key_env or DEFAULT_KEY_ENV.get(self.judge)
