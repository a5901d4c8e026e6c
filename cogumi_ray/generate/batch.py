"""Ray Data batch generation: one engine per actor, a pool of actors, batches of Example rows in,
the same rows plus answer, token counts, latency and engine name out.

The engine is built once in each actor's constructor (loading a model is the expensive part), so
`concurrency` actors hold `concurrency` model replicas and stream batches through them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cogumi_ray.generate.config import EngineConfig, GenerateConfig, GenParams

if TYPE_CHECKING:
    import ray.data

ANSWER_COLUMNS: tuple[str, ...] = (
    "answer", "prompt_tokens", "completion_tokens", "latency_s", "finish_reason", "engine",
)


class GenerateAnswers:
    """Ray Data callable class; its name is the operator's name in the dashboard."""

    def __init__(self, engine: dict[str, Any], params: dict[str, Any], model: str | None) -> None:
        from cogumi_ray.generate.engines import make_engine

        # Configs travel as plain dicts: cheap to pickle and validated again on arrival.
        self.engine = make_engine(EngineConfig.model_validate(engine), model)
        self.params = GenParams.model_validate(params)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        instructions = [str(x) for x in batch["instruction"]]
        completions = self.engine.generate(instructions, self.params)
        out = dict(batch)
        out["answer"] = np.array([c.text for c in completions], dtype=object)
        out["prompt_tokens"] = np.array([c.prompt_tokens for c in completions], dtype=np.int64)
        out["completion_tokens"] = np.array([c.completion_tokens for c in completions], dtype=np.int64)
        out["latency_s"] = np.array([c.latency_s for c in completions], dtype=np.float64)
        out["finish_reason"] = np.array([c.finish_reason for c in completions], dtype=object)
        out["engine"] = np.array([self.engine.name] * len(completions), dtype=object)
        return out


def generate_dataset(ds: ray.data.Dataset, cfg: GenerateConfig, model: str | None) -> ray.data.Dataset:
    """Lazily map `ds` (Example rows) through a pool of engine actors."""
    import ray.data

    from cogumi_ray.ray_session import actor_pool_size

    size = actor_pool_size(cfg.concurrency, cfg.num_cpus_per_actor, "generate")
    return ds.map_batches(
        GenerateAnswers,
        fn_constructor_kwargs={
            "engine": cfg.engine.model_dump(mode="json"),
            "params": cfg.params.model_dump(mode="json"),
            "model": model,
        },
        batch_size=cfg.batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=size),
        num_cpus=cfg.num_cpus_per_actor,
        num_gpus=cfg.num_gpus_per_actor or None,
    )
