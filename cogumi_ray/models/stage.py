"""Stage "model" (`cogumi model build`): the base model every later stage starts from.

source == "tiny": train the tokenizer on the curated train split and build the tiny Llama.
Otherwise: check that the HF folder (local or URI) has a loadable config and tokenizer, and pass
its path on unchanged (the weights are loaded by the stages that need them).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from cogumi_ray import storage
from cogumi_ray.errors import DataError, ModelError

if TYPE_CHECKING:
    from cogumi_ray.config import CogumiConfig
    from cogumi_ray.runs import RunContext, StageOutput

log = logging.getLogger(__name__)


def iter_texts(parquet_path: str) -> Iterator[str]:
    """Instructions and responses of an Example Parquet file or directory, in file order."""
    import pyarrow.dataset as ds

    fs, path = storage.fs_and_path(parquet_path)
    try:
        dataset = ds.dataset(path, format="parquet", filesystem=fs)
        missing = {"instruction", "response"} - set(dataset.schema.names)
        if missing:
            raise DataError(
                f"{parquet_path!r} lacks columns {sorted(missing)}; expected the Example schema "
                "(cogumi_ray.data.schema)"
            )
        scanner = dataset.scanner(columns=["instruction", "response"], batch_size=4096)
        for batch in scanner.to_batches():
            for ins, resp in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
                if ins:
                    yield ins
                if resp:
                    yield resp
    except DataError:
        raise
    except Exception as e:  # missing dir, not Parquet, unreadable: name the path
        raise DataError(f"cannot read training texts from {parquet_path!r}: {e}") from None


def folder_stats(local_dir: str) -> tuple[int, int]:
    """(parameter count from the safetensors headers, total bytes) of a local model folder."""
    from safetensors import safe_open

    n_params, size = 0, 0
    for name in sorted(os.listdir(local_dir)):
        path = os.path.join(local_dir, name)
        size += os.path.getsize(path)
        if name.endswith(".safetensors"):
            with safe_open(path, framework="pt") as f:
                for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                    n = 1
                    for d in f.get_slice(key).get_shape():
                        n *= d
                    n_params += n
    return n_params, size


def _build_tiny(cfg: CogumiConfig, ctx: RunContext, inputs: dict[str, str]) -> StageOutput:
    from cogumi_ray.models.tiny import build_tiny
    from cogumi_ray.runs import StageOutput

    if "train" not in inputs:
        raise ModelError("model.source='tiny' needs input 'train' (the curated train split)")
    out = storage.join(ctx.stage_dir("model"), "tiny")
    n_texts = 0

    def counted() -> Iterator[str]:
        nonlocal n_texts
        for t in iter_texts(inputs["train"]):
            n_texts += 1
            yield t

    t0 = time.perf_counter()
    if storage.is_local(out):
        local = storage.local_path(out)
        build_tiny(cfg.model, counted(), local)
        n_params, size = folder_stats(local)
    else:  # HF writes local files: build in a temp dir, then upload the folder
        with tempfile.TemporaryDirectory() as tmp:
            build_tiny(cfg.model, counted(), tmp)
            n_params, size = folder_stats(tmp)
            fs, remote = storage.fs_and_path(out)
            fs.put(tmp + "/", remote.rstrip("/") + "/", recursive=True)
    seconds = time.perf_counter() - t0
    vocab = storage.read_json(storage.join(out, "config.json"))["vocab_size"]
    return StageOutput(
        outputs={"model": out},
        metrics={
            "source": "tiny",
            "params": n_params,
            "vocab_size": vocab,
            "tokenizer_texts": n_texts,
            "size_mb": round(size / 2**20, 2),
            "k_quant_ready": cfg.model.tiny.k_quant_ready(),
            "build_s": round(seconds, 2),
        },
    )


_METADATA_FILES = (
    "config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "chat_template.jinja", "generation_config.json",
)


def _inspect(source: str, local: str) -> tuple[list[str], Any]:
    """(architectures, tokenizer) of a local folder, with errors that name `source`."""
    from transformers import AutoConfig

    from cogumi_ray.models.load import load_tokenizer

    try:
        config = AutoConfig.from_pretrained(local)
    except Exception as e:  # missing or malformed config.json
        raise ModelError(f"{source!r} has no loadable config.json: {type(e).__name__}: {e}") from None
    archs = list(getattr(config, "architectures", None) or [])
    if not any(a.endswith("ForCausalLM") for a in archs):
        raise ModelError(f"{source!r} is not a causal LM (architectures: {archs or 'none'})")
    return archs, load_tokenizer(local)


def _check_folder(cfg: CogumiConfig) -> StageOutput:
    from cogumi_ray.models.load import resolve_local
    from cogumi_ray.runs import StageOutput

    source = cfg.model.source
    if storage.is_local(source):
        archs, tok = _inspect(source, resolve_local(source))
    else:  # validate from the small files only; the weights are fetched where they are used
        fs, remote = storage.fs_and_path(source)
        with tempfile.TemporaryDirectory(prefix="cogumi-model-check-") as local:
            for name in _METADATA_FILES:
                if fs.exists(f"{remote.rstrip('/')}/{name}"):
                    fs.get(f"{remote.rstrip('/')}/{name}", os.path.join(local, name))
            archs, tok = _inspect(source, local)
    if not getattr(tok, "chat_template", None):
        log.warning("model %s: tokenizer has no chat template; chat stages will fail", source)
    return StageOutput(
        outputs={"model": source},
        metrics={
            "source": source,
            "architecture": archs[0],
            "vocab_size": len(tok),
            "has_chat_template": bool(getattr(tok, "chat_template", None)),
        },
    )


def run(cfg: CogumiConfig, ctx: RunContext, inputs: dict[str, str]) -> StageOutput:
    if cfg.model.source == "tiny":
        return _build_tiny(cfg, ctx, inputs)
    return _check_folder(cfg)
