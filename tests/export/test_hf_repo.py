"""`export_hf_repo` / `push_to_hub`: a synthetic run built through RunContext (as the pipeline
writes manifests) on the tiny model, its adapters and GGUFs; the repo folder's layout, the card's
numbers (all from the manifest), the redacted config, and the upload against a local stand-in of
the Hub's HTTP API (create repo, validate README, preupload, commit)."""

from __future__ import annotations

import base64
import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cogumi_ray.config import CogumiConfig
from cogumi_ray.errors import ModelError, RunError
from cogumi_ray.export.hf_repo import REDACTED, config_mismatches, export_hf_repo, push_to_hub
from cogumi_ray.runs import Manifest, RunContext, StageOutput

SECRET_KEY = "sk-serve-secret-0123"
HUB_TOKEN = "hf_standin_token_4567"
EVAL_BASE = {"pass_rate": 0.375, "passed": 3, "total": 8, "pass_rate.code": 0.25, "total.code": 4,
             "pass_rate.math": 0.5, "total.math": 4, "pass_rate.easy": 0.75, "total.easy": 4,
             "pass_rate.hard": 0.0, "total.hard": 4}
DISTILL = {"pass_rate_before": 0.375, "pass_rate_after": 0.5, "pass_rate_delta": 0.125,
           "pass_rate_before.code": 0.25, "pass_rate_after.code": 0.5, "pass_rate_delta.code": 0.25,
           "pass_rate_before.math": 0.5, "pass_rate_after.math": 0.5, "pass_rate_delta.math": 0.0,
           "dedup_dropped": 17, "failures": 5}
CURATE = {"rows_in": 1000, "rows_out": 812, "quarantined": 40, "filtered": 60, "duplicates": 88,
          "duplicate_kinds": {"exact": 61, "near": 27, "near_clusters": 19}}
MODIFIERS = {"domains": ["code", "math"],
             "code_base_pass_rate": 0.25, "code_adapter_pass_rate": 0.75, "code_uplift_pp": 50.0,
             "code_other_domains_delta_pp": -2.5, "code_beats_base": True, "code_rank": 4,
             "math_base_pass_rate": 0.5, "math_adapter_pass_rate": 0.25, "math_uplift_pp": -25.0,
             "math_other_domains_delta_pp": 1.25, "math_beats_base": False, "math_rank": 8}
ROUTER = {"router": "logreg", "accuracy": 0.8125, "pass_rate": 0.6875, "modifier_share": 0.4375,
          "base_only_pass_rate": 0.375, "oracle_pass_rate": 0.75}


def _variants(gguf_dir: Path) -> list[dict[str, Any]]:
    return [
        {"name": "dense/hf", "kind": "hf", "size_bytes": 10493112, "packed_bytes": 8791286,
         "perplexity": 1.6776, "pass_rate": 0.4},
        {"name": "dense/F32", "kind": "gguf", "path": str(gguf_dir / "dense-f32.gguf"),
         "size_bytes": 5 * 2**20, "packed_bytes": 4 * 2**20, "perplexity": 1.6779, "pass_rate": 0.375},
        {"name": "dense/Q4_K_M", "kind": "gguf", "path": str(gguf_dir / "dense-Q4_K_M.gguf"),
         "size_bytes": 1733312, "packed_bytes": 1661992, "perplexity": 1.6796, "pass_rate": 0.3,
         "gen_tok_s": 4644.5},
    ]


def _write_json(path: Path, obj: object) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return str(path)


