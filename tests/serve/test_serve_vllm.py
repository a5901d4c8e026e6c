"""The vLLM Generator backend on CPU: engine and sampling arguments from the config and the request,
the config switch's validation, the clear refusal without vLLM or a GPU, and the backend's own
logic (streaming, stop strings, usage, adapters, cancellation) driven by an engine double that
speaks vLLM's AsyncLLM interface. The real engine runs only in the `gpu` test at the end."""

from __future__ import annotations

import asyncio
import json
import sys
from contextlib import aclosing
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from cogumi_ray.errors import ConfigError, MissingDependencyError
from cogumi_ray.generate.config import GenParams
from cogumi_ray.generate.engines.base import EngineError
from cogumi_ray.serve.backends.vllm import (
    VLLMGenerator,
    adapter_rank,
    engine_kwargs,
    lora_rank_bound,
    request_sampling_kwargs,
    sampling_kwargs,
)
from cogumi_ray.serve.config import DeploymentConfig, ServeConfig, VLLMServeConfig
from cogumi_ray.serve.errors import ServeError
from cogumi_ray.serve.protocol import GenerationRequest, Generator, GenResult
from cogumi_ray.serve.threads import iterate_in_thread

GPU = DeploymentConfig(num_gpus=1)
CHAT = [{"role": "user", "content": "What is 48 + 17?"}]


def _cfg(**kw) -> ServeConfig:
    return ServeConfig(**{"backend": "vllm", "base": "/models/llama", "generator": GPU, **kw})


def _peft(folder, r: int, rank_pattern: dict[str, int] | None = None) -> str:
    folder.mkdir()
    conf = {"r": r, "lora_alpha": 2 * r, "peft_type": "LORA", "rank_pattern": rank_pattern or {}}
    (folder / "adapter_config.json").write_text(json.dumps(conf))
    return str(folder)


# argument builders


def test_engine_kwargs_size_multi_lora_from_the_adapters():
    cfg = _cfg(max_adapters_per_replica=3,
               vllm=VLLMServeConfig(dtype="bfloat16", max_model_len=4096, gpu_memory_utilization=0.85))
    ranks = {"code": 128, "reasoning": 112, "automation": 96}  # configs/llama31-8b.yaml
    assert engine_kwargs(cfg, "/local/llama", ranks) == {
        "model": "/local/llama", "tokenizer": "/local/llama", "tensor_parallel_size": 1,
        "gpu_memory_utilization": 0.85, "dtype": "bfloat16", "enforce_eager": False, "seed": 0,
        "max_model_len": 4096, "enable_lora": True, "max_lora_rank": 128, "max_loras": 3,
        "max_cpu_loras": 3,
    }
    # ranks round up to one vLLM accepts; max_loras bounded by the adapters there are
    kw = engine_kwargs(_cfg(max_adapters_per_replica=4), "m", {"code": 12})
    assert (kw["max_lora_rank"], kw["max_loras"], kw["max_cpu_loras"]) == (16, 1, 4)
    kw = engine_kwargs(_cfg(vllm=VLLMServeConfig(max_lora_rank=256, max_loras=2)), "m",
                       {"a": 8, "b": 64, "c": 32})
    assert (kw["max_lora_rank"], kw["max_loras"], kw["max_cpu_loras"]) == (256, 2, 4)
    # no adapters: no LoRA machinery on the GPU
    assert "enable_lora" not in engine_kwargs(_cfg(), "m", {})


def test_lora_rank_limits():
    assert [lora_rank_bound(r) for r in (1, 2, 8, 9, 96, 128, 300, 512)] == [
        1, 8, 8, 16, 128, 128, 320, 512]
    with pytest.raises(ConfigError, match="exceeds vLLM's largest max_lora_rank 512"):
        lora_rank_bound(513)
    with pytest.raises(ConfigError, match="max_lora_rank 64 is below adapter 'code'.*128"):
        engine_kwargs(_cfg(vllm=VLLMServeConfig(max_lora_rank=64)), "m", {"code": 128, "x": 8})


def test_adapter_rank_reads_peft_folders(tmp_path):
    assert adapter_rank(_peft(tmp_path / "a", 16)) == 16
    assert adapter_rank(_peft(tmp_path / "b", 16, {"model.layers.0.mlp.down_proj": 48})) == 48
    with pytest.raises(EngineError, match="adapter_config.json missing"):
        adapter_rank(str(tmp_path))


