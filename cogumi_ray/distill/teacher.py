"""Teacher corrections for the failures self-critique did not fix.

- `reference`: the task suite's reference answers. No model is involved; every row is labelled
  source=reference_teacher so nobody mistakes it for a teacher model's work.
- `anthropic` / `openai` / `openai_compatible`: an LLM writes a worked (chain-of-thought) solution
  ending in "Final answer: ..." in the suite's format. Calls go through the judge clients, so they
  get the same retries, QPS limit, reply cache, batch APIs and cost accounting; the teacher runs
  as a Ray Data actor pool like the judge.

The answer used for training keeps the reasoning only in `cot_domains` (verifiers there read the
final answer out of surrounding text); elsewhere it is the final answer alone.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from cogumi_ray.distill.config import TeacherConfig
from cogumi_ray.judge.config import JudgeConfig

if TYPE_CHECKING:
    import pyarrow as pa
    import ray.data

SOURCE = "distill_source"  # column: who wrote the correction
TEACHER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("teacher_reply", "string"), ("teacher_error", "string"), ("teacher_input_tokens", "int64"),
    ("teacher_output_tokens", "int64"), ("teacher_cost_usd", "float64"),
    ("teacher_paid_usd", "float64"), ("teacher_cached", "bool"),
)

TEACHER_SYSTEM = (
    "You are a teacher writing worked solutions for a student model. Reason step by step, "
    "briefly. Then end with a line 'Final answer:' followed by only the answer, in exactly the "
    "format the task asks for: Python code as the complete function in a ```python block; a "
    "tool call as one JSON object; an ordering as the items separated by commas; a number as "
    "the number; otherwise the bare word or phrase."
)
_FINAL = re.compile(r"final\s+answer\s*:", re.IGNORECASE)


def source_label(kind: str) -> str:
    return f"{kind}_teacher"


def teacher_prompt(row: dict[str, Any], answer_column: str, reference_column: str,
                   show_reference: bool) -> str:
    parts = [f"## Task\n{row.get('instruction') or ''}",
             f"## The student's answer (judged wrong)\n{row.get(answer_column) or '(empty)'}"]
    if row.get("rationale"):
        parts.append(f"## Why it was judged wrong\n{row['rationale']}")
    if show_reference:
        parts.append(f"## Reference answer\n{row.get(reference_column) or ''}")
    parts.append("Write a correct worked solution to the task.")
    return "\n\n".join(parts)


def parse_reply(text: str) -> tuple[str, str]:
    """(reasoning, final answer): split at the last 'Final answer:'; no marker = all final."""
    hits = list(_FINAL.finditer(text))
    if not hits:
        return "", text.strip()
    last = hits[-1]
    return text[: last.start()].strip(), text[last.end():].strip()


def training_response(domain: str, reasoning: str, final: str, t: TeacherConfig) -> str:
    """The answer the student is trained on, in the suite's format for its domain."""
    prefix = t.final_prefix.get(domain, "")
    if prefix and not final.lower().startswith(prefix.strip().lower()):
        final = prefix + final
    if domain not in t.cot_domains or not reasoning:
        return final
    if domain == "code" and "```" not in final:  # the code verifier reads the first fenced block
        final = f"```python\n{final}\n```"
    return f"{reasoning}\n\n{final}"


def teacher_judge_config(judge: JudgeConfig, t: TeacherConfig) -> JudgeConfig:
    """The judge section re-aimed at the teacher: its retries, prices and cache settings kept."""
    data = judge.model_dump()
    data.update(judge=t.kind, mode="reference", model=t.model, base_url=t.base_url,
                api_key_env=t.api_key_env, batch=t.batch, max_tokens=t.max_tokens,
                temperature=t.temperature, structured_output="off", qps=t.qps,
                concurrency=t.concurrency, batch_size=t.batch_size)
    return JudgeConfig.model_validate(data)


