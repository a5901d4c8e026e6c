"""Every stage of the pipeline, end to end, on configs/smoke.yaml; a second run skips them all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cogumi_ray.pipeline import STAGES

REPO = Path(__file__).resolve().parents[1]


def _run(root: Path) -> subprocess.CompletedProcess:
    # A process of its own, as a user runs it: its own local Ray, the real CLI.
    cmd = [sys.executable, "-m", "cogumi_ray.cli", "pipeline", "run", "configs/smoke.yaml",
           "--root", str(root)]
    env = {**os.environ, "RAY_ADDRESS": ""}  # never join another test's Ray
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=2400)


@pytest.mark.slow
def test_smoke_pipeline_runs_every_stage_then_skips_them(tmp_path):
    first = _run(tmp_path)
    assert first.returncode == 0, first.stderr[-4000:]
    run = tmp_path / "smoke"
    stages = json.loads((run / "manifest.json").read_text())["stages"]
    assert {s.name: stages.get(s.name, {}).get("status") for s in STAGES} == {
        s.name: "done" for s in STAGES}
    base = stages["eval_base"]["metrics"]
    report = (run / "report.md").read_text()
    assert f"{100 * base['pass_rate']:.1f}%" in report  # a measured figure, not a placeholder
    assert (run / "report.html").stat().st_size > 10_000
    # The terminal holds cogumi's stage lines; Ray's own output is in the run's log file.
    log_file = (run / "logs" / "pipeline.log").read_text()
    assert "Started a local Ray instance" in log_file
    assert "Started a local Ray instance" not in first.stderr
    for ray_noise in ("logging_progress", "Running Dataset", "(raylet)", "TrainController"):
        assert ray_noise not in first.stderr + first.stdout, ray_noise
    assert first.stderr.count("stage train_base: done in") == 1

    second = _run(tmp_path)
    assert second.returncode == 0, second.stderr[-4000:]
    skipped = second.stderr.count("unchanged config and inputs, skipped")
    assert skipped == len(STAGES), second.stderr[-4000:]
    assert ": starting" not in second.stderr  # a skipped stage prints one line, not two
