"""Config section for `cogumi serve`: the OpenAI-compatible Ray Serve graph and its limits.

The model blocks (`llama_cpp`, `hf`, `vllm`) are the generation engines' own, so a GGUF or HF folder
that works with `cogumi generate` serves with the same settings.
"""

from __future__ import annotations

import os
import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from cogumi_ray.config_base import StrictModel
from cogumi_ray.generate.config import HFEngineConfig, LlamaCppEngineConfig, VLLMEngineConfig
from cogumi_ray.route.config import MemoryConfig

BackendKind = Literal["llama_cpp", "hf", "vllm"]
# vLLM's LoRAConfig.max_lora_rank accepts only these (vllm/config/lora.py, MaxLoRARanks).
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
# Names a client can put after "cogumi:"; "base" and "cogumi" are taken by the routing policy.
_ADAPTER_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
RESERVED_NAMES = ("base", "cogumi")


class RateLimitConfig(StrictModel):
    """Token bucket per API key (per client address when no keys are configured)."""

    requests_per_minute: float | None = Field(
        None, gt=0, description="Sustained requests per minute per key; None = no rate limit."
    )
    burst: int = Field(10, ge=1, description="Requests a key may make at once before the rate applies.")
    max_keys: int = Field(
        10_000, ge=1, description="Buckets kept (least recently used dropped): bounds memory."
    )


class LimitsConfig(StrictModel):
    """Request limits checked before any model work (413 for the body, 400 for the rest)."""

    max_body_bytes: int = Field(1 << 20, ge=1024, description="Largest request body (bytes).")
    max_prompt_chars: int = Field(
        32_000, ge=1, description="Most characters over all messages / prompts of one request."
    )
    max_tokens: int = Field(1024, ge=1, description="Largest max_tokens a client may ask for.")
    default_max_tokens: int = Field(256, ge=1, description="max_tokens when a request sets none.")
    max_n: int = Field(4, ge=1, description="Most choices (n) per request.")

    @model_validator(mode="after")
    def _default_within_max(self) -> LimitsConfig:
        if self.default_max_tokens > self.max_tokens:
            raise ValueError(
                f"default_max_tokens {self.default_max_tokens} exceeds max_tokens {self.max_tokens}"
            )
        return self


class AutoscalingConfig(StrictModel):
    min_replicas: int = Field(1, ge=0, description="Fewest replicas (0 = scale to zero when idle).")
    max_replicas: int = Field(2, ge=1, description="Most replicas.")
    target_ongoing_requests: float = Field(
        2.0, gt=0, description="Requests in flight per replica that Serve scales towards."
    )


class DeploymentConfig(StrictModel):
    """How many replicas of one deployment run, and what each reserves."""

    num_replicas: int = Field(1, ge=1, description="Fixed replica count (ignored with autoscaling).")
    autoscaling: AutoscalingConfig | None = Field(None, description="Scale on load instead.")
    num_cpus: float = Field(1.0, ge=0, description="CPUs each replica reserves.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs each replica reserves.")
    max_ongoing_requests: int = Field(
        16, ge=1, description="Requests one replica accepts at once; more wait in the caller's queue."
    )
    graceful_shutdown_timeout_s: float = Field(
        60.0, ge=0, description="A stopping replica (scale-down, redeploy, `serve shutdown`) takes "
        "no new requests and waits this long for the ones in flight before it is killed: long "
        "enough for a max_tokens generation on CPU."
    )
    graceful_shutdown_wait_loop_s: float = Field(
        1.0, gt=0, description="How often a draining replica checks for requests still in flight."
    )

    def options(self) -> dict[str, Any]:
        """Keyword arguments for `Deployment.options(...)`."""
        out: dict[str, Any] = {
            "ray_actor_options": {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus},
            "max_ongoing_requests": self.max_ongoing_requests,
            "graceful_shutdown_timeout_s": self.graceful_shutdown_timeout_s,
            "graceful_shutdown_wait_loop_s": self.graceful_shutdown_wait_loop_s,
        }
        if self.autoscaling is not None:
            out["autoscaling_config"] = self.autoscaling.model_dump()
        else:
            out["num_replicas"] = self.num_replicas
        return out