def test_sampling_kwargs_from_requests():
    greedy = sampling_kwargs(GenParams(max_new_tokens=64, top_p=0.5))
    assert greedy == {"n": 1, "max_tokens": 64, "temperature": 0.0, "top_p": 1.0, "seed": 0}
    sampled = sampling_kwargs(GenParams(max_new_tokens=8, temperature=0.7, top_p=0.9, seed=3,
                                        stop=["\n\n", "END"]))
    assert sampled == {"n": 1, "max_tokens": 8, "temperature": 0.7, "top_p": 0.9, "top_k": 50,
                       "seed": 3, "stop": ["\n\n", "END"]}
    # n choices: one vLLM request each, choice i with seed + i (as every backend samples them)
    req = GenerationRequest(CHAT, GenParams(max_new_tokens=5, temperature=1.0, seed=7, stop=["."]),
                            "cogumi", n=3)
    per_choice = request_sampling_kwargs(req)
    assert [k["seed"] for k in per_choice] == [7, 8, 9]
    assert all(k["n"] == 1 and k["max_tokens"] == 5 and k["stop"] == ["."] for k in per_choice)


# the config switch


def test_vllm_switch_is_validated_at_load():
    from cogumi_ray.serve.config import serve_config_from_args

    ok = serve_config_from_args({"backend": "vllm", "base": "/m/llama", "adapters.code": "/a/code",
                                 "generator.num_gpus": "1", "vllm.max_lora_rank": "128"})
    assert ok.backend == "vllm" and ok.vllm.max_lora_rank == 128
    with pytest.raises(ConfigError, match=r"not GGUF files \(base = '/m/model.gguf'\).*llama_cpp"):
        serve_config_from_args({"backend": "vllm", "base": "/m/model.gguf", "generator.num_gpus": "1"})
    with pytest.raises(ValidationError, match=r"adapters.code = 'code.gguf'"):
        _cfg(adapters={"code": "code.gguf"})
    with pytest.raises(ValidationError, match="set generator.num_gpus to 1"):
        ServeConfig(backend="vllm", base="/m/llama")
    with pytest.raises(ValidationError, match="set generator.num_gpus to 2"):
        _cfg(vllm=VLLMServeConfig(tensor_parallel_size=2))
    assert _cfg(generator=DeploymentConfig(num_gpus=0.5)).generator.num_gpus == 0.5
    with pytest.raises(ValidationError, match=r"max_lora_rank 100 is not one vLLM accepts"):
        _cfg(vllm=VLLMServeConfig(max_lora_rank=100))
    with pytest.raises(ConfigError, match="vllm.max_lora_ranks: unknown key"):
        serve_config_from_args({"backend": "vllm", "base": "/m", "generator.num_gpus": "1",
                                "vllm.max_lora_ranks": "8"})
    # the other backends are untouched by the vLLM block
    assert ServeConfig(base="m.gguf").backend == "llama_cpp"


def test_refuses_without_vllm_or_gpu(monkeypatch):
    from cogumi_ray.serve.backends import make_generator

    cfg = _cfg()
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError, as without it
    with pytest.raises(MissingDependencyError, match=r'vLLM.*To resolve: pip install "cogumi-ray\[gpu\]"'):
        make_generator(cfg)
    import torch

    monkeypatch.setitem(sys.modules, "vllm", SimpleNamespace())  # installed, but no GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(MissingDependencyError, match="CUDA GPU.*no CUDA device.*num_gpus >= 1"):
        make_generator(cfg)


# the backend, on an engine double


class FakeOutputs:
    """vLLM's RequestOutput as the backend reads it: cumulative text and token ids."""

    def __init__(self, text: str, tokens: int, reason: str | None) -> None:
        self.outputs = [SimpleNamespace(text=text, token_ids=list(range(tokens)), finish_reason=reason)]
        self.finished = reason is not None


class FakeEngine:
    """AsyncLLM's generate/abort/add_lora/remove_lora: answers each request with `answer`, one
    word per step, and honours max_tokens and stop strings as vLLM does (stop not in the text)."""

    def __init__(self, answer: str, step_s: float = 0.0) -> None:
        self.answer = answer
        self.step_s = step_s
        self.model_config = SimpleNamespace(max_model_len=256)
        self.requests: list[tuple] = []
        self.aborted: list[str] = []
        self.stopped: list[str] = []  # requests whose generator was closed before the end
        self.loras: list[tuple] = []

    async def generate(self, prompt, sampling, request_id, lora_request=None):
        self.requests.append((prompt, sampling, request_id, lora_request))
        words = self.answer.split(" ")
        text = ""
        try:
            for i, word in enumerate(words):
                await asyncio.sleep(self.step_s)
                text += ("" if i == 0 else " ") + word
                cut = min((text.find(s) for s in sampling.get("stop", []) if s in text), default=-1)
                if cut >= 0:
                    yield FakeOutputs(text[:cut], i + 1, "stop")
                    return
                if i + 1 == sampling["max_tokens"]:
                    yield FakeOutputs(text, i + 1, "length")
                    return
                yield FakeOutputs(text, i + 1, "stop" if i + 1 == len(words) else None)
        except (asyncio.CancelledError, GeneratorExit):
            self.stopped.append(request_id)
            raise

    async def abort(self, request_id):
        self.aborted.append(request_id)

    async def add_lora(self, lora):
        self.loras.append(("add", *lora))
        return True

    async def remove_lora(self, lora_id):
        self.loras.append(("remove", lora_id))
        return True


