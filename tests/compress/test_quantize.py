"""GGUF quantization: the requested mix really lands on every matrix, fallbacks are caught, Q8_0 ~ f16."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest

from cogumi_ray.compress.quantize import MIX_TYPES, quantize_gguf, resolve_qtype
from cogumi_ray.errors import ModelError
from cogumi_ray.generate.engines.llama_load import open_llama

pytest.importorskip("llama_cpp")

PROMPTS = [
    "What is 48 + 17? Answer with the number only.",
    "Sort the list [9, 0, 3, 3] in ascending order.",
    "Write a Python function add_7(x) that returns x + 7.",
    "What is 5 + 81? Answer with the number only.",
    "Sort the list [4, 1, 8, 2] in ascending order.",
    "Write a Python function add_42(x) that returns x + 42.",
    "What is 73 + 9? Answer with the number only.",
    "Sort the list [7, 7, 0, 5] in ascending order.",
    "Write a Python function add_13(x) that returns x + 13.",
    "Write a Python function add_99(x) that returns x + 99.",
]


@pytest.fixture(scope="module")
def f16_gguf(tiny_model_dir, tmp_path_factory) -> str:
    """The default tiny Llama (hidden 256, intermediate 768): every row fits K-quants."""
    from cogumi_ray.export.gguf_export import export_gguf

    return export_gguf(tiny_model_dir, str(tmp_path_factory.mktemp("q") / "tiny-f16.gguf")).path


@pytest.fixture(scope="module")
def narrow_gguf(tmp_path_factory) -> str:
    """intermediate 320: ffn_down rows (320) are not a multiple of 256, every other row (256) is."""
    from testkit import tiny_pairs

    from cogumi_ray.export.gguf_export import export_gguf
    from cogumi_ray.models.config import ModelConfig, TinyLlamaSpec
    from cogumi_ray.models.tiny import build_tiny

    cfg = ModelConfig(tiny=TinyLlamaSpec(intermediate_size=320))
    texts = [t for pair in tiny_pairs(60) for t in pair]
    model = build_tiny(cfg, texts, str(tmp_path_factory.mktemp("narrow_model")))
    return export_gguf(model, str(tmp_path_factory.mktemp("q") / "narrow-f16.gguf")).path


def test_qtype_names():
    assert resolve_qtype("q4_k_m") == ("Q4_K_M", 15)
    assert resolve_qtype(" Q8_0 ")[0] == "Q8_0" and resolve_qtype("f32")[0] == "F32"
    with pytest.raises(ModelError, match="unknown GGUF quantization type 'Q4_K_X'.*Q5_K_M"):
        resolve_qtype("Q4_K_X")


@pytest.mark.parametrize("qtype", ["Q4_K_M", "Q5_K_M"])
def test_k_quants_reach_every_matrix(f16_gguf, tmp_path, qtype):
    from gguf import GGUFReader

    rep = quantize_gguf(f16_gguf, str(tmp_path / f"{qtype}.gguf"), qtype.lower(), threads=1)
    assert rep.fallbacks == []
    base, extra = qtype[:4], "Q6_K"  # the mix: mostly Q4_K/Q5_K, Q6_K for output and some attn_v/ffn_down
    assert rep.type_counts[base] > rep.type_counts[extra] > 0
    for t in GGUFReader(rep.dst).tensors:
        if len(t.shape) == 1:
            assert t.tensor_type.name == "F32", t.name  # norms stay F32
        else:
            assert t.tensor_type.name in MIX_TYPES[qtype], t.name
    assert rep.tensor_types["output.weight"] == "Q6_K"
    assert 4.5 < rep.bits_per_weight < 7 and rep.ratio > 2.3 and rep.out_bytes == os.path.getsize(rep.dst)
    print(f"{qtype}: {rep.type_counts}, {rep.bits_per_weight:.2f} bits/weight, {rep.ratio:.2f}x")


def test_fallback_is_detected_and_strict_refuses(narrow_gguf, tmp_path):
    rep = quantize_gguf(narrow_gguf, str(tmp_path / "q5.gguf"), "Q5_K_M", threads=1)
    fallen = {f.name: f for f in rep.fallbacks}
    assert sorted(fallen) == ["blk.0.ffn_down.weight", "blk.1.ffn_down.weight"]  # exactly the 320-rows
    assert {f.type for f in fallen.values()} <= {"Q5_1", "Q8_0"}  # Q5_K -> Q5_1, Q6_K -> Q8_0
    assert all(f.row_length == 320 for f in fallen.values())
    assert rep.tensor_types["blk.0.ffn_up.weight"] == "Q5_K"
    with pytest.raises(ModelError, match="2 matrices .*ffn_down.*row length 320"):
        quantize_gguf(narrow_gguf, str(tmp_path / "strict.gguf"), "Q5_K_M", threads=1, strict=True)
    assert os.listdir(tmp_path) == ["q5.gguf"]  # strict wrote nothing, left no temp file


def _llama(path: str):
    # one thread: ggml threads spin at barriers, and the test box has 2 busy cores
    return open_llama(path, n_ctx=256, n_threads=1, n_threads_batch=1, logits_all=True,
                      verbose=False)


def _greedy(llm, ids: list[int], steps: int) -> list[int]:
    llm.reset()
    llm.eval(ids)
    out: list[int] = []
    for _ in range(steps):
        nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        out.append(nxt)
        if nxt == llm.token_eos():
            break
        llm.eval([nxt])
    return out


def test_q8_0_greedy_tokens_agree_with_f16(tiny_sft_model_dir, tmp_path):
    from cogumi_ray.export.gguf_export import export_gguf
    from cogumi_ray.models.chat import build_prompt
    from cogumi_ray.models.load import load_tokenizer

    f16 = export_gguf(tiny_sft_model_dir, str(tmp_path / "sft-f16.gguf")).path
    q8 = quantize_gguf(f16, str(tmp_path / "sft-q8.gguf"), "Q8_0", threads=1)
    assert set(q8.type_counts) == {"Q8_0", "F32"}
    tok = load_tokenizer(tiny_sft_model_dir)
    ref, quant = _llama(f16), _llama(q8.dst)
    try:
        agree = total = exact = 0
        for prompt in PROMPTS:
            ids = ref.tokenize(build_prompt(tok, prompt).encode(), add_bos=False, special=True)
            cont = _greedy(ref, ids, 16)
            # teacher-forced: Q8_0's argmax after each f16 prefix (one early flip does not cascade)
            quant.reset()
            quant.eval(ids + cont)
            preds = np.argmax(quant.scores[len(ids) - 1: len(ids) - 1 + len(cont)], axis=1)
            agree += int((preds == np.array(cont)).sum())
            total += len(cont)
            exact += _greedy(quant, ids, 16) == cont
    finally:
        ref.close()
        quant.close()
    print(f"Q8_0 vs f16: {agree}/{total} greedy tokens agree, {exact}/{len(PROMPTS)} identical runs")
    assert agree / total >= 0.95


def test_importance_matrix_is_used(f16_gguf, tiny_model_dir, tmp_path):
    from gguf import GGUFReader

    from cogumi_ray.compress.imatrix import compute_imatrix

    plain = quantize_gguf(f16_gguf, str(tmp_path / "plain.gguf"), "Q4_K_M", threads=1)
    imx = compute_imatrix(tiny_model_dir, PROMPTS)
    assert imx["blk.0.attn_q.weight"].shape == (256,) and imx["blk.1.ffn_down.weight"].shape == (768,)
    assert all((v > 0).all() for v in imx.values())
    # a skewed importance makes the quantizer trade error between columns: different bytes
    skewed = {k: v * np.linspace(0.01, 100, v.size, dtype=np.float32) for k, v in imx.items()}
    rep = quantize_gguf(f16_gguf, str(tmp_path / "imx.gguf"), "Q4_K_M", imatrix=skewed, threads=1)
    assert rep.imatrix_entries == len(imx) and rep.fallbacks == []
    a = {t.name: bytes(t.data) for t in GGUFReader(plain.dst).tensors}
    b = {t.name: bytes(t.data) for t in GGUFReader(rep.dst).tensors}
    assert a["blk.0.attn_q.weight"] != b["blk.0.attn_q.weight"]
    assert a["blk.0.attn_norm.weight"] == b["blk.0.attn_norm.weight"]
    bad = {"blk.0.attn_q.weight": np.ones(100, np.float32)}
    with pytest.raises(ModelError, match="'blk.0.attn_q.weight' has 100 values.*needs 256"):
        quantize_gguf(f16_gguf, str(tmp_path / "bad.gguf"), "Q4_K_M", imatrix=bad)
    with pytest.raises(ModelError, match="names none of"):
        quantize_gguf(f16_gguf, str(tmp_path / "bad.gguf"), "Q4_K_M", imatrix={"x": np.ones(3)})


def test_imatrix_files_load(tmp_path):
    """Both llama-imatrix formats give mean x²: legacy .dat (sums / ncall), GGUF (in_sum2 / counts)."""
    import gguf

    from cogumi_ray.compress.imatrix import load_imatrix

    sums = np.arange(1, 9, dtype=np.float32)
    name = b"blk.0.attn_q.weight"
    dat = tmp_path / "imatrix.dat"
    dat.write_bytes(struct.pack("<ii", 1, len(name)) + name + struct.pack("<ii", 4, 8) + sums.tobytes()
                    + struct.pack("<ii", 10, 4) + b"wiki")
    assert np.allclose(load_imatrix(str(dat))[name.decode()], sums / 4)
    path = str(tmp_path / "imatrix.gguf")
    writer = gguf.GGUFWriter(path, "imatrix")
    writer.add_tensor(f"{name.decode()}.in_sum2", sums.reshape(1, 8))
    writer.add_tensor(f"{name.decode()}.counts", np.array([2.0], np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert np.allclose(load_imatrix(path)[name.decode()], sums / 2)
    with pytest.raises(ModelError, match="not a llama.cpp importance matrix"):
        (tmp_path / "junk.dat").write_bytes(b"\x05\x00\x00\x00\xff")
        load_imatrix(str(tmp_path / "junk.dat"))


def test_llama_cpp_errors_are_reported(f16_gguf, tmp_path):
    q4 = quantize_gguf(f16_gguf, str(tmp_path / "q4.gguf"), "Q4_K_M", threads=1).dst
    with pytest.raises(ModelError, match="requantizing from type q._K is disabled"):
        quantize_gguf(q4, str(tmp_path / "again.gguf"), "Q8_0", threads=1)
    with pytest.raises(ModelError, match="does not exist"):
        quantize_gguf(str(tmp_path / "missing.gguf"), str(tmp_path / "x.gguf"))
    assert sorted(os.listdir(tmp_path)) == ["q4.gguf"]
