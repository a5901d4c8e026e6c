"""Byte-level BPE tokenizer for the tiny model, trained with `tokenizers` and wrapped for HF.

Design choices that matter downstream:
- Pre-tokenizer = every digit on its own, then the GPT-2 byte-level regex. Single-digit numbers
  help a tiny model with arithmetic, and the pair is exactly llama.cpp's "starcoder" pre-tokenizer
  (regexes `\\p{N}` then the GPT-2 one), so a GGUF export tokenizes identically.
- No merge joins whitespace to anything else. The GPT-2 regex keeps a leading space on a word
  (` Paris`), but the same word inside JSON or at the start of an answer has none (`"Paris"`),
  so with ordinary merges copying a value from the request means mapping between two unrelated
  ids. The merges are therefore learned on text whose whitespace runs are split off first; at
  run time the same regex still yields ` Paris`, but BPE can only make `Ġ` + `Paris` of it: a
  word is one id wherever it stands. Tokenization stays plain BPE over the merges list, which is
  what llama.cpp re-implements, so the GGUF export stays token-exact.
- No automatic BOS/EOS: the chat template writes `<|bos|>` itself and ends every turn with
  `<|end|>` (the EOS). Chat-formatted text is therefore complete and is encoded with
  `add_special_tokens=False` (see `chat.encode_chat`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from cogumi_ray.errors import ModelError

BOS, EOS, PAD = "<|bos|>", "<|end|>", "<|pad|>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIAL_TOKENS = (BOS, EOS, PAD, *ROLE_TOKENS)  # ids 0..5, in this order

# Every turn: role marker, newline, content, <|end|>. The generation prompt opens an assistant turn.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for message in messages -%}"
    "{%- if message['role'] not in ['system', 'user', 'assistant'] -%}"
    "{{ raise_exception('unknown chat role: ' + message['role']) }}"
    "{%- endif -%}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>\n' }}{%- endif -%}"
)


def _nonempty(texts: Iterable[str], limit: int | None) -> Iterator[str]:
    n = 0
    for t in texts:
        if not isinstance(t, str):
            raise ModelError(f"tokenizer training texts must be str, got {type(t).__name__}")
        if t:
            yield t
            n += 1
            if limit is not None and n >= limit:
                return


def train_tokenizer(
    texts: Iterable[str], *, vocab_size: int = 4096, min_frequency: int = 2,
    max_texts: int | None = None, model_max_length: int = 1024,
):
    """Train a byte-level BPE on `texts`; return a `PreTrainedTokenizerFast` with the chat template.

    Deterministic: the same texts in the same order give the same vocabulary and merges.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())  # no unk token: the 256 byte symbols cover every input
    digits = pre_tokenizers.Digits(individual_digits=True)
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    # Training only: whitespace runs become chunks of their own, so no merge spans a word boundary.
    core.pre_tokenizer = pre_tokenizers.Sequence([
        digits, pre_tokenizers.Split(Regex(r"\s+"), behavior="isolated"), byte_level,
    ])
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    stream = _nonempty(texts, max_texts)
    core.train_from_iterator(stream, trainer=trainer)
    core.pre_tokenizer = pre_tokenizers.Sequence([digits, byte_level])  # llama.cpp's "starcoder"
    if core.get_vocab_size() <= len(SPECIAL_TOKENS) + 256:
        raise ModelError(
            "tokenizer training produced no merges: the training texts are empty or too few "
            "(check the curated train split)"
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        extra_special_tokens=list(ROLE_TOKENS),
        chat_template=CHAT_TEMPLATE,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
        padding_side="right",
    )