class OnFake(VLLMGenerator):
    """The backend with the engine double where vLLM would be; everything else is the real code
    (tokenizer and chat template of the model folder, engine loop thread, stop/usage handling)."""

    def __init__(self, cfg: ServeConfig, engine: FakeEngine) -> None:
        self.fake = engine
        self._setup(cfg)

    async def _start_engine(self, kwargs):
        self.engine_kwargs = kwargs
        return self.fake

    def _vllm_request(self, ids, params, adapter):
        return ids, sampling_kwargs(params), self._lora_request(adapter)

    def _lora_request(self, adapter):
        return None if adapter is None else (adapter, self._ids[adapter], self.paths[adapter])


@pytest.fixture
def on_fake(tiny_sft_model_dir, peft_adapters):
    made = []

    def make(answer: str, step_s: float = 0.0, **cfg) -> OnFake:
        gen = OnFake(_cfg(base=tiny_sft_model_dir, adapters=peft_adapters, **cfg),
                     FakeEngine(answer, step_s))
        made.append(gen)
        return gen

    yield make
    for gen in made:
        gen.close()


def test_streams_with_usage_and_finish_reasons(on_fake):
    gen = on_fake("The answer is 65 . END more")
    assert isinstance(gen, Generator) and gen.model_name.startswith("tiny_sft_model")
    assert gen.engine_kwargs["enable_lora"] and gen.engine_kwargs["max_lora_rank"] == 8  # rank 4
    assert gen.n_ctx == 256  # the engine's max_model_len when the config sets none
    params = GenParams(max_new_tokens=32, stop=[" END"])
    items = list(gen.stream(CHAT, params, None))
    *pieces, result = items
    assert isinstance(result, GenResult) and all(isinstance(p, str) for p in pieces)
    assert "".join(pieces) == result.text == "The answer is 65 ."
    assert (result.finish_reason, result.completion_tokens) == ("stop", 6)
    ids, sampling, _, lora = gen.fake.requests[-1]
    assert ids == gen.prompt_ids(CHAT) and result.prompt_tokens == len(ids)
    assert sampling["stop"] == [" END"] and lora is None
    short = gen.generate("raw text", GenParams(max_new_tokens=3), None)
    assert (short.text, short.finish_reason, short.completion_tokens) == ("The answer is", "length", 3)
    assert gen.fake.requests[-1][0] == list(gen.tokenizer("raw text")["input_ids"])


def test_prompt_ids_match_the_hf_backend(on_fake, tiny_sft_model_dir):
    from cogumi_ray.serve.backends.hf import HFGenerator

    gen = on_fake("x")
    hf = HFGenerator(ServeConfig(backend="hf", base=tiny_sft_model_dir))
    try:
        for prompt in (CHAT, [{"role": "system", "content": "Be brief."}, *CHAT], "raw 1 + 2 ="):
            assert gen.prompt_ids(prompt) == hf.prompt_ids(prompt)
    finally:
        hf.close()


def test_too_long_prompt_is_refused_before_any_request(on_fake):
    gen = on_fake("x", vllm=VLLMServeConfig(max_model_len=64))
    with pytest.raises(ServeError, match="context window of 64") as e:
        gen.generate(CHAT, GenParams(max_new_tokens=60), None)
    assert e.value.status == 400 and gen.fake.requests == []


