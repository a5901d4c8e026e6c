"""The run log takes Ray's logging and forwarded worker output off the terminal into a file."""

from __future__ import annotations

import logging
import time

import pytest

from cogumi_ray import run_log


@pytest.fixture
def attached(tmp_path):
    path = run_log.attach(str(tmp_path / "logs" / "pipeline.log"))
    yield path
    run_log.detach()


def _read(path: str) -> str:
    for h in logging.getLogger().handlers:
        h.flush()
    with open(path, encoding="utf-8") as f:
        return f.read()


def test_ray_logger_goes_to_file_and_only_errors_to_terminal(attached, capsys):
    ray_like = logging.getLogger("ray.data.cogumi_test")
    ray_like.propagate = False
    console = logging.StreamHandler()  # what Ray's own logging config installs
    ray_like.addHandler(console)
    ray_like.setLevel(logging.INFO)
    run_log.quiet_libraries()
    assert console not in ray_like.handlers
    ray_like.info("operator progress 3/7")
    ray_like.error("operator failed")
    err = capsys.readouterr().err
    text = _read(attached)
    assert "operator progress 3/7" in text and "operator failed" in text
    assert "operator progress 3/7" not in err
    assert "operator failed" in err
    run_log.quiet_libraries()  # idempotent: one file handler, one error console
    ray_like.info("once")
    assert _read(attached).count("once") == 1


def test_cogumi_lines_stay_on_terminal_and_reach_the_file(tmp_path):
    import io

    terminal = io.StringIO()
    console = logging.StreamHandler(terminal)  # as `logging.basicConfig` in the CLI
    logging.getLogger().addHandler(console)
    path = run_log.attach(str(tmp_path / "run.log"))
    try:
        logging.getLogger("cogumi_ray.pipeline").warning("stage x: done in 3 s")
    finally:
        run_log.detach()
        logging.getLogger().removeHandler(console)
    assert "stage x: done in 3 s" in _read(path)
    assert "stage x: done in 3 s" in terminal.getvalue()


def test_attach_creates_folder_and_detach_restores(tmp_path):
    path = run_log.attach(str(tmp_path / "a" / "b" / "run.log"))
    assert run_log.active_path() == path
    run_log.detach()
    assert run_log.active_path() is None
    logging.getLogger("ray.data.cogumi_test2").warning("after detach")
    with open(path, encoding="utf-8") as f:
        assert "after detach" not in f.read()


def test_worker_output_goes_to_the_file_not_the_terminal(ray_session, attached, capfd):
    import ray

    @ray.remote
    def shout() -> int:
        print("worker-says-cogumi-7f3a", flush=True)
        return 1

    assert ray.get(shout.remote()) == 1
    deadline = time.monotonic() + 20  # Ray's log monitor forwards worker output every ~0.1-1 s
    while "worker-says-cogumi-7f3a" not in _read(attached) and time.monotonic() < deadline:
        time.sleep(0.2)
    text = _read(attached)
    assert "worker-says-cogumi-7f3a" in text
    assert "pid=" in text.split("worker-says-cogumi-7f3a")[0].rsplit("\n", 1)[-1]
    assert "worker-says-cogumi-7f3a" not in capfd.readouterr().out


def test_warnings_from_ray_code_go_to_the_file(tmp_path):
    import io

    terminal = io.StringIO()
    console = logging.StreamHandler(terminal)  # as `logging.basicConfig` in the CLI
    logging.getLogger().addHandler(console)
    attached = run_log.attach(str(tmp_path / "run.log"))
    try:
        _warn_both()
    finally:
        run_log.detach()
        logging.getLogger().removeHandler(console)
    text = _read(attached)
    assert "ray-warning-x" in text and "ray-warning-x" not in terminal.getvalue()
    assert "cogumi-warning-y" in text and "cogumi-warning-y" in terminal.getvalue()


def _warn_both() -> None:
    import warnings

    warnings.warn_explicit("min actors set to 2 (ray-warning-x)", UserWarning,
                           filename="/venv/site-packages/ray/data/op.py", lineno=1)
    warnings.warn_explicit("our own warning (cogumi-warning-y)", UserWarning,
                           filename="/work/cogumi_ray/x.py", lineno=1)


def test_attach_sets_quiet_defaults_and_detach_removes_them(tmp_path, monkeypatch):
    import os

    monkeypatch.delenv("LLM_COMPRESSOR_LOG_LEVEL", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "0")  # a user's own choice stays
    run_log.attach(str(tmp_path / "run.log"))
    try:
        assert os.environ["LLM_COMPRESSOR_LOG_LEVEL"] == "ERROR"
        assert os.environ["LLM_COMPRESSOR_LOG_FILE"] == str(tmp_path / "llmcompressor.log")
        assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "0"
    finally:
        run_log.detach()
    assert "LLM_COMPRESSOR_LOG_LEVEL" not in os.environ
    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "0"


def test_library_warnings_and_torch_logs_stay_in_the_file(tmp_path):
    import io
    import warnings

    terminal = io.StringIO()
    console = logging.StreamHandler(terminal)
    logging.getLogger().addHandler(console)
    path = run_log.attach(str(tmp_path / "run.log"))
    try:
        warnings.warn_explicit("saving offloaded modules (lib-warning-z)", UserWarning,
                               filename="/venv/site-packages/transformers/modeling_utils.py",
                               lineno=3)
        torch_like = logging.getLogger("torch.cogumi_test")
        torch_like.warning("is_fx_tracing (torch-note-q)")
    finally:
        run_log.detach()
        logging.getLogger().removeHandler(console)
    text = _read(path)
    assert "lib-warning-z" in text and "torch-note-q" in text
    assert "lib-warning-z" not in terminal.getvalue()
    assert "torch-note-q" not in terminal.getvalue()
