"""`cogumi data generate` end to end through the CLI and the run manifest."""

from __future__ import annotations

import json

from cogumi_ray.cli import main


def test_cli_generates_raw_suite_and_skips_unchanged_rerun(tmp_path, capsys):
    args = ["data", "generate", "--root", str(tmp_path), "--name", "t",
            "--set", "suite.examples_per_domain=12", "--set", "suite.formats=[alpaca, qa]"]
    assert main(args) == 0
    manifest = json.loads((tmp_path / "t" / "manifest.json").read_text())
    rec = manifest["stages"]["suite"]
    assert rec["status"] == "done"
    raw = tmp_path / "t" / "suite" / "raw"
    assert rec["outputs"]["raw"] == str(raw)
    assert sorted(p.name for p in raw.iterdir()) == ["alpaca.jsonl", "qa.jsonl"]
    assert rec["metrics"]["clean_rows"] == 60
    assert rec["metrics"]["clean_per_domain"] == {d: 12 for d in
                                                  ("code", "math", "reasoning", "automation",
                                                   "general")}
    stats = json.loads((tmp_path / "t" / "suite" / "suite_stats.json").read_text())
    lines = sum(len(p.read_text().splitlines()) for p in raw.iterdir())
    assert lines == stats["rows_written"] == rec["metrics"]["rows_written"]
    assert "suite" in capsys.readouterr().out
    started = rec["started_at"]

    assert main(args) == 0  # unchanged config: skipped
    manifest = json.loads((tmp_path / "t" / "manifest.json").read_text())
    assert manifest["stages"]["suite"]["started_at"] == started

    # A changed config re-runs and leaves no stale files from the previous formats.
    assert main([*args[:-2], "--set", "suite.formats=[sharegpt]"]) == 0
    assert sorted(p.name for p in raw.iterdir()) == ["sharegpt.jsonl"]


def test_cli_rejects_unknown_suite_key(tmp_path, capsys):
    assert main(["data", "generate", "--root", str(tmp_path), "--set", "suite.nope=1"]) == 2
    assert "nope" in capsys.readouterr().err
