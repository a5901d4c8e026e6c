"""Load any HF causal-LM folder (local path or object-storage URI) with its tokenizer."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from cogumi_ray import storage
from cogumi_ray.errors import MissingDependencyError, ModelError

log = logging.getLogger(__name__)

DTYPES = ("auto", "float32", "float16", "bfloat16")
_DONE = ".cogumi-complete"  # marker: the download finished (a partial copy is never reused)


def default_cache_dir() -> str:
    return os.environ.get("COGUMI_MODEL_CACHE", os.path.expanduser("~/.cache/cogumi/models"))


def resolve_local(path: str, cache_dir: str | None = None) -> str:
    """A local folder for `path`: itself if local, else a cached download of the URI folder."""
    if storage.is_local(path):
        local = storage.local_path(path)
        if not os.path.isdir(local):
            raise ModelError(
                f"model folder {path!r} does not exist; set model.source to 'tiny' or to a folder "
                "holding config.json, the weights (*.safetensors) and tokenizer files"
            )
        return local
    key = hashlib.blake2b(str(path).rstrip("/").encode(), digest_size=8).hexdigest()
    local = os.path.join(cache_dir or default_cache_dir(), key)
    if os.path.exists(os.path.join(local, _DONE)):
        return local
    fs, remote = storage.fs_and_path(path)
    tmp = f"{local}.tmp-{os.getpid()}"
    try:
        if not fs.isdir(remote):
            raise ModelError(f"model URI {path!r} is not a folder (or is not reachable)")
        log.info("downloading model %s -> %s", path, local)
        shutil.rmtree(tmp, ignore_errors=True)
        fs.get(remote.rstrip("/") + "/", tmp + "/", recursive=True)
    except ModelError:
        raise
    except Exception as e:  # credentials, network, missing bucket: say what and where
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelError(f"cannot download model folder {path!r}: {type(e).__name__}: {e}") from None
    Path(tmp, _DONE).write_text(str(path))
    shutil.rmtree(local, ignore_errors=True)  # an old partial copy without the marker
    os.replace(tmp, local)
    return local


def _check_folder(local: str, original: str) -> None:
    if not os.path.isfile(os.path.join(local, "config.json")):
        raise ModelError(
            f"{original!r} is not a HF model folder: config.json is missing "
            f"(found: {sorted(os.listdir(local))[:10]})"
        )


def load_tokenizer(path: str, *, cache_dir: str | None = None) -> Any:
    from transformers import AutoTokenizer

    local = resolve_local(path, cache_dir)
    try:
        tok = AutoTokenizer.from_pretrained(local)
    except Exception as e:
        raise ModelError(f"cannot load the tokenizer of {path!r}: {type(e).__name__}: {e}") from None
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token  # batching needs a pad id; padded positions are masked
    return tok


def load_model_and_tokenizer(
    path: str, *, dtype: str = "auto", device: str = "cpu", cache_dir: str | None = None
) -> tuple[Any, Any]:
    """(model, tokenizer) of a HF causal-LM folder; the model is in eval mode on `device`."""
    import torch
    from transformers import AutoModelForCausalLM

    if dtype not in DTYPES:
        raise ModelError(f"unknown dtype {dtype!r}; valid: {list(DTYPES)}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise MissingDependencyError(
            f"device {device!r}", "use device='cpu' or run on a machine with a CUDA GPU",
            "torch sees no CUDA device",
        )
    local = resolve_local(path, cache_dir)
    _check_folder(local, path)
    tok = load_tokenizer(local)
    torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
    try:
        model = AutoModelForCausalLM.from_pretrained(local, dtype=torch_dtype)
    except Exception as e:
        raise ModelError(f"cannot load the model in {path!r}: {type(e).__name__}: {e}") from None
    model.to(device)
    model.eval()
    return model, tok