def ReferenceTeacher(batch: pa.Table, answer_column: str, reference_column: str) -> pa.Table:  # noqa: N802
    """Ray Data UDF: the reference answer becomes the correction."""
    import pyarrow as pa

    batch = _set(batch, answer_column, batch.column(reference_column).cast(pa.string()))
    return _set(batch, SOURCE, pa.array([source_label("reference")] * batch.num_rows, pa.string()))


def _set(batch: pa.Table, name: str, values: Any) -> pa.Table:
    if name in batch.column_names:
        return batch.set_column(batch.column_names.index(name), name, values)
    return batch.append_column(name, values)


class TeacherWorker:
    """Ray Data callable class: one teacher client (with cache shard and token bucket) per actor."""

    def __init__(self, judge: dict[str, Any], teacher: dict[str, Any], cache_dir: str | None,
                 answer_column: str, reference_column: str) -> None:
        from cogumi_ray.judge.cache import JudgeCache
        from cogumi_ray.judge.clients import make_client

        jc = JudgeConfig.model_validate(judge)
        self.t = TeacherConfig.model_validate(teacher)
        self.client = make_client(jc, cache=JudgeCache(cache_dir) if cache_dir else None,
                                  qps=jc.qps / jc.concurrency if jc.qps else None)
        self.answer_column, self.reference_column = answer_column, reference_column

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa

        from cogumi_ray.judge.clients.base import ChatRequest

        rows = batch.to_pylist()
        reqs = [ChatRequest(TEACHER_SYSTEM, (("user", teacher_prompt(
            r, self.answer_column, self.reference_column, self.t.show_reference)),),
            self.t.max_tokens, self.t.temperature) for r in rows]
        results = self.client.complete_many(reqs)
        answers = []
        for row, res in zip(rows, results, strict=True):
            reasoning, final = parse_reply(res.text or "")
            answers.append(training_response(str(row.get("domain") or ""), reasoning, final, self.t)
                           if res.error is None and res.text else None)
        cols = {
            "teacher_reply": [r.text for r in results], "teacher_error": [r.error for r in results],
            "teacher_input_tokens": [r.input_tokens for r in results],
            "teacher_output_tokens": [r.output_tokens for r in results],
            "teacher_cost_usd": [r.cost_usd for r in results],
            "teacher_paid_usd": [0.0 if r.cached else r.cost_usd for r in results],
            "teacher_cached": [r.cached for r in results],
        }
        for name, typ in TEACHER_COLUMNS:
            batch = _set(batch, name, pa.array(cols[name], pa.type_for_alias(typ)))
        batch = _set(batch, self.answer_column, pa.array(answers, pa.string()))
        return _set(batch, SOURCE, pa.array([source_label(self.t.kind)] * len(rows), pa.string()))


def teacher_dataset(ds: ray.data.Dataset, judge: JudgeConfig, t: TeacherConfig,
                    cache_dir: str | None) -> ray.data.Dataset:
    """Lazily correct every row: the answer column holds the correction, `distill_source` says
    who wrote it (rows whose teacher call failed for good get a null answer and teacher_error)."""
    if t.kind == "reference":
        return ds.map_batches(ReferenceTeacher, batch_format="pyarrow", fn_kwargs={
            "answer_column": judge.answer_column, "reference_column": judge.reference_column})
    jc = teacher_judge_config(judge, t)
    from cogumi_ray.judge.clients import make_client
    from cogumi_ray.ray_session import actor_pool_size

    make_client(jc).close()  # fail fast on the driver: missing key, unpriced teacher model
    return ds.map_batches(
        TeacherWorker,
        fn_constructor_kwargs={"judge": jc.model_dump(mode="json"),
                               "teacher": t.model_dump(mode="json"), "cache_dir": cache_dir,
                               "answer_column": judge.answer_column,
                               "reference_column": judge.reference_column},
        batch_size=t.batch_size, batch_format="pyarrow",
        concurrency=actor_pool_size(t.concurrency, judge.num_cpus_per_actor, "teacher"),
        num_cpus=judge.num_cpus_per_actor,
    )
