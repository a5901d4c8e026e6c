"""`cogumi export hf`: a finished run as a Hugging Face model repository folder, and its upload.

    out/
      README.md                   model card: YAML front matter + the run's measured numbers
      config.json, *.safetensors, the final base (distill.model, else train_base.model), so
      tokenizer*, chat template   `AutoModelForCausalLM.from_pretrained(repo_id)` loads it
      gguf/<variant>.gguf         the compress stage's GGUF variants (else export_gguf's file)
      adapters/<domain>/          one PEFT folder per modifier
      adapters/<domain>.gguf      the same modifier as a llama.cpp LoRA GGUF
      router/                     the router stage's bundle, report and thresholds
      cogumi/config.yaml          the run's config (secrets redacted), when the caller has it
      cogumi/manifest.json        the run manifest every number of the card comes from

Nothing in the card is typed in: each number is read from the manifest or from a stage report
the manifest names, and a stage that did not finish is reported as such. Files are hard-linked
where the filesystem allows when large (an 8B base is not copied twice), else copied.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cogumi_ray import storage
from cogumi_ray.errors import ModelError, RunError

if TYPE_CHECKING:
    from cogumi_ray.config import CogumiConfig
    from cogumi_ray.runs import Manifest

log = logging.getLogger(__name__)

MARKER = "cogumi/manifest.json"  # what makes a folder one of our exports (safe to replace)
BASE_REFS = ("distill.model", "train_base.model")  # the final base, best first
REDACTED = "<redacted>"
# Weights and GGUFs are hard-linked from the run (not copied twice); metadata below this size is
# copied, so editing the export (a README, a JSON) can never change the run through a link.
LINK_MIN_BYTES = 16 << 20
_SECRET_NAMES = ("api_key", "api_keys", "password", "secret")  # as a key or its _suffix


@dataclass
class _Repo:
    """What went into the folder, for the card's file list and front matter."""

    base: str | None = None
    model_type: str | None = None
    ggufs: list[str] = field(default_factory=list)  # repo paths
    adapters: dict[str, dict[str, str]] = field(default_factory=dict)  # domain -> kind -> path
    router: bool = False
    config: str | None = None  # note on the config file (written, or why not)
    config_mismatch: list[str] = field(default_factory=list)  # stages run with another config


def export_hf_repo(run_dir: str, out_dir: str, *, config: CogumiConfig | None = None) -> str:
    """Write the run `run_dir` as a Hugging Face model repository into `out_dir`; return it.

    `config` is the run's CogumiConfig (the CLI passes the one it loaded); it is written as
    `cogumi/config.yaml` and checked against the config hashes the manifest recorded.
    """
    manifest = _read_manifest(run_dir)
    if not storage.is_local(out_dir):
        raise ModelError(f"export folder {out_dir!r} must be local (the Hub uploads from disk); "
                         "upload it with push_to_hub")
    out = os.path.abspath(storage.local_path(out_dir))
    if os.path.exists(out) and os.listdir(out) and not os.path.exists(os.path.join(out, MARKER)):
        raise ModelError(f"{out} exists and is not a cogumi export; pick an empty or new folder")
    # Built next to its destination and renamed in, so a failed export leaves no half folder.
    tmp = f"{out}.tmp-{uuid.uuid4().hex[:8]}"
    os.makedirs(tmp)
    try:
        repo = _Repo()
        _add_base(manifest, tmp, repo)
        _add_ggufs(manifest, tmp, repo)
        _add_adapters(manifest, tmp, repo)
        _add_router(manifest, tmp, repo)
        _add_config(manifest, config, tmp, repo)
        _place(storage.join(run_dir, "manifest.json"), os.path.join(tmp, MARKER))
        with open(os.path.join(tmp, "README.md"), "w", encoding="utf-8") as f:
            f.write(model_card(manifest, repo, config))
        if os.path.exists(out):
            shutil.rmtree(out)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("export hf: run %s -> %s", run_dir, out)
    return out


def _read_manifest(run_dir: str) -> Manifest:
    from cogumi_ray.runs import Manifest

    path = storage.join(run_dir, "manifest.json")
    if not storage.exists(path):
        raise RunError(f"no run at {run_dir} (no manifest.json); make one with `cogumi demo` or "
                       "`cogumi pipeline run CONFIG`, or pick it with --config/--name/--root")
    return Manifest.model_validate(storage.read_json(path))