def test_adapters_are_lora_requests_with_stable_ids(on_fake, peft_adapters):
    gen = on_fake("ok")
    gen.generate(CHAT, GenParams(), "math")
    gen.generate(CHAT, GenParams(), "code")
    gen.generate(CHAT, GenParams(), "math")
    loras = [r[3] for r in gen.fake.requests]
    assert loras == [("math", 2, peft_adapters["math"]), ("code", 1, peft_adapters["code"]),
                     ("math", 2, peft_adapters["math"])]
    assert gen.fake.loras == [("add", "math", 2, peft_adapters["math"]),
                              ("add", "code", 1, peft_adapters["code"])]  # loaded once each
    gen.unload_adapter("math")
    gen.unload_adapter("math")  # idempotent
    gen.load_adapter("math")
    assert gen.fake.loras[2:] == [("remove", 2), ("add", "math", 2, peft_adapters["math"])]
    with pytest.raises(EngineError, match=r"no adapter named 'nope'; configured: \['code', 'math'\]"):
        gen.generate(CHAT, GenParams(), "nope")


def test_unload_waits_for_requests_using_the_adapter(on_fake):
    gen = on_fake("one two three")
    stream = gen.stream(CHAT, GenParams(), "code")
    assert next(stream) == "one"
    gen.unload_adapter("code")  # Serve's multiplexer evicts it while a request decodes with it
    assert ("remove", 1) not in gen.fake.loras
    assert isinstance(list(stream)[-1], GenResult)
    assert gen.fake.loras[-1] == ("remove", 1)


def test_client_gone_aborts_the_vllm_request(on_fake):
    gen = on_fake(" ".join(f"w{i}" for i in range(200)), step_s=0.02)

    async def read_two_then_hang_up() -> list[str]:
        got = []
        pieces = iterate_in_thread(lambda: gen.stream(CHAT, GenParams(max_new_tokens=200), "code"))
        async with aclosing(pieces) as items:
            async for item in items:
                got.append(item)
                if len(got) == 2:
                    break  # as the Generator deployment does when the router stops reading
        return got

    assert asyncio.run(read_two_then_hang_up()) == ["w0", " w1"]
    request_id = gen.fake.requests[-1][2]
    assert gen.fake.aborted == [request_id] and gen.fake.stopped == [request_id]
    assert gen._busy == {"code": 0}  # released: the adapter can be evicted again


def test_engine_errors_are_named(on_fake):
    gen = on_fake("x")

    async def broken(*args, **kwargs):
        raise ValueError("prompt has token ids out of vocab")
        yield  # an async generator, as vLLM's

    gen.fake.generate = broken
    with pytest.raises(ServeError, match="vLLM rejected the request: prompt has token ids") as e:
        gen.generate(CHAT, GenParams(), None)
    assert e.value.status == 400

    async def dead(*args, **kwargs):
        raise RuntimeError("EngineCore died")
        yield

    gen.fake.generate = dead
    with pytest.raises(EngineError, match="vLLM failed to generate with adapter 'code'.*EngineCore died"):
        gen.generate(CHAT, GenParams(), "code")


# the real engine


@pytest.mark.gpu
def test_vllm_backend_on_a_gpu(tiny_sft_model_dir, peft_adapters):
    """vLLM (bf16/fp32 kernels, batched multi-LoRA) answers like PEFT, streams the same text, and
    aborts an abandoned stream. Needs CUDA and `pip install "cogumi-ray[gpu]"`."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    pytest.importorskip("vllm", reason="vLLM is not installed (the `gpu` extra)")
    from cogumi_ray.serve.backends.hf import HFGenerator

    cfg = _cfg(base=tiny_sft_model_dir, adapters=peft_adapters,
               vllm=VLLMServeConfig(dtype="float32", max_model_len=512, gpu_memory_utilization=0.3,
                                    enforce_eager=True))
    gen = VLLMGenerator(cfg)
    hf = HFGenerator(ServeConfig(backend="hf", base=tiny_sft_model_dir, adapters=peft_adapters))
    greedy = GenParams(max_new_tokens=16)
    try:
        for adapter in (None, "code", "math"):
            got = gen.generate(CHAT, greedy, adapter)
            want = hf.generate(CHAT, greedy, adapter)
            assert (got.text, got.prompt_tokens) == (want.text, want.prompt_tokens), adapter
            *pieces, last = gen.stream(CHAT, greedy, adapter)
            assert "".join(pieces) == last.text == got.text
        assert gen.generate(CHAT, greedy, "code").text != gen.generate(CHAT, greedy, None).text
        sampled = GenParams(max_new_tokens=16, temperature=1.0, seed=5)
        assert gen.generate(CHAT, sampled, "math").text == gen.generate(CHAT, sampled, "math").text
        stream = gen.stream(CHAT, GenParams(max_new_tokens=400), None)
        next(stream)
        stream.close()  # aborts the vLLM request; the engine keeps serving
        assert gen.generate(CHAT, greedy, None).text == hf.generate(CHAT, greedy, None).text
    finally:
        gen.close()
        hf.close()
