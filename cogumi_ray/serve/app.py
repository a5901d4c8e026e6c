"""The Serve application: Ingress (OpenAI HTTP) -> Router (policy) -> Generator (base + LoRAs).

    serve run cogumi_ray.serve.app:build_app base=model.gguf adapters.code=code-lora.gguf
    serve run cogumi_ray.serve.app:build_app config=serve.yaml

or from Python: `start(ServeConfig(base=...))` -> "http://127.0.0.1:8000/v1".
"""

from __future__ import annotations

import os
from typing import Any

from cogumi_ray import storage
from cogumi_ray.errors import ConfigError
from cogumi_ray.serve.config import ServeConfig, serve_config_from_args
from cogumi_ray.serve.limits import key_digest


def _check_paths(cfg: ServeConfig) -> None:
    """Fail in the driver, naming the key, rather than in a replica that Serve keeps restarting."""
    if not cfg.base:
        raise ConfigError("serve.base is not set: point it at the base .gguf (llama_cpp) or HF "
                          "folder (hf, vllm)")
    want_file = cfg.backend == "llama_cpp"
    items = [("base", cfg.base), *((f"adapters.{k}", v) for k, v in cfg.adapters.items())]
    for key, path in items:
        if not storage.is_local(path):
            continue  # a URI is resolved by the replica
        local = storage.local_path(path)
        ok = os.path.isfile(local) if want_file else os.path.isdir(local)
        if not ok:
            kind = "a .gguf file" if want_file else "an HF/PEFT folder"
            raise ConfigError(f"serve.{key} = {path!r} is not {kind} (backend {cfg.backend!r})")


def build_app(args: dict[str, Any] | ServeConfig) -> Any:
    """The bound deployment graph (a `serve.Application`) for `serve run` / `serve.run`."""
    from ray import serve

    from cogumi_ray.serve.ingress import Ingress
    from cogumi_ray.serve.model_server import ModelServer
    from cogumi_ray.serve.router import Router

    cfg = args if isinstance(args, ServeConfig) else serve_config_from_args(args)
    _check_paths(cfg)
    digests = sorted(key_digest(k) for k in cfg.resolved_api_keys())
    # Keys are resolved here, in the driver's environment, and only their digests travel.
    data = cfg.model_dump()
    data.update(api_keys=[], api_key_env=None)
    generator = serve.deployment(ModelServer, name="Generator").options(**cfg.generator.options())
    router = serve.deployment(Router, name="Router").options(**cfg.router.options())
    ingress = serve.deployment(serve.ingress()(Ingress), name="Ingress").options(**cfg.ingress.options())
    model = generator.bind(data)
    # One Generator deployment either way; the Ingress holds its handle to skip the Router.
    direct = (model,) if cfg.direct_forced else ()
    return ingress.bind(data, digests, router.bind(data, model), *direct)


def start(cfg: ServeConfig, *, blocking: bool = False) -> str:
    """Start Serve's HTTP proxy on cfg.host:cfg.port, deploy the graph, return the /v1 base URL."""
    from ray import serve

    serve.start(http_options={"host": cfg.host, "port": cfg.port})
    serve.run(build_app(cfg), name=cfg.app_name, route_prefix=cfg.route_prefix, blocking=blocking)
    return f"http://{cfg.host}:{cfg.port}{cfg.route_prefix.rstrip('/')}/v1"
