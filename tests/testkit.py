"""Plain helpers shared by the tests (import with `from testkit import ...`). They live outside
conftest.py because several test folders have a conftest of their own, and `from conftest import`
would pick whichever was imported last."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def tiny_pairs(n: int = 240) -> list[tuple[str, str]]:
    """Deterministic suite-like (instruction, response) pairs for building test models."""
    import random

    rng = random.Random(0)
    pairs: list[tuple[str, str]] = []
    for i in range(n):
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        kind = i % 3
        if kind == 0:
            pairs.append((f"What is {a} + {b}? Answer with the number only.", str(a + b)))
        elif kind == 1:
            xs = [rng.randint(0, 9) for _ in range(4)]
            pairs.append((f"Sort the list {xs} in ascending order.", str(sorted(xs))))
        else:
            pairs.append((f"Write a Python function add_{a}(x) that returns x + {a}.",
                          f"def add_{a}(x):\n    return x + {a}"))
    return pairs


# Small and quick Ray Train runs: 1 worker, a handful of steps, eval + checkpoint every 2 steps.
FAST_TRAIN = {"max_steps": 6, "eval_steps": 2, "save_steps": 2, "logging_steps": 1,
              "per_device_batch_size": 8, "cpus_per_worker": 1, "max_seq_len": 96, "packing": False}


def write_sft_splits(out: Any) -> Any:
    """`tiny_pairs(120)` as Example rows with domains, written to `out`/train.parquet (96 rows)
    and `out`/val.parquet (24); returns `out`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cogumi_ray.data.schema import Example, arrow_schema

    domains = ("math", "reasoning", "code")  # tiny_pairs cycles sum / sort / function
    rows = [Example(id=str(i), instruction=a, response=b, domain=domains[i % 3]).to_row()
            for i, (a, b) in enumerate(tiny_pairs(120))]
    for name, part in (("train", rows[:96]), ("val", rows[96:])):
        pq.write_table(pa.Table.from_pylist(part, schema=arrow_schema()), out / f"{name}.parquet")
    return out


def sft_inputs(model_dir: str, data_dir: Any) -> dict[str, str]:
    """A training stage's inputs: the model folder and the splits of `write_sft_splits`."""
    return {"model": model_dir, "train": str(data_dir / "train.parquet"),
            "val": str(data_dir / "val.parquet")}


def random_peft_adapter(base_dir: str, out_dir: str, seed: int, rank: int = 4, std: float = 0.1,
                        **lora_kwargs) -> str:
    """A PEFT LoRA on q/k/v/o/gate/up/down with random (non-zero) A and B: a visible change.

    PEFT initialises B to zero (the adapter starts as a no-op); training would move it, here we
    draw it so that the adapted model answers differently from the base. A small `std` keeps the
    adapted distributions peaked: with near-ties, llama.cpp's f16 KV cache could pick another
    greedy token than PEFT in f32. `lora_kwargs` go to LoraConfig (e.g. use_rslora=True).
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    lora = {"target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                               "down_proj"], **lora_kwargs}
    peft = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0,
                                            bias="none", task_type="CAUSAL_LM", **lora))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * std)
    peft.save_pretrained(out_dir)
    return out_dir


@contextlib.contextmanager
def running_app(cfg: Any) -> Iterator[str]:
    """The Serve app of ServeConfig `cfg` on 127.0.0.1:cfg.port; yields its /v1 URL."""
    from ray import serve

    from cogumi_ray.serve.app import build_app

    serve.start(http_options={"host": "127.0.0.1", "port": cfg.port})
    try:
        serve.run(build_app(cfg), name=cfg.app_name, route_prefix="/")
        yield f"http://127.0.0.1:{cfg.port}/v1"
    finally:
        serve.shutdown()


_LOOP: list[Any] = []  # one event loop thread for the test's own handle calls


def on_test_loop(make: Callable[[], Awaitable[T]], timeout: float = 60) -> T:
    """`await make()` on the tests' own event loop thread, as replicas use handles (under
    RAY_SERVE_THROUGHPUT_OPTIMIZED=1 a handle refuses to work outside a loop, and it stays bound
    to the loop it was first used in)."""
    import asyncio
    import threading

    if not _LOOP:
        _LOOP.append(asyncio.new_event_loop())
        threading.Thread(target=_LOOP[0].run_forever, daemon=True).start()

    async def run() -> T:
        return await make()

    return asyncio.run_coroutine_threadsafe(run(), _LOOP[0]).result(timeout=timeout)


def replica_stats(app: str, deployment: str = "Generator") -> dict[str, Any]:
    """A replica's counters (the Generator's or the Router's `stats`)."""
    import asyncio

    from ray import serve

    async def ask() -> dict[str, Any]:
        handle = serve.get_deployment_handle(deployment, app_name=app)
        return await asyncio.wait_for(handle.stats.remote(), 30)

    return on_test_loop(ask)