def make_run(root: Path, cfg: CogumiConfig, model_dir: str, gguf: str, peft: dict[str, str],
             lora: dict[str, str]) -> str:
    """A finished run whose manifest RunContext writes, with the config hashes run_pipeline
    records (so the exported config can be checked against them)."""
    from cogumi_ray.pipeline import stage_by_name

    ctx = RunContext(str(root / "synthetic"), name="synthetic")

    def stage(name: str, fn: Any) -> None:
        sections = stage_by_name(name).sections
        ctx.run_stage(name, fn, {s: getattr(cfg, s).model_dump(mode="json") for s in sections})

    def curate() -> StageOutput:
        return StageOutput({"report": _write_json(Path(ctx.stage_dir("curate")) / "r.json", {})},
                           dict(CURATE))

    def compress() -> StageOutput:
        d = Path(ctx.stage_dir("compress")) / "gguf"
        d.mkdir()
        shutil.copy(gguf, d / "dense-f32.gguf")
        (d / "dense-Q4_K_M.gguf").write_bytes(b"GGUF q4 stand-in")
        report = _write_json(d.parent / "report.json", {"variants": _variants(d),
                                                        "chosen": "dense/Q4_K_M"})
        return StageOutput({"ggufs": str(d), "gguf": str(d / "dense-Q4_K_M.gguf"),
                            "report": report}, {"chosen": "dense/Q4_K_M"})

    def modifiers() -> StageOutput:
        d = Path(ctx.stage_dir("modifiers")) / "adapters"
        for name, path in peft.items():
            shutil.copytree(path, d / name)
        # code has its LoRA GGUF in the run; math predates them (the export makes one)
        return StageOutput({"adapters": str(d), "code_adapter_gguf": lora["code"]}, dict(MODIFIERS))

    def router() -> StageOutput:
        d = Path(ctx.stage_dir("router"))
        _write_json(d / "router" / "bundle.json", {"costs": [1.0, 1.2]})
        _write_json(d / "router" / "escalation" / "detector.json", {"kind": "rules"})
        return StageOutput({"router": str(d / "router"),
                            "report": _write_json(d / "report.json", {"chosen": "logreg"})},
                           dict(ROUTER))

    def failed_eval() -> StageOutput:
        raise RuntimeError("humaneval sandbox unavailable")

    stage("curate", curate)
    stage("train_base", lambda: StageOutput({"model": model_dir}, {"steps": 30}))
    stage("eval_base", lambda: StageOutput({}, dict(EVAL_BASE)))
    stage("distill", lambda: StageOutput({"model": model_dir}, dict(DISTILL)))
    stage("compress", compress)
    stage("modifiers", modifiers)
    stage("router", router)
    with pytest.raises(RuntimeError):
        stage("eval", failed_eval)
    return ctx.run_dir


@pytest.fixture(scope="module")
def cfg() -> CogumiConfig:
    return CogumiConfig.model_validate({"serve": {"api_keys": [SECRET_KEY]}})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, cfg, tiny_sft_model_dir, serve_gguf, peft_adapters, lora_ggufs):
    return make_run(tmp_path_factory.mktemp("hf_run"), cfg, tiny_sft_model_dir, serve_gguf,
                    peft_adapters, lora_ggufs)


