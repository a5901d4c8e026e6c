"""The one chat format used by training, generation and serving: the tokenizer's own template.

The tiny model's tokenizer carries ours (`tokenizer.CHAT_TEMPLATE`); a Llama-3.1-class folder
carries its own. Both render complete text, BOS included, so chat text is encoded with
`add_special_tokens=False` (`encode_chat`); otherwise a tokenizer that adds BOS would double it.
"""

from __future__ import annotations

from typing import Any

from cogumi_ray.errors import ModelError


def _render(tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise ModelError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', tokenizer)!r} has no chat template; "
            "use a tokenizer built by `cogumi model build` or an instruct model folder whose "
            "tokenizer_config.json / chat_template.jinja defines one"
        )
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def build_prompt(tokenizer: Any, instruction: str) -> str:
    """Chat-formatted prompt for `instruction`, ending with the assistant turn opener."""
    return _render(tokenizer, [{"role": "user", "content": instruction}], True)


def build_chat_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """Chat-formatted text of a whole conversation (system/user/assistant turns), ending with the
    assistant turn opener: what a served model continues. Encode it with `encode_chat`."""
    return _render(tokenizer, messages, True)


def build_sft_pair(tokenizer: Any, instruction: str, response: str) -> tuple[str, str]:
    """(prompt text, full text) for SFT: full = prompt + response + end of turn, ending with EOS.

    The prompt is a prefix of the full text, so the loss can be masked to the response tokens
    (tokens past `len(encode_chat(tok, prompt))`).
    """
    prompt = build_prompt(tokenizer, instruction)
    full = _render(
        tokenizer,
        [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}],
        False,
    )
    eos = tokenizer.eos_token
    if eos and not full.rstrip().endswith(eos):
        full = full.rstrip() + eos  # templates that end a turn with another marker still stop
    elif eos:
        full = full.rstrip()
    if not full.startswith(prompt):
        raise ModelError(
            "the tokenizer's chat template renders the prompt differently with and without the "
            "answer, so the response cannot be isolated for the loss; use a template whose "
            "generation prompt is a prefix of the full conversation"
        )
    return prompt, full


def encode_chat(tokenizer: Any, text: str) -> list[int]:
    """Token ids of chat-formatted text (already holding its BOS) without adding specials twice."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
