import subprocess
import sys

import pytest

from cogumi_ray.cli import main
from cogumi_ray.pipeline import STAGES


def test_help_is_fast_and_imports_nothing_heavy():
    code = (
        "import sys, cogumi_ray.cli as c\n"
        "c.build_parser()\n"
        "heavy = [m for m in ('torch', 'ray', 'transformers', 'pyarrow', 'llama_cpp') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    helped = subprocess.run([sys.executable, "-m", "cogumi_ray.cli", "--help"],
                            capture_output=True, text=True, check=True)
    assert "demo" in helped.stdout and "pipeline" in helped.stdout


def test_every_stage_has_a_command(capsys):
    for stage in STAGES:
        with pytest.raises(SystemExit) as e:
            main([*stage.command, "--help"])
        assert e.value.code == 0
        assert stage.help.split()[0] in capsys.readouterr().out


def test_bad_set_and_bad_config_exit_2(tmp_path, capsys):
    assert main(["pipeline", "status", "--set", "novalue"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    bad = tmp_path / "c.yaml"
    bad.write_text("trian: {}\n")
    assert main(["pipeline", "run", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "trian" in err and str(bad) in err


def test_unknown_force_stage_is_an_error(tmp_path, capsys):
    rc = main(["pipeline", "run", "configs/demo.yaml", "--root", str(tmp_path), "--force", "nope"])
    assert rc == 2 and "unknown stage 'nope'" in capsys.readouterr().err


def test_pipeline_run_only_takes_a_stage_list(tmp_path, capsys):
    from cogumi_ray.cli import build_parser

    args = build_parser().parse_args(["pipeline", "run", "c.yaml", "--only", "distill,modifiers",
                                      "--only", "eval"])
    assert args.only == ["distill", "modifiers", "eval"]
    assert build_parser().parse_args(["pipeline", "run", "c.yaml"]).only is None
    rc = main(["pipeline", "run", "configs/demo.yaml", "--root", str(tmp_path), "--only", "nope"])
    assert rc == 2 and "unknown stage 'nope'" in capsys.readouterr().err
    # a stage whose inputs no earlier stage of the run has made names what to run first
    rc = main(["pipeline", "run", "configs/demo.yaml", "--root", str(tmp_path), "--only", "judge"])
    assert rc == 2 and "has not finished" in capsys.readouterr().err


def test_status_of_missing_run(tmp_path, capsys):
    assert main(["pipeline", "status", "--root", str(tmp_path)]) == 2
    assert "no run" in capsys.readouterr().err


def test_pack_and_unpack_are_wired(tmp_path, capsys):
    src = tmp_path / "adapter"
    src.mkdir()
    (src / "adapter_config.json").write_text('{"r": 4}')
    archive, out = str(tmp_path / "a.cgpk"), tmp_path / "restored"
    assert main(["pack", str(src), "-o", archive, "--threads", "1"]) == 0
    assert main(["unpack", archive, "-o", str(out), "--threads", "1"]) == 0
    assert (out / "adapter_config.json").read_text() == '{"r": 4}'
    assert main(["unpack", archive]) == 2 and "--verify" in capsys.readouterr().err


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fake_finished_run(run_dir: str, gguf: str, code_lora: str) -> None:
    """A run whose export_gguf and modifiers stages finished, recorded as the pipeline does."""
    import os
    import shutil

    from cogumi_ray.runs import RunContext, StageOutput

    ctx = RunContext(run_dir)
    model = shutil.copy(gguf, os.path.join(ctx.stage_dir("export_gguf"), "model-f32.gguf"))
    ctx.run_stage("export_gguf", lambda: StageOutput({"gguf": model}, {"outtype": "f32"}),
                  {"export": {"gguf_outtype": "f32"}})
    adapters = os.path.join(ctx.stage_dir("modifiers"), "adapters")
    os.makedirs(adapters)
    lora = shutil.copy(code_lora, os.path.join(adapters, "code.gguf"))
    ctx.run_stage("modifiers", lambda: StageOutput(
        {"adapters": adapters, "code_adapter_gguf": lora},
        {"domains": ["code"], "code_adapter_gguf_mb": round(os.path.getsize(lora) / 2**20, 3)},
    ), {"modifiers": {"domains": ["code"]}})


def test_serve_a_finished_run_answers_the_openai_sdk(ray_session, serve_gguf, lora_ggufs, tmp_path,
                                                      capsys):
    openai = pytest.importorskip("openai")
    from ray import serve

    _fake_finished_run(str(tmp_path / "fake"), serve_gguf, lora_ggufs["code"])
    port = _free_port()
    argv = ["serve", "--root", str(tmp_path), "--name", "fake", "--port", str(port), "--no-block",
            "--set", "serve.llama_cpp.n_threads=1", "--set", "serve.llama_cpp.n_ctx=512"]
    try:
        assert main(argv) == 0
        printed = capsys.readouterr().out
        url = f"http://127.0.0.1:{port}/v1"
        assert f"at {url}" in printed and "models: model-f32, cogumi, cogumi:code" in printed
        assert f"curl {url}/chat/completions" in printed and "from openai import OpenAI" in printed
        client = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=60)
        assert [m.id for m in client.models.list()] == ["model-f32", "cogumi", "cogumi:code"]
        r = client.chat.completions.create(
            model="cogumi:code", max_tokens=8, temperature=0,
            messages=[{"role": "user", "content": "What is 48 + 17? Answer with the number only."}])
        assert r.model == "cogumi:code" and r.choices[0].finish_reason in ("stop", "length")
        assert r.usage.completion_tokens >= 1
    finally:
        serve.shutdown()


def test_serve_without_a_gguf_names_the_command(tmp_path, capsys):
    from cogumi_ray.runs import RunContext

    assert main(["serve", "--root", str(tmp_path), "--name", "fake"]) == 2
    assert "no run at" in capsys.readouterr().err
    RunContext(str(tmp_path / "fake"))  # a run where nothing has finished yet
    assert main(["serve", "--root", str(tmp_path), "--name", "fake"]) == 2
    err = capsys.readouterr().err
    assert "no GGUF to serve" in err and "cogumi export gguf --name fake" in err and "--backend hf" in err


def test_compress_tune_is_a_bare_flag():
    from cogumi_ray.cli import _load, build_parser

    assert _load(build_parser().parse_args(["compress", "--tune"])).compress.tune.enabled is True
    assert _load(build_parser().parse_args(["compress"])).compress.tune.enabled is False


def test_report_command_writes_the_report_of_a_run(tmp_path, capsys):
    from cogumi_ray.cli import main
    from cogumi_ray.runs import RunContext, StageOutput

    ctx = RunContext(str(tmp_path / "r"), name="r")
    ctx.run_stage("eval_base", lambda: StageOutput(outputs={}, metrics={"pass_rate": 0.25}), {}, {})
    assert main(["report", "--root", str(tmp_path), "--name", "r"]) == 0
    out = capsys.readouterr().out
    assert "report.html" in out and (tmp_path / "r" / "report.html").exists()
    assert main(["report", "--root", str(tmp_path), "--name", "missing"]) == 1


def test_serve_ui_needs_a_blocking_serve(tmp_path, capsys):
    from cogumi_ray.cli import main

    assert main(["serve", "--root", str(tmp_path), "--ui", "--no-block"]) == 2
    assert "--ui needs a blocking" in capsys.readouterr().err


def test_export_hf_is_wired(tmp_path, capsys):
    from cogumi_ray.cli import main

    assert main(["export", "hf", "--root", str(tmp_path), "--name", "missing"]) == 2
    assert "error:" in capsys.readouterr().err


def _run_export(tmp_path, model_dir, capsys) -> tuple[int, str]:
    from cogumi_ray import run_log

    argv = ["pipeline", "run", "configs/demo.yaml", "--root", str(tmp_path / "runs"), "--only",
            "export_gguf", "--set", f"export.model={model_dir}"]
    try:
        rc = main(argv)
    finally:
        run_log.detach()  # later tests must not log into this test's run
    return rc, capsys.readouterr().err


def test_a_failed_stage_names_itself_and_the_next_command(tmp_path, capsys):
    """A corrupt config.json makes export_gguf fail with an unexpected (non-cogumi) exception: the
    terminal gets the stage, the error and the command to re-run, the run log the traceback."""
    bad = tmp_path / "model"
    bad.mkdir()
    (bad / "config.json").write_text('{"model_type": "llama", ')
    rc, err = _run_export(tmp_path, bad, capsys)
    log = tmp_path / "runs" / "demo" / "logs" / "pipeline.log"
    assert rc == 1
    assert "stage export_gguf failed: JSONDecodeError: Expecting property name" in err
    assert (f"Fix the cause, then re-run: cogumi pipeline run configs/demo.yaml --root "
            f"{tmp_path / 'runs'} --only export_gguf --set export.model={bad}") in err
    assert "finished stages are skipped and export_gguf runs again" in err
    assert f"Log (with the traceback): {log}" in err
    assert "Traceback" not in err
    text = log.read_text()
    assert "ERROR cogumi_ray.pipeline: stage export_gguf failed\nTraceback" in text
    assert "json.decoder.JSONDecodeError" in text
    # a cogumi error inside the stage (a folder that is no model) gets the same next step, exit 2
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, err = _run_export(tmp_path, empty, capsys)
    assert rc == 2 and "stage export_gguf failed: " in err and "config.json is missing" in err
    assert "Fix the cause, then re-run: cogumi pipeline run configs/demo.yaml" in err
