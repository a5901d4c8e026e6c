"""Config section for the evaluation harness (`cogumi eval`, and the suite scoring of `eval_base`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, field_validator

from cogumi_ray.config_base import StrictModel
from cogumi_ray.generate.config import EngineConfig, GenParams

Benchmark = Literal["humaneval", "gsm8k", "suite"]
BENCHMARKS: tuple[str, ...] = ("humaneval", "gsm8k", "suite")

HUMANEVAL_INSTRUCTION = (
    "Complete the following Python function. Reply with the whole function in a ```python "
    "code block.\n\n```python\n{prompt}```"
)
GSM8K_INSTRUCTION = (
    "{question}\nSolve the problem step by step, then give the final answer on the last line "
    "as '#### <number>'."
)


class EvalConfig(StrictModel):
    """`cogumi eval`: any engine over benchmark files, with quality gates."""

    engine: EngineConfig | None = Field(
        None, description="Engine to evaluate; None = the same as generate.engine."
    )
    params: GenParams = Field(
        default_factory=lambda: GenParams(max_new_tokens=256),
        description="Decoding for benchmark answers (greedy by default).",
    )
    benchmarks: list[Benchmark] = Field(
        default_factory=lambda: list(BENCHMARKS), description="Which benchmarks to run, in order."
    )
    benchmarks_dir: str = Field(
        "../shared/data/benchmarks",
        description="Folder of humaneval.jsonl and gsm8k_test.jsonl; a relative path is resolved "
        "against the current directory, then against the repository root.",
    )
    humaneval_file: str = Field("humaneval.jsonl", description="HumanEval file in benchmarks_dir.")
    gsm8k_file: str = Field("gsm8k_test.jsonl", description="GSM8K test file in benchmarks_dir.")
    suite_split: str = Field("test", description="Curated split scored as the task suite.")
    limit: dict[Benchmark, PositiveInt] = Field(
        # The embedded default's tiny model scores ~0 on HumanEval/GSM8K and answers at CPU speed:
        # a sample shows the harness working in a minute. Cluster configs set `limit: {}`.
        default_factory=lambda: {"humaneval": 16, "gsm8k": 32},
        description="Evaluate only the first N items of a benchmark, e.g. {gsm8k: 200}; "
        "absent = all of it ({} = every benchmark in full).",
    )
    pre_sft_sample: int = Field(
        60,
        ge=0,
        description="eval_base also scores the model before SFT (the `model` stage's: random init "
        "for the tiny model) on this many held-out rows, spread over the split: the reference "
        "the trained base must clearly beat (0 = skip).",
    )
    batch_size: int = Field(16, ge=1, description="Instructions handed to the engine per call.")
    cache_scores: bool = Field(
        True, description="Within a run, reuse a greedy suite score of the same model files on "
        "the same rows with the same engine and decoding (eval_base, distill and modifiers score "
        "the same models; kept in <run>/cache/scores/).",
    )
    humaneval_instruction: str = Field(
        HUMANEVAL_INSTRUCTION, description="Instruction template; {prompt} is the HumanEval prompt."
    )
    gsm8k_instruction: str = Field(
        GSM8K_INSTRUCTION, description="Instruction template; {question} is the GSM8K question."
    )
    exec_timeout_s: float = Field(10.0, gt=0, description="Wall-clock limit per executed program.")
    exec_memory_mb: int = Field(1024, ge=64, description="Address-space limit per executed program.")
    exec_workers: int = Field(
        2, ge=1, description="Sandboxed programs run at once (threads, each a subprocess)."
    )
    gates: dict[str, float] = Field(
        default_factory=dict,
        description="Minimum scores (0..1) that must be met, keyed by benchmark ('humaneval', "
        "'gsm8k', 'suite') or suite domain/difficulty ('suite.code', 'suite.hard'). Unmet gates "
        "make `cogumi eval` exit non-zero.",
    )

    @field_validator("gates", mode="before")
    @classmethod
    def _flatten_gates(cls, v: object) -> object:
        """`--set eval.gates.suite.code=0.5` arrives as {"suite": {"code": 0.5}}: flatten it."""
        if not isinstance(v, dict):
            return v
        flat: dict[str, object] = {}
        for key, value in v.items():
            if isinstance(value, dict):
                flat.update({f"{key}.{k}": x for k, x in value.items()})
            else:
                flat[key] = value
        return flat

    @field_validator("gates")
    @classmethod
    def _gate_range(cls, v: dict[str, float]) -> dict[str, float]:
        from cogumi_ray.data.config import DIFFICULTIES, DOMAINS

        valid = set(BENCHMARKS) | {f"suite.{g}" for g in (*DOMAINS, *DIFFICULTIES)}
        unknown = sorted(set(v) - valid)
        if unknown:
            raise ValueError(f"unknown gate keys {unknown}; valid: {sorted(valid)}")
        bad = {k: x for k, x in v.items() if not 0.0 <= x <= 1.0}
        if bad:
            raise ValueError(f"gate thresholds are fractions in [0, 1]; got {bad}")
        return v
