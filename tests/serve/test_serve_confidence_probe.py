"""The backends' base-confidence probe on the tiny model: the compress calibrator applied to the
very features the router stage reads (`calibration.gguf_prefix_features` / `hf_prefix_features`),
and a probe leaves the served answers unchanged."""

from __future__ import annotations

import time

import numpy as np
import pytest

from cogumi_ray.compress import calibration as cal
from cogumi_ray.generate.config import GenParams, LlamaCppEngineConfig
from cogumi_ray.generate.engines.base import EngineError
from cogumi_ray.serve.config import ServeConfig
from cogumi_ray.serve.protocol import ConfidenceProbe

pytest.importorskip("llama_cpp")

QUERIES = ["What is 48 + 17? Answer with the number only.",
           "Write a Python function add_7(x) that returns x + 7."]
KS = [1, 3, 4, 5]
GREEDY = GenParams(max_new_tokens=12)


@pytest.fixture(scope="module")
def calibrators(tmp_path_factory):
    """Platt and temperature calibrators fitted on made-up features, saved as compress saves them."""
    rng = np.random.default_rng(0)
    feats = np.column_stack([-rng.uniform(0, 3, 200), rng.uniform(0, 4, 200),
                             -rng.uniform(0, 8, 200), rng.uniform(0, 1, 200)])
    labels = (feats[:, 0] + rng.normal(0, 0.5, 200)) > -1.5
    root = tmp_path_factory.mktemp("calibrators")
    return {kind: fit(feats, labels).save(str(root / f"{kind}.json"))
            for kind, fit in (("platt", cal.fit_platt), ("temperature", cal.fit_temperature))}


@pytest.fixture(scope="module")
def llama_gen(serve_gguf, lora_ggufs, calibrators):
    from cogumi_ray.serve.backends.llama_cpp import LlamaCppGenerator

    gen = LlamaCppGenerator(ServeConfig(base=serve_gguf, adapters=lora_ggufs,
                                        calibrator_path=calibrators["platt"],
                                        llama_cpp=LlamaCppEngineConfig(n_ctx=512, n_threads=1)))
    yield gen
    gen.close()


def _chat(q: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": q}]


def test_llama_cpp_probe_equals_the_router_stage_features(llama_gen, serve_gguf,
                                                          tiny_sft_model_dir, calibrators):
    assert isinstance(llama_gen, ConfidenceProbe)
    ids = cal.chat_token_ids(tiny_sft_model_dir, QUERIES)  # how the router stage tokenises rows
    assert [llama_gen.prompt_ids(_chat(q)) for q in QUERIES] == ids
    feats = cal.gguf_prefix_features(serve_gguf, ids, KS, n_threads=1)  # (ks, rows, features)
    for kind, path in calibrators.items():
        calibrator = cal.Calibrator.load(path)
        llama_gen.calibrator = calibrator
        for row, q in enumerate(QUERIES):
            got = llama_gen.base_confidence(_chat(q), KS)
            assert len(got) == len(KS) and all(0.0 <= p <= 1.0 for p in got)
            want = [float(calibrator.predict(feats[i, row:row + 1])[0]) for i in range(len(KS))]
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5, err_msg=kind)
        assert len(set(np.round(llama_gen.base_confidence(_chat(QUERIES[0]), KS), 9))) > 1 or \
            kind == "temperature"  # the steps see different prefixes
    llama_gen.calibrator = cal.Calibrator.load(calibrators["platt"])


def test_a_probe_leaves_the_answers_unchanged(llama_gen):
    chat = _chat(QUERIES[1])
    before = [llama_gen.generate(chat, GREEDY, a).text for a in (None, "code", None)]
    llama_gen.base_confidence(chat, KS)
    base_after = llama_gen.generate(chat, GREEDY, None).text  # reuses the probe's prompt KV
    llama_gen.base_confidence(chat, KS)
    code_after = llama_gen.generate(chat, GREEDY, "code").text
    assert [base_after, code_after] == before[:2]
    llama_gen.generate(chat, GREEDY, "code")
    assert llama_gen.base_confidence(chat, KS) == pytest.approx(llama_gen.base_confidence(chat, KS))


def test_probe_latency_on_the_tiny_model(llama_gen, capsys):
    """What the probe adds to a routed base answer (printed; only loosely asserted): each request
    starts from a cold context, as one after another query does."""
    chat = _chat(QUERIES[1])

    def answer(probe: bool) -> tuple[float, int]:
        llama_gen.llm.reset()
        t0 = time.perf_counter()
        if probe:
            llama_gen.base_confidence(chat, [3, 4, 5])
        tokens = llama_gen.generate(chat, GREEDY, None).completion_tokens
        return time.perf_counter() - t0, tokens

    answer(True)
    plain = sorted(answer(False)[0] for _ in range(15))[7]
    probed = sorted(answer(True)[0] for _ in range(15))[7]
    with capsys.disabled():
        print(f"\nmedian base answer ({answer(False)[1]} tokens): {1000 * plain:.2f} ms; with the "
              f"probe first: {1000 * probed:.2f} ms (+{1000 * (probed - plain):.2f} ms)")
    assert probed - plain < 1.0


def test_a_probe_without_a_calibrator_says_the_fix(serve_gguf):
    from cogumi_ray.serve.backends.llama_cpp import LlamaCppGenerator

    gen = LlamaCppGenerator(ServeConfig(base=serve_gguf,
                                        llama_cpp=LlamaCppEngineConfig(n_ctx=512, n_threads=1)))
    try:
        with pytest.raises(EngineError, match="serve.calibrator_path"):
            gen.base_confidence(_chat(QUERIES[0]), KS)
    finally:
        gen.close()


def test_hf_probe_equals_the_router_stage_features(tiny_sft_model_dir, peft_adapters, calibrators):
    from cogumi_ray.serve.backends.hf import HFGenerator

    gen = HFGenerator(ServeConfig(backend="hf", base=tiny_sft_model_dir, adapters=peft_adapters,
                                  calibrator_path=calibrators["platt"]))
    try:
        gen.load_adapter("code")  # the probe reads the base with the adapters switched off
        feats = cal.hf_prefix_features(tiny_sft_model_dir, QUERIES, KS)
        calibrator = cal.Calibrator.load(calibrators["platt"])
        for row, q in enumerate(QUERIES):
            want = [float(calibrator.predict(feats[i, row:row + 1])[0]) for i in range(len(KS))]
            np.testing.assert_allclose(gen.base_confidence(_chat(q), KS), want, rtol=0, atol=1e-5)
    finally:
        gen.close()


def test_the_model_server_probes_or_answers_none(serve_gguf, calibrators):
    """The deployment's method (outside Ray): the probe with a calibrator, None without one (the
    router then keeps the training mean instead of failing requests)."""
    import asyncio

    from cogumi_ray.serve.model_server import ModelServer

    llama = {"n_ctx": 512, "n_threads": 1}
    server = ModelServer(ServeConfig(base=serve_gguf, calibrator_path=calibrators["platt"],
                                     llama_cpp=llama).model_dump())
    got = asyncio.run(server.base_confidence(_chat(QUERIES[0]), [3, 4, 5]))
    assert got == pytest.approx(server.backend.base_confidence(_chat(QUERIES[0]), [3, 4, 5]))
    assert asyncio.run(server.stats())["confidence_probes"] == 1
    bare = ModelServer(ServeConfig(base=serve_gguf, llama_cpp=llama).model_dump())
    assert asyncio.run(bare.base_confidence(_chat(QUERIES[0]), [3])) is None
