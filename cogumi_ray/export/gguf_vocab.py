"""Tokenizer metadata for GGUF: a byte-level BPE HF tokenizer as llama.cpp's "gpt2" vocab.

llama.cpp does not run the HF tokenizer; it re-implements BPE from the token list and merges and
picks its pre-tokenizer regexes by *name*. So the name must be one llama.cpp knows whose regexes
equal the HF pre-tokenizer, or tokenization (and everything after it) silently differs. We match
the HF pre-tokenizer structurally and refuse anything we cannot vouch for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cogumi_ray.errors import ModelError

# Llama-3's split regex (tokenizer.json of every Llama-3.x model).
_LLAMA3_REGEX = (
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)

# token types (gguf.TokenType values, spelled out so this module imports without gguf)
NORMAL, CONTROL, USER_DEFINED, UNUSED = 1, 3, 4, 5


@dataclass
class VocabMeta:
    pre: str  # llama.cpp pre-tokenizer name
    tokens: list[str]
    types: list[int]
    merges: list[str]
    bos_id: int | None
    eos_id: int | None
    pad_id: int | None
    add_bos: bool
    add_eos: bool
    chat_template: str | None


def _is_byte_level(p: dict[str, Any], *, use_regex: bool) -> bool:
    return (
        p.get("type") == "ByteLevel"
        and not p.get("add_prefix_space", False)
        and bool(p.get("use_regex", True)) == use_regex
    )


def pre_tokenizer_name(spec: dict[str, Any] | None) -> str:
    """The llama.cpp pre-tokenizer name equivalent to a tokenizer.json `pre_tokenizer` entry."""
    if spec and _is_byte_level(spec, use_regex=True):
        return "gpt-2"  # regex: the GPT-2 one
    if spec and spec.get("type") == "Sequence":
        parts = spec.get("pretokenizers", [])
        if (
            len(parts) == 2
            and parts[0].get("type") == "Digits"
            and parts[0].get("individual_digits")
            and _is_byte_level(parts[1], use_regex=True)
        ):
            return "starcoder"  # regexes: `\p{N}` (each digit alone), then GPT-2's
        if (
            len(parts) == 2
            and parts[0].get("type") == "Split"
            and parts[0].get("pattern", {}).get("Regex") == _LLAMA3_REGEX
            and parts[0].get("behavior") == "Isolated"
            and _is_byte_level(parts[1], use_regex=False)
        ):
            return "llama-bpe"
    raise ModelError(
        f"tokenizer pre-tokenizer {json.dumps(spec)[:300]} has no known llama.cpp equivalent; "
        "supported: ByteLevel (gpt-2), Digits(individual)+ByteLevel (starcoder, the tiny model's), "
        "Llama-3 Split+ByteLevel (llama-bpe)"
    )


def vocab_meta(tokenizer: Any, vocab_size: int) -> VocabMeta:
    """Tokens, types, merges and special ids of a HF fast tokenizer, padded to `vocab_size`."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ModelError(
            "the GGUF exporter needs a fast (tokenizer.json) tokenizer; this folder has a slow "
            f"{type(tokenizer).__name__} (e.g. SentencePiece), which is not supported"
        )
    spec = json.loads(backend.to_str())
    model = spec.get("model", {})
    if model.get("type") != "BPE" or (spec.get("decoder") or {}).get("type") != "ByteLevel":
        raise ModelError(
            f"tokenizer model {model.get('type')!r} with decoder "
            f"{(spec.get('decoder') or {}).get('type')!r} is not supported; the GGUF exporter "
            "handles byte-level BPE only (GPT-2 / Llama-3 style)"
        )
    if spec.get("normalizer") is not None:
        raise ModelError(
            f"tokenizer normalizer {spec['normalizer'].get('type')!r} is not supported "
            "(llama.cpp's gpt2 vocab applies none)"
        )
    pre = pre_tokenizer_name(spec.get("pre_tokenizer"))

    by_id: dict[int, str] = {i: t for t, i in model["vocab"].items()}
    special: dict[int, bool] = {}
    for added in spec.get("added_tokens", []):
        by_id[added["id"]] = added["content"]
        special[added["id"]] = bool(added.get("special"))
    n = max(by_id) + 1
    if n > vocab_size:
        raise ModelError(f"tokenizer has {n} tokens but the model's vocab_size is {vocab_size}")
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:  # embedding rows past the tokenizer (padding to a round size)
            tokens.append(f"[PAD{i}]")
            types.append(UNUSED)
        else:
            tokens.append(by_id[i])
            types.append(NORMAL if i not in special else CONTROL if special[i] else USER_DEFINED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]

    probe = tokenizer("a")["input_ids"]
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    return VocabMeta(
        pre=pre,
        tokens=tokens,
        types=types,
        merges=merges,
        bos_id=tokenizer.bos_token_id,
        eos_id=tokenizer.eos_token_id,
        pad_id=tokenizer.pad_token_id,
        add_bos=len(probe) > len(bare) and probe[0] == tokenizer.bos_token_id,
        add_eos=len(probe) > len(bare) and probe[-1] == tokenizer.eos_token_id,
        chat_template=tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None,
    )


def write_vocab(writer: Any, meta: VocabMeta) -> None:
    writer.add_tokenizer_model("gpt2")  # llama.cpp's name for byte-level BPE
    writer.add_tokenizer_pre(meta.pre)
    writer.add_token_list(meta.tokens)
    writer.add_token_types(meta.types)
    writer.add_token_merges(meta.merges)
    for value, add in ((meta.bos_id, writer.add_bos_token_id), (meta.eos_id, writer.add_eos_token_id),
                       (meta.pad_id, writer.add_pad_token_id)):
        if value is not None:
            add(value)
    writer.add_add_bos_token(meta.add_bos)
    writer.add_add_eos_token(meta.add_eos)
    if meta.chat_template:
        writer.add_chat_template(meta.chat_template)