def done_output(manifest: Manifest, ref: str) -> str | None:
    """The path of output `stage.name` when that stage finished, else None."""
    stage, _, name = ref.partition(".")
    rec = manifest.stages.get(stage)
    if rec is None or rec.status != "done":
        return None
    return rec.outputs.get(name)


# --- files -------------------------------------------------------------------------------------


def _place(src: str, dst: str) -> None:
    """Put file or folder `src` (a path or URI) at `dst`: hard links, else copies."""
    os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
    if not storage.is_local(src):
        fs, path = storage.fs_and_path(src)
        fs.get(path.rstrip("/") + ("/" if fs.isdir(path) else ""), dst, recursive=True)
        return
    src = storage.local_path(src)
    if os.path.isdir(src):
        for root, _, files in os.walk(src):
            for name in files:
                s = os.path.join(root, name)
                _place(s, os.path.join(dst, os.path.relpath(s, src)))
        return
    if os.path.getsize(src) < LINK_MIN_BYTES:  # small files: copies, which an edit can't leak
        shutil.copy2(src, dst)
        return
    try:
        os.link(src, dst)
    except OSError:  # another filesystem, or links not allowed: copy
        shutil.copy2(src, dst)


def _add_base(manifest: Manifest, out: str, repo: _Repo) -> None:
    import json

    for ref in BASE_REFS:
        path = done_output(manifest, ref)
        if path is None or not storage.exists(path):
            continue
        local = storage.local_path(path)
        if storage.is_local(path) and not os.path.isfile(os.path.join(local, "config.json")):
            raise ModelError(f"{ref} = {path} has no config.json: not a HF model folder")
        fs, p = storage.fs_and_path(path)
        for entry in fs.ls(p, detail=True):
            if entry["type"] == "file":  # the model's own files, not checkpoints/ below it
                name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
                _place(storage.join(path, name), os.path.join(out, name))
        with open(os.path.join(out, "config.json"), encoding="utf-8") as f:
            repo.model_type = json.load(f).get("model_type")
        repo.base = ref
        return
    log.warning("export hf: no finished distill or train_base stage: the repo has no HF base")


def _add_ggufs(manifest: Manifest, out: str, repo: _Repo) -> None:
    folder = done_output(manifest, "compress.ggufs")
    files: list[str] = []
    if folder is not None and storage.exists(folder):
        fs, p = storage.fs_and_path(folder)
        files = sorted(storage.join(folder, n.rstrip("/").rsplit("/", 1)[-1])
                       for n in fs.ls(p, detail=False) if n.endswith(".gguf"))
    if not files:  # no K-quant variants: the plain export, so llama.cpp users still get a file
        one = done_output(manifest, "compress.gguf") or done_output(manifest, "export_gguf.gguf")
        files = [one] if one is not None and storage.exists(one) else []
    for src in files:
        rel = f"gguf/{src.rsplit('/', 1)[-1]}"
        _place(src, os.path.join(out, rel))
        repo.ggufs.append(rel)


def _add_adapters(manifest: Manifest, out: str, repo: _Repo) -> None:
    rec = manifest.stages.get("modifiers")
    if rec is None or rec.status != "done":
        return
    root = rec.outputs.get("adapters")
    base = next((p for ref in BASE_REFS if (p := done_output(manifest, ref))), None)
    for domain in rec.metrics.get("domains", []):
        got: dict[str, str] = {}
        peft = storage.join(root, domain) if root else None
        if peft is not None and storage.exists(peft):
            _place(peft, os.path.join(out, "adapters", domain))
            got["peft"] = f"adapters/{domain}"
        gguf = rec.outputs.get(f"{domain}_adapter_gguf")
        dst = os.path.join(out, "adapters", f"{domain}.gguf")
        if gguf is not None and storage.exists(gguf):
            _place(gguf, dst)
            got["gguf"] = f"adapters/{domain}.gguf"
        elif peft is not None and "peft" in got and base is not None:
            # A run whose modifiers stage predates LoRA GGUFs: exported here, not into the run.
            from cogumi_ray.export.lora_gguf import export_lora_gguf

            try:
                export_lora_gguf(peft, base, dst, outtype="f16")
                got["gguf"] = f"adapters/{domain}.gguf"
            except ModelError as e:
                log.warning("export hf: modifier %s: no LoRA GGUF (%s)", domain, e)
        if got:
            repo.adapters[domain] = got


