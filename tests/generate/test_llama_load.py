"""Opening GGUFs without llama.cpp's weight repacking where the CPU has AMX (it segfaults there)."""

from __future__ import annotations

import pytest

from cogumi_ray.generate.engines import llama_load


def _cpuinfo(tmp_path, flags: str) -> str:
    p = tmp_path / "cpuinfo"
    p.write_text(f"processor\t: 0\nmodel name\t: x\nflags\t\t: fpu sse2 avx2 {flags}\n\n")
    return str(p)


def test_cpu_has_amx_reads_the_flags(tmp_path):
    assert llama_load.cpu_has_amx(_cpuinfo(tmp_path, "amx_bf16 amx_tile amx_int8"))
    assert not llama_load.cpu_has_amx(_cpuinfo(tmp_path, "avx512f avx512_vnni"))
    assert not llama_load.cpu_has_amx(str(tmp_path / "missing"))


def test_env_switch_overrides_detection(monkeypatch):
    monkeypatch.setenv(llama_load.ENV, "1")
    assert llama_load.repack_enabled()
    monkeypatch.setenv(llama_load.ENV, "off")
    assert not llama_load.repack_enabled()
    monkeypatch.setenv(llama_load.ENV, "maybe")
    with pytest.raises(ValueError, match="COGUMI_LLAMA_REPACK must be 1 or 0"):
        llama_load.repack_enabled()
    monkeypatch.delenv(llama_load.ENV)
    assert llama_load.repack_enabled() == (not llama_load.cpu_has_amx())


def test_open_without_repack_loads_a_k_quant_and_restores_defaults(monkeypatch, serve_gguf,
                                                                   tmp_path):
    lcpp = pytest.importorskip("llama_cpp.llama_cpp")
    from cogumi_ray.compress.quantize import quantize_gguf

    q4 = str(tmp_path / "q4.gguf")
    quantize_gguf(serve_gguf, q4, "Q4_K_M", threads=1)
    monkeypatch.setenv(llama_load.ENV, "0")
    original = lcpp.llama_model_default_params
    llm = llama_load.open_llama(q4, n_ctx=128, n_threads=1, verbose=False)
    try:
        assert llm.model_params.use_extra_bufts is False
        llm.eval(llm.tokenize(b"hello there", add_bos=True))  # the matmul AMX crashed in
    finally:
        llm.close()
    assert lcpp.llama_model_default_params is original
    assert lcpp.llama_model_default_params().use_extra_bufts is True
