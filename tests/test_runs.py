import json

import pytest

from cogumi_ray import storage
from cogumi_ray.errors import RunError
from cogumi_ray.runs import RunContext, StageOutput


def _stage(ctx, calls, text="hello"):
    def fn():
        calls.append(1)
        out = storage.join(ctx.stage_dir("s"), "out.txt")
        storage.atomic_write_text(out, text)
        return StageOutput(outputs={"out": out}, metrics={"n": len(text)})

    return fn


def test_skip_when_unchanged_rerun_on_change_and_force(tmp_path):
    ctx = RunContext(str(tmp_path / "run"))
    calls: list[int] = []
    ctx.run_stage("s", _stage(ctx, calls), {"a": 1}, {"in": "h1"})
    r = ctx.run_stage("s", _stage(ctx, calls), {"a": 1}, {"in": "h1"})
    assert r.skipped and len(calls) == 1
    ctx.run_stage("s", _stage(ctx, calls), {"a": 2}, {"in": "h1"})  # config changed
    ctx.run_stage("s", _stage(ctx, calls), {"a": 2}, {"in": "h2"})  # input changed
    ctx.run_stage("s", _stage(ctx, calls), {"a": 2}, {"in": "h2"}, force=True)
    assert len(calls) == 4


def test_missing_output_forces_rerun(tmp_path):
    ctx = RunContext(str(tmp_path / "run"))
    calls: list[int] = []
    out = ctx.run_stage("s", _stage(ctx, calls), {}, {})
    (tmp_path / "run" / "s" / "out.txt").unlink()
    assert not storage.exists(out.outputs["out"])
    ctx.run_stage("s", _stage(ctx, calls), {}, {})
    assert len(calls) == 2


def test_manifest_records_everything_and_survives_reload(tmp_path):
    ctx = RunContext(str(tmp_path / "run"))
    ctx.run_stage("s", _stage(ctx, []), {"a": 1}, {"in": "h"})
    data = json.loads((tmp_path / "run" / "manifest.json").read_text())
    rec = data["stages"]["s"]
    assert rec["status"] == "done" and rec["metrics"] == {"n": 5}
    assert rec["inputs"] == {"in": "h"} and rec["output_hashes"]["out"]
    assert rec["seconds"] >= 0 and rec["config_hash"]
    again = RunContext(str(tmp_path / "run"))
    assert again.output("s.out").endswith("out.txt")
    assert not list((tmp_path / "run").glob("*.tmp-*"))  # atomic writes leave no temp files


def test_failed_stage_is_recorded_and_not_skipped(tmp_path):
    ctx = RunContext(str(tmp_path / "run"))

    def boom():
        raise ValueError("bad row 7")

    with pytest.raises(ValueError):
        ctx.run_stage("s", boom, {}, {})
    rec = ctx.manifest.stages["s"]
    assert rec.status == "failed" and "bad row 7" in rec.error
    calls: list[int] = []
    ctx.run_stage("s", _stage(ctx, calls), {}, {})
    assert calls == [1]


def test_output_of_unfinished_stage_and_corrupt_manifest(tmp_path):
    ctx = RunContext(str(tmp_path / "run"))
    with pytest.raises(RunError, match="has not finished"):
        ctx.output("train_base.model")
    (tmp_path / "run" / "manifest.json").write_text("{not json")
    with pytest.raises(RunError, match="unreadable"):
        RunContext(str(tmp_path / "run"))


def test_content_hash_tracks_directory_content(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "a.txt").write_text("1")
    h1 = storage.content_hash(str(d))
    (d / "a.txt").write_text("2")
    assert storage.content_hash(str(d)) != h1
    with pytest.raises(FileNotFoundError):
        storage.content_hash(str(tmp_path / "missing"))


def test_large_files_are_fingerprinted_by_sampled_windows(tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "FULL_HASH_LIMIT", 1 << 20)
    monkeypatch.setattr(storage, "_WINDOW", 1 << 16)
    big = tmp_path / "w.bin"
    data = bytearray(3 << 20)
    big.write_bytes(bytes(data))
    h1 = storage.content_hash(str(big))
    data[-1] = 1  # a change inside the last window is seen
    big.write_bytes(bytes(data))
    assert storage.content_hash(str(big)) != h1
    data.append(0)  # so is a change of size
    big.write_bytes(bytes(data))
    assert len({h1, storage.content_hash(str(big))}) == 2


def test_relative_roots_and_outputs_become_absolute(tmp_path, monkeypatch):
    """Ray workers run in their own directories: a relative path handed to them breaks."""
    from cogumi_ray.config import load_config

    monkeypatch.chdir(tmp_path)
    cfg = load_config(overrides={"run.root": "runs", "run.name": "r"})
    assert cfg.run_dir == str(tmp_path / "runs" / "r")
    ctx = RunContext(cfg.run_dir)
    (tmp_path / "rel.txt").write_text("x")
    ctx.run_stage("s", lambda: StageOutput(outputs={"out": "rel.txt"}), {}, {})
    assert ctx.output("s.out") == str(tmp_path / "rel.txt")
    assert storage.absolute("s3://b/k") == "s3://b/k"
