"""`cogumi serve`'s models: what a finished run has to serve, as a ServeConfig.

The run manifest names every artifact: for llama.cpp the compressed GGUF when the compress stage
made one (else the exported GGUF) and the modifiers stage's LoRA GGUFs; for hf the HF base the
modifiers were trained on and their PEFT folders. The config's `serve:` section refines it, and
whatever it sets explicitly (base, adapters, ...) wins over the run; the CLI flags win over both.
A run whose modifiers stage predates the LoRA GGUFs gets them exported from its PEFT folders into
the run's `serve/` folder once.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from cogumi_ray import storage
from cogumi_ray.errors import RunError

if TYPE_CHECKING:
    from cogumi_ray.config import CogumiConfig
    from cogumi_ray.runs import RunContext
    from cogumi_ray.serve.config import ServeConfig

log = logging.getLogger(__name__)

# The llama.cpp base, best first: a K-quant GGUF from the compress stage, else the plain export.
GGUF_OUTPUTS = ("compress.gguf", "export_gguf.gguf")
MODIFIERS = "modifiers"


def _done(ctx: RunContext, ref: str) -> str | None:
    stage, _, name = ref.partition(".")
    rec = ctx.manifest.stages.get(stage)
    if rec is None or rec.status != "done" or name not in rec.outputs:
        return None
    return rec.outputs[name]


def _base(ctx: RunContext, backend: str, hint: str) -> str:
    from cogumi_ray.pipeline import FINAL_MODEL

    refs = GGUF_OUTPUTS if backend == "llama_cpp" else (FINAL_MODEL,)
    for ref in refs:
        if (path := _done(ctx, ref)) is not None:
            log.info("serve: base %s = %s", ref, path)
            chosen = str(ctx.manifest.stages[ref.partition(".")[0]].metrics.get("chosen", ""))
            if chosen.startswith("pruned"):  # the modifiers learnt on the dense base
                log.warning("serve: the base is the compress stage's pruned variant %s; the LoRA "
                            "modifiers were trained on the dense base and were not scored on it",
                            chosen)
            return path
    if backend == "llama_cpp":
        raise RunError(
            f"run {ctx.run_dir} has no GGUF to serve (no finished export_gguf stage); export one "
            f"with `cogumi export gguf{hint}`, or serve the HF folder with `--backend hf`"
        )
    stage = FINAL_MODEL.partition(".")[0]
    raise RunError(f"run {ctx.run_dir} has no finished {stage} stage (the HF base); run "
                   f"`cogumi pipeline run CONFIG{hint} --until {stage}` first")


def _adapters(ctx: RunContext, backend: str) -> dict[str, str]:
    """Modifier name -> LoRA GGUF (llama_cpp) or PEFT folder (hf) of the finished modifiers."""
    rec = ctx.manifest.stages.get(MODIFIERS)
    if rec is None or rec.status != "done":
        log.info("serve: no finished modifiers stage; serving the base alone")
        return {}
    out = {}
    peft_root = rec.outputs.get("adapters")
    for domain in rec.metrics.get("domains", []):
        peft = storage.join(peft_root, domain) if peft_root else None
        if backend != "llama_cpp":  # hf and vllm load the PEFT folders themselves
            path = peft
        else:
            version = rec.output_hashes.get("adapters", "")[:12]  # a retrained adapter: a new file
            path = rec.outputs.get(f"{domain}_adapter_gguf") or _late_gguf(ctx, domain, peft, version)
        if path is None:
            log.warning("serve: modifier %s has no %s adapter in the run; not served", domain,
                        "LoRA GGUF" if backend == "llama_cpp" else "PEFT")
            continue
        out[domain] = path
    return out


def _late_gguf(ctx: RunContext, domain: str, peft: str | None, version: str) -> str | None:
    """A LoRA GGUF for a run whose modifiers stage predates them: exported from the PEFT folder
    into the run's `serve/` folder (no stage's outputs change, so the manifest stays valid)."""
    from cogumi_ray.errors import ModelError
    from cogumi_ray.export.lora_gguf import export_lora_gguf
    from cogumi_ray.pipeline import FINAL_MODEL

    base = _done(ctx, FINAL_MODEL)  # what the modifiers stage trained on
    if peft is None or base is None or not storage.exists(peft):
        return None
    out = storage.join(ctx.stage_dir("serve"), f"adapters-{version}", f"{domain}.gguf")
    if not storage.exists(out):
        try:
            export_lora_gguf(peft, base, out, outtype="f16")
        except ModelError as e:
            log.warning("serve: modifier %s: cannot export a LoRA GGUF (%s)", domain, e)
            return None
        log.info("serve: modifier %s had no LoRA GGUF in the run; exported %s", domain, out)
    return out


def _hint(cfg: CogumiConfig, config_path: str | None) -> str:
    """The flags that point a suggested command at this run."""
    parts = [f" --config {config_path}"] if config_path else []
    return "".join(parts) + f" --name {cfg.run.name} --root {cfg.run.root}"


def serve_config_for_run(cfg: CogumiConfig, *, config_path: str | None = None,
                         backend: str | None = None, host: str | None = None,
                         port: int | None = None) -> ServeConfig:
    """The ServeConfig of the finished run `cfg.run_dir`: its models, `cfg.serve`, then flags."""
    from cogumi_ray.runs import RunContext
    from cogumi_ray.serve.config import ServeConfig

    if not storage.exists(storage.join(cfg.run_dir, "manifest.json")):
        raise RunError(f"no run at {cfg.run_dir} (no manifest.json); make one with `cogumi demo` or "
                       "`cogumi pipeline run CONFIG`, or pick it with --config/--name/--root")
    ctx = RunContext(cfg.run_dir)
    explicit = cfg.serve.model_fields_set
    data: dict[str, Any] = cfg.serve.model_dump()
    flags = {"backend": backend, "host": host, "port": port}
    data.update({k: v for k, v in flags.items() if v is not None})
    if "base" not in explicit:
        data["base"] = _base(ctx, data["backend"], _hint(cfg, config_path))
    if "adapters" not in explicit:
        data["adapters"] = _adapters(ctx, data["backend"])
    router = _finished_output(ctx, "router", "router")
    if router and "policy" not in explicit and data["adapters"]:
        # A trained router decides model="cogumi"; its session memory lives in the run unless
        # route.memory names another file, and is kept as route.memory says.
        data.update(policy="learned", router_path=router)
        if "sessions_path" not in explicit:
            data["sessions_path"] = (cfg.route.memory.path
                                     or storage.join(cfg.run_dir, "serve", "sessions.sqlite"))
        if "session_memory" not in explicit:
            data["session_memory"] = cfg.route.memory.model_dump()
        # The router may read the base's calibrated confidence (a progressive policy trained
        # with base_confidence): the Generator computes it with the compress stage's calibrator.
        if "calibrator_path" not in explicit:
            data["calibrator_path"] = _finished_output(ctx, "compress", "calibrator")
    return ServeConfig.model_validate(data)


def _finished_output(ctx: Any, stage: str, name: str) -> str | None:
    """Output `name` of `stage` when that stage finished in this run and the path still exists."""
    try:
        path = ctx.output(f"{stage}.{name}")
    except RunError:
        return None
    return path if storage.exists(path) else None


def usage_lines(cfg: ServeConfig, url: str) -> list[str]:
    """What a person needs to call the endpoint: its URL, model ids, curl and openai snippets."""
    from cogumi_ray.serve.policy import ROUTED, make_policy

    models = make_policy(cfg).models()
    auth = ' -H "Authorization: Bearer $KEY"' if cfg.resolved_api_keys() else ""
    key = '"<one of serve.api_keys>"' if auth else '"none"'  # no keys configured: any key passes
    return [
        f"serving run models ({cfg.backend}) at {url}",
        f"  base: {cfg.base}",
        *(f"  modifier {name}: {path}" for name, path in sorted(cfg.adapters.items())),
        f"  models: {', '.join(models)}  ('{ROUTED}' routes; 'cogumi:<name>' forces a modifier)",
        "",
        "try it:",
        f"  curl {url}/chat/completions -H 'Content-Type: application/json'{auth} \\",
        f"    -d '{{\"model\": \"{ROUTED}\", \"messages\": [{{\"role\": \"user\", \"content\": "
        "\"What is 2 + 3?\"}]}'",
        "",
        "  from openai import OpenAI",
        f"  client = OpenAI(base_url=\"{url}\", api_key={key})",
        f"  r = client.chat.completions.create(model=\"{ROUTED}\", messages=[{{\"role\": \"user\", "
        "\"content\": \"What is 2 + 3?\"}])",
        "  print(r.choices[0].message.content)",
    ]
