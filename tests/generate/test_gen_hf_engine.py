"""HF engine on the tiny model: greedy determinism, batching == one-by-one, stops, sampling."""

from __future__ import annotations

import pytest

from cogumi_ray.errors import MissingDependencyError, ModelError
from cogumi_ray.generate.config import EngineConfig, GenParams, HFEngineConfig
from cogumi_ray.generate.engines import EngineError, cut_at_stop, engine_class, make_engine

PROMPTS = [
    "What is 12 + 30? Answer with the number only.",
    "Sort the list [3, 1, 2, 0] in ascending order.",
    "Write a Python function add_7(x) that returns x + 7.",
    "hi",
    "What is 5 + 5?",
]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # On a shared 2-core box, torch's OpenMP threads spin against each other: one thread is
    # many times faster than two for a model this small.
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    eng = make_engine(EngineConfig(hf=HFEngineConfig(batch_size=8)), tiny_model_dir)
    yield eng
    eng.close()


def test_greedy_is_deterministic_and_batching_matches_one_by_one(engine):
    params = GenParams(max_new_tokens=24)
    batched = engine.generate(PROMPTS, params)
    again = engine.generate(PROMPTS, params)
    single = [engine.generate([p], params)[0] for p in PROMPTS]
    assert [c.text for c in batched] == [c.text for c in again]
    assert [c.text for c in batched] == [c.text for c in single]
    assert [c.completion_tokens for c in batched] == [c.completion_tokens for c in single]
    # Left padding must not leak into the counts: each row counts its own prompt.
    assert [c.prompt_tokens for c in batched] == [c.prompt_tokens for c in single]
    assert len({c.prompt_tokens for c in batched}) > 1


def test_prompt_uses_the_chat_template(engine):
    from cogumi_ray.models.chat import build_prompt, encode_chat

    [c] = engine.generate([PROMPTS[0]], GenParams(max_new_tokens=2))
    ids = encode_chat(engine.tokenizer, build_prompt(engine.tokenizer, PROMPTS[0]))
    assert c.prompt_tokens == len(ids)
    assert c.completion_tokens <= 2


def test_length_finish_and_stop_strings(engine):
    [free] = engine.generate([PROMPTS[1]], GenParams(max_new_tokens=16))
    assert free.finish_reason in ("length", "stop")
    if free.finish_reason == "length":
        assert free.completion_tokens == 16
    text = free.text
    assert len(text) >= 4, f"need some generated text to pick a stop string from: {text!r}"
    stop = text[len(text) // 2 : len(text) // 2 + 2]
    [stopped] = engine.generate([PROMPTS[1]], GenParams(max_new_tokens=16, stop=[stop]))
    assert stopped.text == text[: text.find(stop)]
    assert stopped.finish_reason == "stop"
    assert stop not in stopped.text


def test_sampling_is_seeded(engine):
    p1 = GenParams(max_new_tokens=12, temperature=1.0, seed=1)
    a = [c.text for c in engine.generate(PROMPTS, p1)]
    b = [c.text for c in engine.generate(PROMPTS, p1)]
    c = [c.text for c in engine.generate(PROMPTS, GenParams(max_new_tokens=12, temperature=1.0, seed=2))]
    assert a == b
    assert a != c


def test_cut_at_stop_takes_the_earliest():
    assert cut_at_stop("abc END x STOP", ["STOP", "END"]) == ("abc ", True)
    assert cut_at_stop("abc", ["zz", ""]) == ("abc", False)


def test_bad_model_and_device_errors(tmp_path, tiny_model_dir):
    with pytest.raises(EngineError, match="needs a model"):
        make_engine(EngineConfig(), None)
    with pytest.raises(ModelError, match="does not exist"):
        make_engine(EngineConfig(), str(tmp_path / "nope"))
    with pytest.raises(EngineError, match="unknown engine 'tgi'.*valid engines"):
        engine_class("tgi")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(MissingDependencyError, match="cuda"):
            make_engine(EngineConfig(hf=HFEngineConfig(device="cuda")), tiny_model_dir)


def test_engine_config_is_strict():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="kind"):
        EngineConfig(kind="tgi")
    with pytest.raises(ValidationError, match="extra"):
        EngineConfig.model_validate({"hf": {"batchsize": 4}})
    with pytest.raises(ValidationError):
        GenParams(temperature=-1)
