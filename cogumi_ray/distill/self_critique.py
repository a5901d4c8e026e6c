"""Self-critique: the model sees its failed answer, says what is wrong and writes a rewrite.

Three lazy Ray Data steps: CritiquePrompts (the critique instruction replaces the task), the
generate package's engine actors (the engine applies the chat template), ExtractRewrites (the
text after the last marker is the rewrite, and the task comes back); then the judge's own actor
pool re-judges the rewrites exactly as it judged the originals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ray.data

    from cogumi_ray.generate.config import GenerateConfig
    from cogumi_ray.judge.config import JudgeConfig

TASK = "task_instruction"  # the original instruction, while `instruction` holds the critique prompt
FAILED = "failed_answer"  # the answer the judge failed
CRITIQUE = "critique"  # the model's whole critique + rewrite


def extract_rewrite(text: str, marker: str) -> str:
    """The text after the last `marker` (case-insensitive); all of it when the marker is absent
    (a small model often just answers again)."""
    cut = text.lower().rfind(marker.lower())
    return (text[cut + len(marker):] if cut >= 0 else text).strip()


def CritiquePrompts(batch: dict[str, Any], template: str, answer_column: str) -> dict[str, Any]:  # noqa: N802
    """Ray Data UDF: instruction := the critique prompt; the task and failed answer are kept."""
    import numpy as np

    tasks = [str(x) for x in batch["instruction"]]
    failed = ["" if a is None else str(a) for a in batch[answer_column]]
    batch[TASK] = np.array(tasks, dtype=object)
    batch[FAILED] = np.array(failed, dtype=object)
    batch["instruction"] = np.array(
        [template.format(instruction=t, answer=a) for t, a in zip(tasks, failed, strict=True)],
        dtype=object)
    return batch


def ExtractRewrites(batch: dict[str, Any], marker: str, answer_column: str) -> dict[str, Any]:  # noqa: N802
    """Ray Data UDF: answer := the rewrite; instruction := the task again (for the judge)."""
    import numpy as np

    raw = [str(x) for x in batch["answer"]]  # generate writes its text to `answer`
    batch[CRITIQUE] = np.array(raw, dtype=object)
    batch[answer_column] = np.array([extract_rewrite(t, marker) for t in raw], dtype=object)
    batch["instruction"] = batch.pop(TASK)
    return batch


def self_critique(
    failures: ray.data.Dataset,
    gen: GenerateConfig,
    model: str | None,
    judge: JudgeConfig,
    cache_dir: str | None,
    *,
    template: str,
    marker: str,
) -> ray.data.Dataset:
    """The failures with their critique, rewrite (in the answer column) and the rewrite's verdict."""
    from cogumi_ray.generate.batch import generate_dataset
    from cogumi_ray.judge.run import judge_dataset

    prompts = failures.map_batches(
        CritiquePrompts, fn_kwargs={"template": template, "answer_column": judge.answer_column},
        batch_format="numpy")
    answered = generate_dataset(prompts, gen, model)
    # Materialised: the judge reads the schema first, which would otherwise generate twice.
    rewrites = answered.map_batches(
        ExtractRewrites, fn_kwargs={"marker": marker, "answer_column": judge.answer_column},
        batch_format="numpy").materialize()
    return judge_dataset(rewrites, judge, cache_dir)