def _add_router(manifest: Manifest, out: str, repo: _Repo) -> None:
    rec = manifest.stages.get("router")
    if rec is None or rec.status != "done":
        return
    for name, path in sorted(rec.outputs.items()):
        if not storage.exists(path):
            continue
        # The bundle folder is the router itself (LearnedPolicy.from_dir("router")); its report,
        # thresholds and plot sit beside its files.
        dst = os.path.join(out, "router") if name == "router" else os.path.join(
            out, "router", path.rstrip("/").rsplit("/", 1)[-1])
        _place(path, dst)
    repo.router = True


# --- config ------------------------------------------------------------------------------------


def redact(obj: Any) -> Any:
    """`obj` with the values of secret-looking keys replaced (the card goes public)."""
    if isinstance(obj, dict):
        return {k: (REDACTED if _is_secret(k, v) else redact(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    return obj


def _is_secret(key: Any, value: Any) -> bool:
    k = str(key).lower()
    # *_env keys hold the NAME of a variable, not a secret; empty values hide nothing.
    named = k == "token" or any(k == s or k.endswith("_" + s) for s in _SECRET_NAMES)
    return bool(value) and named


def config_mismatches(manifest: Manifest, cfg: CogumiConfig) -> list[str]:
    """Stages the manifest says ran with other settings than `cfg` (hashes as run_pipeline's)."""
    from cogumi_ray.pipeline import STAGES

    out = []
    for stage in STAGES:
        rec = manifest.stages.get(stage.name)
        if rec is None:
            continue
        sections = {sec: getattr(cfg, sec).model_dump(mode="json") for sec in stage.sections}
        if storage.hash_object(sections) != rec.config_hash:
            out.append(stage.name)
    return out


def _add_config(manifest: Manifest, cfg: CogumiConfig | None, out: str, repo: _Repo) -> None:
    import yaml

    if cfg is None:
        repo.config = "not included (export with the run's config to add cogumi/config.yaml)"
        return
    path = os.path.join(out, "cogumi", "config.yaml")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(redact(cfg.model_dump(mode="json")), f, sort_keys=False)
    repo.config = "cogumi/config.yaml"
    repo.config_mismatch = config_mismatches(manifest, cfg)
    if repo.config_mismatch:
        log.warning("export hf: the given config differs from the one that ran %s",
                    ", ".join(repo.config_mismatch))


# --- upload ------------------------------------------------------------------------------------


def push_to_hub(out_dir: str, repo_id: str, token_env: str = "HF_TOKEN", *, private: bool = True,
                api: Any = None, commit_message: str = "Upload cogumi run") -> str:
    """Create `repo_id` (private unless told) if needed and upload the export folder; return the
    commit URL. The token is read from $`token_env` only and never logged or written."""
    token = os.environ.get(token_env, "").strip()
    if not token:
        raise ModelError(f"${token_env} is not set; put a Hugging Face write token in it "
                         f"(https://huggingface.co/settings/tokens): `export {token_env}=hf_...`")
    if not os.path.isfile(os.path.join(out_dir, "README.md")):
        raise ModelError(f"{out_dir} is not an export (no README.md); run `cogumi export hf` first")
    if api is None:
        from huggingface_hub import HfApi, constants

        if constants.is_offline_mode():
            raise ModelError("HF_HUB_OFFLINE is set: unset it to push to the Hub")
        # huggingface_hub reads HF_ENDPOINT once, at import; read here, a later setting counts.
        api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None)
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True, token=token)
        info = api.upload_folder(repo_id=repo_id, folder_path=out_dir, repo_type="model",
                                 commit_message=commit_message, token=token)
    except Exception as e:  # the Hub's message, with the token scrubbed should it ever echo it
        msg = str(e).replace(token, "***")
        raise ModelError(f"pushing {out_dir} to {repo_id} failed: {type(e).__name__}: {msg}; check "
                         f"that ${token_env} is a write token for that namespace") from None
    url = str(getattr(info, "commit_url", info))
    log.info("export hf: pushed %s to %s (%s)", out_dir, repo_id, url)
    return url


# --- model card --------------------------------------------------------------------------------


def _pct(v: Any) -> str:
    return f"{100 * v:.1f}%" if isinstance(v, int | float) else "–"


def _pp(v: Any) -> str:
    return f"{v:+.2f} pp" if isinstance(v, int | float) else "–"


def _num(v: Any, digits: int = 4) -> str:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return "–" if v is None else str(v)
    return f"{v:,}" if isinstance(v, int) else f"{v:.{digits}g}"


def _mib(v: Any) -> str:
    return f"{v / 2**20:.3f}" if isinstance(v, int | float) else "–"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
            *("| " + " | ".join(r) + " |" for r in rows), ""]