@pytest.fixture(scope="module")
def repo(run_dir, cfg, tmp_path_factory) -> Path:
    return Path(export_hf_repo(run_dir, str(tmp_path_factory.mktemp("hf") / "repo"), config=cfg))


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_layout(repo, tiny_sft_model_dir, lora_ggufs):
    files = _files(repo)
    base = {p.name for p in Path(tiny_sft_model_dir).iterdir() if p.is_file()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= base <= files
    assert {"README.md", "gguf/dense-f32.gguf", "gguf/dense-Q4_K_M.gguf",
            "adapters/code/adapter_config.json", "adapters/code/adapter_model.safetensors",
            "adapters/math/adapter_config.json", "adapters/code.gguf", "adapters/math.gguf",
            "router/bundle.json", "router/escalation/detector.json", "router/report.json",
            "cogumi/config.yaml", "cogumi/manifest.json"} <= files
    assert (repo / "model.safetensors").read_bytes() == (
        Path(tiny_sft_model_dir) / "model.safetensors").read_bytes()
    assert (repo / "adapters/code.gguf").read_bytes() == Path(lora_ggufs["code"]).read_bytes()
    # math had no LoRA GGUF in the run: exported from its PEFT folder, a real LoRA GGUF
    import gguf

    reader = gguf.GGUFReader(str(repo / "adapters/math.gguf"))
    assert reader.fields["general.type"].contents() == "adapter"
    assert not any(p.name.startswith("repo.tmp-") for p in repo.parent.iterdir())


def test_card_numbers_come_from_the_manifest(repo):
    card = (repo / "README.md").read_text()
    front, body = card.split("---\n")[1], card.split("---\n", 2)[2]
    import yaml

    meta = yaml.safe_load(front)
    assert meta["license"] == "other" and meta["library_name"] == "transformers"
    assert {"cogumi", "llama", "gguf", "peft", "lora", "router"} <= set(meta["tags"])
    for row in ("| code | 25.0% | 4 |", "| math | 50.0% | 4 |", "| **all** | 37.5% | 8 |"):
        assert row in body  # base per domain (difficulties are not domains)
    assert "| easy |" not in body
    assert "| code | 25.0% | 50.0% | +25.00 pp |" in body  # distillation per domain
    assert "| **all** | 37.5% | 50.0% | +12.50 pp |" in body
    assert "| **dense/Q4_K_M** | 1.653 | 1.585 | 30.0% | 1.6796 | 4644.5 | `gguf/dense-Q4_K_M.gguf` |" in body
    assert "| dense/F32 | 5.000 | 4.000 | 37.5% | 1.6779 | – | `gguf/dense-f32.gguf` |" in body
    assert "| dense/hf | 10.007 | 8.384 | 40.0% | 1.6776 | – |  |" in body
    assert "| code | 25.0% | 75.0% | +50.00 pp | -2.50 pp | 4 | yes |" in body  # modifier uplift
    assert "| math | 50.0% | 25.0% | -25.00 pp | +1.25 pp | 8 | no |" in body
    for row in ("| rows read | 1,000 |", "| exact duplicates | 61 |",
                "| near duplicates (MinHash LSH) | 27 |", "| near-duplicate clusters | 19 |",
                "| rows kept | 812 |", "| distillation rows dropped as duplicates | 17 |"):
        assert row in body  # dedup stats
    assert "| accuracy | 81.2% |" in body and "| routed pass rate | 68.8% |" in body
    assert "eval: failed (RuntimeError: humaneval sandbox unavailable)" in body
    assert "differs from the settings" not in body  # the config given is the run's


def test_config_is_redacted_and_checked(repo, run_dir, cfg):
    import yaml

    text = (repo / "cogumi/config.yaml").read_text()
    assert SECRET_KEY not in text and SECRET_KEY not in (repo / "README.md").read_text()
    data = yaml.safe_load(text)
    assert data["serve"]["api_keys"] == REDACTED
    assert data["serve"]["api_key_env"] == "COGUMI_API_KEYS"  # a variable's name stays
    assert data["curate"]["max_tokens"] == cfg.curate.max_tokens  # not a secret
    manifest = Manifest.model_validate(json.loads((repo / "cogumi/manifest.json").read_text()))
    assert config_mismatches(manifest, cfg) == []
    other = cfg.model_copy(update={"curate": cfg.curate.model_copy(update={"min_tokens": 99})})
    assert config_mismatches(manifest, other) == ["curate"]


def test_reexport_replaces_and_refuses_foreign_folders(run_dir, repo, tmp_path):
    (repo / "stale.txt").write_text("from an older export")
    again = Path(export_hf_repo(run_dir, str(repo)))  # no config this time
    assert not (again / "stale.txt").exists() and not (again / "cogumi/config.yaml").exists()
    assert "not included" in (again / "README.md").read_text()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ModelError, match="not a cogumi export"):
        export_hf_repo(run_dir, str(foreign))
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(RunError, match="no manifest.json"):
        export_hf_repo(str(tmp_path / "nothing"), str(tmp_path / "out"))


def test_push_needs_the_token(repo, monkeypatch):
    class Api:
        calls: list[str] = []

        def __getattr__(self, name: str) -> Any:
            self.calls.append(name)
            raise AssertionError("no Hub call without a token")

    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(ModelError, match=r"\$HF_TOKEN is not set"):
        push_to_hub(str(repo), "user/demo", api=Api())
    monkeypatch.setenv("MY_TOKEN", "  ")
    with pytest.raises(ModelError, match=r"\$MY_TOKEN is not set"):
        push_to_hub(str(repo), "user/demo", token_env="MY_TOKEN", api=Api())
    assert Api.calls == []


