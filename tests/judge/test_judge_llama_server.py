"""The OpenAI judge path, official SDK, against a real OpenAI-compatible server: llama-cpp-python's
server over a GGUF the project exported from its tiny model. The tiny model knows nothing about
grading, which makes it a useful judge to test with: unconstrained it writes prose (malformed ->
re-asked -> unjudged); with the verdict schema enforced by the server's grammar it must reply
with parseable JSON. Either way a re-run is served from the cache."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from cogumi_ray.judge.cache import JudgeCache
from cogumi_ray.judge.config import JudgeConfig
from cogumi_ray.judge.judges import make_judge

pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python[server] not installed")
# Building, exporting and serving a model takes ~30 s on an idle 2-core box.
pytestmark = pytest.mark.slow

ROWS = [{"id": str(i), "instruction": f"What is {i} + {i}?", "response": str(2 * i),
         "answer": str(2 * i + i % 2)} for i in range(3)]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    from testkit import tiny_pairs

    from cogumi_ray.export.gguf_export import export_gguf
    from cogumi_ray.models.config import ModelConfig
    from cogumi_ray.models.tiny import build_tiny

    root = tmp_path_factory.mktemp("judge_llama")
    # 2048 positions: the judge rubric is long in the tiny byte-level tokenizer's tokens.
    model = build_tiny(ModelConfig(tiny={"max_position_embeddings": 2048}),
                       [t for pair in tiny_pairs() for t in pair], str(root / "hf"))
    gguf = export_gguf(model, str(root / "judge.gguf"), outtype="f16").path
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--model_alias", "tiny-judge",
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "1",
         "--seed", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(f"{url}/models", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"llama.cpp server did not start: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.5)
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def cfg(url: str, **kw) -> JudgeConfig:
    opts = dict(judge="openai_compatible", base_url=url, model="tiny-judge", max_tokens=256,
                max_reasks=1, timeout_s=120, max_retries=1)
    return JudgeConfig(**{**opts, **kw})


@pytest.mark.xfail(strict=False, reason="with the whitespace-isolating tokenizer the random tiny "
                   "judge under the JSON grammar does not close its object within max_tokens "
                   "(seen 2026-12-02); needs a judge model that terminates")
def test_grammar_constrained_tiny_judge_gives_parsed_verdicts_and_cached_rerun(llama_server,
                                                                               tmp_path):
    # room for a random model to close its JSON (single-byte whitespace tokens run long)
    c = cfg(llama_server, structured_output="json_object", max_tokens=1024)
    first = make_judge(c, cache=JudgeCache(str(tmp_path))).judge_rows(ROWS)
    for j in first:
        assert j.verdict in ("pass", "fail"), j.error
        assert 1 <= j.score <= 10 and set(j.criteria) == {
            "factual_accuracy", "completeness", "coherence", "helpfulness"}
        assert j.input_tokens > 0 and j.output_tokens > 0
        assert j.cost_usd == 0.0 and not j.cached  # self-hosted: no price configured
    again = make_judge(c, cache=JudgeCache(str(tmp_path))).judge_rows(ROWS)
    assert all(j.cached for j in again)
    assert [(j.verdict, j.score) for j in again] == [(j.verdict, j.score) for j in first]


def test_unconstrained_tiny_judge_is_reasked_then_unjudged(llama_server):
    c = cfg(llama_server, structured_output="off", max_tokens=48)
    (j,) = make_judge(c).judge_rows(ROWS[:1])
    assert j.verdict == "unjudged"
    assert "malformed judge reply after 1 re-asks" in j.error
    assert j.output_tokens > 48  # the first reply and the re-ask's reply were both paid for