def _not_run(manifest: Manifest, stage: str) -> list[str] | None:
    """The card's line for a stage that did not finish, None when it did."""
    rec = manifest.stages.get(stage)
    if rec is None:
        return [f"*{stage}: not run.*", ""]
    if rec.status != "done":
        return [f"*{stage}: {rec.status}" + (f" ({rec.error.splitlines()[0]})" if rec.error else "")
                + ".*", ""]
    return None


def _domains(metrics: dict[str, Any], prefix: str) -> list[str]:
    """Domains of `prefix.<domain>` keys: the suite's difficulties share the prefix, skip them."""
    from cogumi_ray.data.config import DIFFICULTIES

    names = [k[len(prefix) + 1:] for k in metrics if k.startswith(prefix + ".")]
    return [n for n in names if n not in DIFFICULTIES and "." not in n]


def _base_section(manifest: Manifest) -> list[str]:
    out = ["## Base model: held-out pass rate per domain", ""]
    if (miss := _not_run(manifest, "eval_base")) is not None:
        return out + miss
    m = manifest.stages["eval_base"].metrics
    rows = [[d, _pct(m[f"pass_rate.{d}"]), _num(m.get(f"total.{d}"))]
            for d in sorted(_domains(m, "pass_rate"))]
    rows.append(["**all**", _pct(m.get("pass_rate")), _num(m.get("total"))])
    out += _table(["domain", "pass rate", "items"], rows)
    if "pre_sft.pass_rate" in m:
        out += [f"Before fine-tuning: {_pct(m['pre_sft.pass_rate'])} "
                f"({_num(m.get('pre_sft.passed'))}/{_num(m.get('pre_sft.total'))}).", ""]
    return out


def _distill_section(manifest: Manifest) -> list[str]:
    out = ["## Distillation (self-critique + teacher corrections)", ""]
    if (miss := _not_run(manifest, "distill")) is not None:
        return out + miss
    m = manifest.stages["distill"].metrics
    rows = [[d, _pct(m.get(f"pass_rate_before.{d}")), _pct(m.get(f"pass_rate_after.{d}")),
             _pp(100 * m[f"pass_rate_delta.{d}"])] for d in sorted(_domains(m, "pass_rate_delta"))]
    if "pass_rate_delta" in m:
        rows.append(["**all**", _pct(m.get("pass_rate_before")), _pct(m.get("pass_rate_after")),
                     _pp(100 * m["pass_rate_delta"])])
    out += _table(["domain", "before", "after", "delta"], rows)
    facts = [f"{k.replace('_', ' ')}: {_num(m[k])}"
             for k in ("failures", "dataset_rows", "teacher_kept", "self_critique_fixed") if k in m]
    return out + ([", ".join(facts) + ".", ""] if facts else [])


def _variants(manifest: Manifest) -> tuple[list[dict[str, Any]], str | None]:
    """The compress stage's variants: its report file, else the flat `<variant>.<metric>` keys."""
    rec = manifest.stages["compress"]
    report = rec.outputs.get("report")
    if report is not None and storage.exists(report):
        try:
            data = storage.read_json(report)
            if isinstance(data, dict) and isinstance(data.get("variants"), list):
                return data["variants"], data.get("chosen") or rec.metrics.get("chosen")
        except ValueError:
            log.warning("export hf: %s is not valid JSON; variants from the manifest", report)
    by_name: dict[str, dict[str, Any]] = {}
    keys = {"size_mb": "size_mb", "packed_mb": "packed_mb", "pass_rate": "pass_rate",
            "ppl": "perplexity", "gen_tok_s": "gen_tok_s"}
    for k, v in rec.metrics.items():
        name, _, metric = k.rpartition(".")
        if name and metric in keys:
            by_name.setdefault(name, {"name": name})[keys[metric]] = v
    return sorted(by_name.values(), key=lambda v: v["name"]), rec.metrics.get("chosen")