class VLLMServeConfig(VLLMEngineConfig):
    """The vLLM engine block of `cogumi generate`, plus multi-LoRA sizing for serving."""

    max_lora_rank: int | None = Field(
        None, description="vLLM's max_lora_rank; None = the smallest vLLM accepts "
        f"{list(VLLM_LORA_RANKS)} that holds every adapter's rank (read from adapter_config.json)."
    )
    max_loras: int | None = Field(
        None, ge=1, description="Adapters one batch may mix on the GPU; None = "
        "max_adapters_per_replica (at most the number of adapters)."
    )

    @field_validator("max_lora_rank")
    @classmethod
    def _vllm_rank(cls, v: int | None) -> int | None:
        if v is not None and v not in VLLM_LORA_RANKS:
            raise ValueError(f"max_lora_rank {v} is not one vLLM accepts; use one of {list(VLLM_LORA_RANKS)}")
        return v


def _light(num_cpus: float) -> DeploymentConfig:
    # The ingress and router only parse and forward: a sliver of a CPU, many requests at once.
    return DeploymentConfig(num_cpus=num_cpus, max_ongoing_requests=256)


class ServeConfig(StrictModel):
    """`cogumi serve`: ingress -> router -> one base model with hot-swapped LoRA modifiers."""

    host: str = Field(
        "127.0.0.1", description="Address the HTTP proxy listens on (used by `app.start`; "
        "`serve run` takes Serve's own http_options)."
    )
    port: int = Field(8000, ge=1, le=65535, description="HTTP port (as host).")
    app_name: str = Field("cogumi", description="Ray Serve application name.")
    route_prefix: str = Field("/", description="URL prefix of the application.")
    backend: BackendKind = Field(
        "llama_cpp", description="Model server: llama_cpp (a GGUF, CPU/edge), hf (transformers+PEFT) "
        "or vllm (GPU: vLLM's async engine, PEFT adapters as multi-LoRA)."
    )
    base: str | None = Field(
        None, description="The base model: a .gguf file (llama_cpp) or HF folder (hf, vllm); None = "
        "the pipeline's upstream model (set by the caller)."
    )
    base_name: str | None = Field(
        None, description="Model id the base answers to; None = the file or folder name."
    )
    adapters: dict[str, str] = Field(
        default_factory=dict,
        description="Modifier name -> adapter: a LoRA .gguf (llama_cpp) or PEFT folder (hf, vllm). "
        "Clients pick one with model='cogumi:<name>' or model='<name>'.",
    )
    max_adapters_per_replica: int = Field(
        4, ge=1, description="Adapters one model replica keeps loaded, least recently used evicted "
        "(the base is always loaded and takes no slot)."
    )
    policy: Literal["names", "learned"] = Field(
        "names", description="Routing policy: 'names' (model='cogumi' -> base; a modifier by "
        "name) or 'learned' (the router stage's router decides for model='cogumi'; forced names "
        "still force).",
    )
    router_path: str | None = Field(
        None, description="The router stage's saved router folder (policy 'learned')."
    )
    sessions_path: str | None = Field(
        None, description="SQLite session store the router replicas share (None = no memory)."
    )
    direct_forced: bool = Field(
        True, description="A request that names its option (a modifier or the base) goes from the "
        "Ingress straight to the Generator, one hop fewer; a Router that keeps sessions records "
        "its turn meanwhile. False = every request passes the Router."
    )
    calibrator_path: str | None = Field(
        None, description="The compress stage's calibrator.json: with it, a progressive learned "
        "router trained with the feature base_confidence reads the base's calibrated confidence "
        "after each step (one greedy probe of max(steps) base tokens per routed request; "
        "backends llama_cpp and hf). None = that feature stays at its training mean."
    )
    session_memory: MemoryConfig = Field(
        default_factory=MemoryConfig,
        description="How the session store at sessions_path keeps turns (max_turns, ttl_s, "
        "expire_every_s, lock retries); `cogumi serve` copies the run's route.memory. Its path is "
        "unused here: sessions_path names the file.",
    )
    llama_cpp: LlamaCppEngineConfig = Field(
        default_factory=LlamaCppEngineConfig,
        description="llama.cpp settings (n_threads None = the generator replica's num_cpus).",
    )
    hf: HFEngineConfig = Field(default_factory=HFEngineConfig, description="transformers settings.")
    vllm: VLLMServeConfig = Field(
        default_factory=VLLMServeConfig, description="vLLM settings (backend vllm, on GPU replicas)."
    )
    api_keys: list[str] = Field(
        default_factory=list, description="Accepted Bearer keys (prefer api_key_env for secrets)."
    )
    api_key_env: str | None = Field(
        "COGUMI_API_KEYS",
        description="NAME of an environment variable holding comma-separated keys, added to "
        "api_keys. No keys at all = no authentication.",
    )
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig, description="Per-key rate.")
    limits: LimitsConfig = Field(default_factory=LimitsConfig, description="Request size limits.")
    request_timeout_s: float = Field(120.0, gt=0, description="Longest a request may take (504 after).")
    ingress: DeploymentConfig = Field(
        default_factory=lambda: _light(0.1),
        description="The HTTP deployment (rate-limit buckets are per ingress replica).",
    )
    router: DeploymentConfig = Field(
        default_factory=lambda: _light(0.1), description="The routing-policy deployment."
    )
    generator: DeploymentConfig = Field(
        default_factory=DeploymentConfig,
        description="The model deployment: each replica loads the base once.",
    )

    @property
    def router_keeps_sessions(self) -> bool:
        """Whether the Router records turns (a forced turn is still its session's last turn)."""
        return self.policy == "learned" and bool(self.sessions_path)

    @field_validator("adapters")
    @classmethod
    def _adapter_names(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [n for n in v if not _ADAPTER_NAME.match(n) or n in RESERVED_NAMES]
        if bad:
            raise ValueError(
                f"adapter names {bad} are not usable; use lower-case letters, digits, '_', '-', "
                f"'.' (not {list(RESERVED_NAMES)})"
            )
        return v

    @model_validator(mode="after")
    def _base_name_free(self) -> ServeConfig:
        if self.base_name is not None and (
            self.base_name in self.adapters or self.base_name.startswith("cogumi")
        ):
            raise ValueError(f"base_name {self.base_name!r} clashes with a modifier or 'cogumi' name")
        return self

    @model_validator(mode="after")
    def _vllm_fits(self) -> ServeConfig:
        if self.backend != "vllm":
            return self
        paths = {"base": self.base or "", **{f"adapters.{n}": p for n, p in self.adapters.items()}}
        ggufs = [f"{key} = {path!r}" for key, path in paths.items() if path.endswith(".gguf")]
        if ggufs:
            raise ValueError(
                f"backend 'vllm' serves an HF model folder with PEFT adapter folders, not GGUF "
                f"files ({', '.join(ggufs)}); point them at the run's HF base (distill/model or "
                "train_base/model) and modifiers/adapters/<domain>/, or use backend 'llama_cpp'"
            )
        gpus, tp = self.generator.num_gpus, self.vllm.tensor_parallel_size
        if gpus <= 0 or (tp > 1 and gpus < tp):
            raise ValueError(
                f"backend 'vllm' needs GPUs in each Generator replica: generator.num_gpus is {gpus} "
                f"with vllm.tensor_parallel_size {tp}; set generator.num_gpus to {max(tp, 1)} "
                "(or a fraction of one GPU with a matching vllm.gpu_memory_utilization)"
            )
        return self

    def served_base_name(self) -> str:
        if self.base_name:
            return self.base_name
        if not self.base:
            return "base"
        stem = os.path.basename(os.path.normpath(self.base))
        return stem[: -len(".gguf")] if stem.endswith(".gguf") else stem

    def resolved_api_keys(self) -> frozenset[str]:
        """api_keys plus those in $api_key_env, read in the calling process (the driver)."""
        keys = set(self.api_keys)
        if self.api_key_env:
            keys.update(k.strip() for k in os.environ.get(self.api_key_env, "").split(",") if k.strip())
        return frozenset(keys)


def serve_config_from_args(args: dict[str, Any]) -> ServeConfig:
    """A ServeConfig from `serve run ... key=value` arguments (or a Python dict).

    `config=FILE` names a YAML file: a ServeConfig mapping, or a pipeline config whose `serve:`
    section is used. Other keys are dotted overrides (`adapters.code=code.gguf`); string values
    are read as YAML scalars, as `cogumi --set` reads them.
    """
    import yaml
    from pydantic import ValidationError

    from cogumi_ray.config import format_errors
    from cogumi_ray.errors import ConfigError

    args = dict(args)
    data: dict[str, Any] = {}
    source = "<serve args>"
    path = args.pop("config", None)
    if path:
        source = str(path)
        if not os.path.isfile(source):
            raise ConfigError(f"serve config file {source} does not exist")
        with open(source) as fh:
            loaded = yaml.safe_load(fh) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"invalid config in {source}: top level must be a mapping")
        data = loaded.get("serve", loaded) or {}
    for dotted, value in args.items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {dotted!r}: {key!r} is not a section")
        node[leaf] = yaml.safe_load(value) if isinstance(value, str) else value
    try:
        return ServeConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_errors(e, source)) from None