class _Hub(BaseHTTPRequestHandler):
    """The Hub endpoints upload_folder uses, answering "regular" uploads (content in the commit)."""

    calls: list[dict[str, Any]] = []

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        call = {"path": self.path.split("?")[0], "auth": self.headers.get("authorization"),
                "body": body}
        self.calls.append(call)
        host = f"http://{self.headers['host']}"
        path = call["path"]
        if path == "/api/repos/create":
            name = json.loads(body)
            self._json(200, {"url": f"{host}/{name['organization']}/{name['name']}"})
        elif path == "/api/validate-yaml":
            self._json(200, {"errors": [], "warnings": []})
        elif path.endswith("/preupload/main"):
            files = json.loads(body)["files"]
            self._json(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                        "shouldIgnore": False} for f in files]})
        elif "/commit/main" in path and "/denied/" in path:  # a Hub that echoes the credentials
            self._json(403, {"error": f"token {self.headers.get('authorization')} cannot write"})
        elif path.endswith("/commit/main"):
            repo_id = path.removeprefix("/api/models/").removesuffix("/commit/main")
            self._json(200, {"commitUrl": f"{host}/{repo_id}/commit/{'c' * 40}",
                             "commitOid": "c" * 40, "pullRequestUrl": None})
        else:
            self._json(404, {"error": f"the stand-in does not serve {path}"})

    def _json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def hub(monkeypatch):
    from huggingface_hub import constants

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Hub.calls = []
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # tests/conftest.py sets offline
    monkeypatch.setenv("HF_TOKEN", HUB_TOKEN)
    try:
        yield _Hub.calls
    finally:
        server.shutdown()
        server.server_close()


def test_push_uploads_every_file_with_the_env_token(repo, hub, caplog):
    caplog.set_level("DEBUG")
    url = push_to_hub(str(repo), "user/demo", commit_message="cogumi run synthetic")
    assert url.endswith("/user/demo/commit/" + "c" * 40)
    assert [c["path"] for c in hub] == ["/api/repos/create", "/api/validate-yaml",
                                        "/api/models/user/demo/preupload/main",
                                        "/api/models/user/demo/commit/main"]
    assert all(c["auth"] == f"Bearer {HUB_TOKEN}" for c in hub)
    create = json.loads(hub[0]["body"])
    assert create["name"] == "demo" and create["organization"] == "user"
    assert create["visibility"] == "private"  # private unless asked otherwise
    lines = [json.loads(line) for line in hub[-1]["body"].splitlines()]
    assert lines[0] == {"key": "header", "value": {"summary": "cogumi run synthetic",
                                                   "description": ""}}
    sent = {e["value"]["path"]: base64.b64decode(e["value"]["content"])
            for e in lines[1:] if e["key"] == "file"}
    assert set(sent) == _files(repo)
    assert all(sent[p] == (repo / p).read_bytes() for p in sent)
    assert HUB_TOKEN not in caplog.text
    assert all(HUB_TOKEN.encode() not in data for data in sent.values())


def test_push_errors_name_the_repo_without_the_token(repo, hub):
    with pytest.raises(ModelError) as e:
        push_to_hub(str(repo), "user/denied")
    assert "user/denied" in str(e.value) and "write token" in str(e.value)
    assert HUB_TOKEN not in str(e.value) and "***" in str(e.value)


def test_large_files_are_linked_small_ones_copied(run_dir, tmp_path, monkeypatch):
    import os

    from cogumi_ray.export import hf_repo

    run_gguf = Path(run_dir) / "compress" / "gguf" / "dense-f32.gguf"
    copied = Path(export_hf_repo(run_dir, str(tmp_path / "copied")))
    assert os.stat(copied / "gguf/dense-f32.gguf").st_ino != os.stat(run_gguf).st_ino
    monkeypatch.setattr(hf_repo, "LINK_MIN_BYTES", 1 << 16)  # the tiny GGUF counts as large
    linked = Path(export_hf_repo(run_dir, str(tmp_path / "linked")))
    assert os.stat(linked / "gguf/dense-f32.gguf").st_ino == os.stat(run_gguf).st_ino
    manifest = Path(run_dir) / "manifest.json"
    assert os.stat(linked / "cogumi/manifest.json").st_ino != os.stat(manifest).st_ino