def _compress_section(manifest: Manifest, repo: _Repo) -> list[str]:
    out = ["## Compression variants", ""]
    if (miss := _not_run(manifest, "compress")) is not None:
        return out + miss
    variants, chosen = _variants(manifest)
    files = {g.rsplit("/", 1)[-1]: g for g in repo.ggufs}
    rows = []
    for v in variants:
        size = _mib(v["size_bytes"]) if "size_bytes" in v else _num(v.get("size_mb"))
        packed = _mib(v["packed_bytes"]) if "packed_bytes" in v else _num(v.get("packed_mb"))
        path = str(v.get("path") or "")
        where = files.get(path.rsplit("/", 1)[-1], "") if path.endswith(".gguf") else ""
        name = f"**{v.get('name')}**" if v.get("name") == chosen else str(v.get("name"))
        ppl, tok_s = v.get("perplexity"), v.get("gen_tok_s")
        rows.append([name, size, packed, _pct(v.get("pass_rate")),
                     f"{ppl:.4f}" if isinstance(ppl, int | float) else "–",
                     f"{tok_s:.1f}" if isinstance(tok_s, int | float) else "–",
                     f"`{where}`" if where else ""])
    out += _table(["variant", "size (MiB)", "packed (MiB)", "pass rate", "perplexity",
                   "gen tok/s", "file"], rows)
    if chosen:
        out += [f"Chosen for serving: **{chosen}**.", ""]
    return out


def _modifiers_section(manifest: Manifest) -> list[str]:
    out = ["## Modifiers (one LoRA adapter per domain)", ""]
    if (miss := _not_run(manifest, "modifiers")) is not None:
        return out + miss
    m = manifest.stages["modifiers"].metrics
    rows = [[d, _pct(m.get(f"{d}_base_pass_rate")), _pct(m.get(f"{d}_adapter_pass_rate")),
             _pp(m.get(f"{d}_uplift_pp")), _pp(m.get(f"{d}_other_domains_delta_pp")),
             _num(m.get(f"{d}_rank")), "yes" if m.get(f"{d}_beats_base") else "no"]
            for d in m.get("domains", [])]
    return out + _table(["domain", "base", "with adapter", "uplift", "other domains", "rank",
                         "beats base"], rows)


def _router_section(manifest: Manifest) -> list[str]:
    if "router" not in manifest.stages:
        return []  # no router stage: no section, as in the run report
    out = ["## Router", ""]
    if (miss := _not_run(manifest, "router")) is not None:
        return out + miss
    m = manifest.stages["router"].metrics
    labels = {"accuracy": "accuracy", "pass_rate": "routed pass rate",
              "modifier_share": "modifier share", "base_only_pass_rate": "base-only pass rate",
              "oracle_pass_rate": "oracle pass rate", "ece": "calibration error (ECE)"}
    rows = [[label, _pct(m[k]) if "rate" in k or "share" in k or k == "accuracy" else _num(m[k])]
            for k, label in labels.items() if k in m]
    return out + [f"Router: `{m.get('router', '?')}` (files in `router/`).", ""] + _table(
        ["metric", "value"], rows)


def _data_section(manifest: Manifest) -> list[str]:
    out = ["## Training data (curation and deduplication)", ""]
    if (miss := _not_run(manifest, "curate")) is not None:
        return out + miss
    m = manifest.stages["curate"].metrics
    kinds = m.get("duplicate_kinds") or {}
    rows = [[label, _num(v)] for label, v in (
        ("rows read", m.get("rows_in")), ("quarantined (malformed)", m.get("quarantined")),
        ("filtered", m.get("filtered")), ("duplicates dropped", m.get("duplicates")),
        ("exact duplicates", kinds.get("exact")), ("near duplicates (MinHash LSH)", kinds.get("near")),
        ("near-duplicate clusters", kinds.get("near_clusters")), ("rows kept", m.get("rows_out")),
    ) if v is not None]
    distill = manifest.stages.get("distill")
    if distill is not None and distill.status == "done" and "dedup_dropped" in distill.metrics:
        rows.append(["distillation rows dropped as duplicates", _num(distill.metrics["dedup_dropped"])])
    return out + _table(["", "rows"], rows)


def _eval_section(manifest: Manifest) -> list[str]:
    if "eval" not in manifest.stages:
        return []
    out = ["## Final evaluation", ""]
    if (miss := _not_run(manifest, "eval")) is not None:
        return out + miss
    m = manifest.stages["eval"].metrics
    rows = [[k, _pct(m[k]), f"{_num(m.get(f'{k}.passed'))}/{_num(m.get(f'{k}.total'))}"]
            for k in sorted(m) if "." not in k and isinstance(m[k], int | float)
            and f"{k}.total" in m]
    return out + _table(["benchmark", "pass rate", "passed"], rows)


def _files_section(repo: _Repo) -> list[str]:
    rows = []
    if repo.base:
        rows.append(["`config.json`, `*.safetensors`, tokenizer", f"the base ({repo.base})"])
    rows += [[f"`{g}`", "llama.cpp GGUF"] for g in repo.ggufs]
    for d, got in sorted(repo.adapters.items()):
        rows += [[f"`{p}`", f"modifier {d} ({'PEFT' if k == 'peft' else 'llama.cpp LoRA'})"]
                 for k, p in sorted(got.items())]
    if repo.router:
        rows.append(["`router/`", "learned router bundle + report"])
    rows.append([f"`{repo.config}`" if repo.config == "cogumi/config.yaml" else "config",
                 "the run's config" if repo.config == "cogumi/config.yaml" else str(repo.config)])
    rows.append([f"`{MARKER}`", "the run manifest (source of every number here)"])
    return ["## Files", ""] + _table(["path", "what"], rows)


def _usage_section(repo: _Repo) -> list[str]:
    out = ["## Use", "", "```python"]
    if repo.base:
        out += ["from transformers import AutoModelForCausalLM, AutoTokenizer",
                "tok = AutoTokenizer.from_pretrained(REPO_ID)",
                "model = AutoModelForCausalLM.from_pretrained(REPO_ID)"]
        peft = [got["peft"] for got in repo.adapters.values() if "peft" in got]
        if peft:
            out += ["from peft import PeftModel",
                    f"model = PeftModel.from_pretrained(model, REPO_ID, subfolder=\"{peft[0]}\")"]
    if repo.ggufs:
        out += ["from llama_cpp import Llama",
                f"llm = Llama.from_pretrained(REPO_ID, filename=\"{repo.ggufs[0]}\")"]
    return out + ["```", ""]


def _front_matter(repo: _Repo, cfg: CogumiConfig | None) -> str:
    import yaml

    tags = ["cogumi", "text-generation"]
    tags += [t for t, on in ((repo.model_type, bool(repo.model_type)), ("gguf", bool(repo.ggufs)),
                             ("peft", bool(repo.adapters)), ("lora", bool(repo.adapters)),
                             ("router", repo.router)) if on and t]
    meta: dict[str, Any] = {"license": "other", "library_name": "transformers",
                            "pipeline_tag": "text-generation", "tags": tags}
    source = cfg.model.source if cfg is not None else "tiny"
    if source != "tiny" and not os.path.isabs(source) and not os.path.exists(source):
        meta["base_model"] = source  # a Hub id; a local folder means nothing to readers
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


def model_card(manifest: Manifest, repo: _Repo, cfg: CogumiConfig | None = None) -> str:
    """README.md of the export: front matter, the run's numbers per stage, files, usage."""
    lines = ["", f"# {manifest.run}", "",
             f"A specialised model system built by the cogumi_ray pipeline (run `{manifest.run}`): "
             "a fine-tuned base, its compressed GGUF variants, LoRA modifiers per domain and, when "
             "trained, a router. Every number below is read from the run manifest "
             f"(`{MARKER}`).", ""]
    if repo.config_mismatch:
        lines += [f"> Note: `{repo.config}` differs from the settings that ran "
                  f"{', '.join(repo.config_mismatch)} (config hashes in the manifest).", ""]
    for part in (_base_section(manifest), _distill_section(manifest),
                 _compress_section(manifest, repo), _modifiers_section(manifest),
                 _router_section(manifest), _eval_section(manifest), _data_section(manifest),
                 _files_section(repo), _usage_section(repo)):
        lines += part
    rows = [[name, rec.status, _num(rec.seconds), f"`{rec.config_hash[:12]}`"]
            for name, rec in manifest.stages.items()]
    lines += ["## Provenance", ""] + _table(["stage", "status", "seconds", "config hash"], rows)
    return _front_matter(repo, cfg) + "\n".join(lines)
