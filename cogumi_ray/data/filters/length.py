"""Length filter in approximate tokens.

The model's tokenizer does not exist at curation time (it is trained on the curated data), so
tokens are counted with a regex that mimics how byte-pair tokenizers cut text: a run of letters is
one token per up to 8 letters (common words are single tokens, long words split), digits go in
groups of up to 3 (as Llama-3-style tokenizers split numbers), and every other visible character
(punctuation, operators, brackets) is a token of its own. Whitespace is free. This is an estimate,
good for bounding lengths, not for exact budgets.
"""

from __future__ import annotations

import re

from cogumi_ray.data.filters.base import KEEP, Filter, Outcome, Row, drop

TOKEN_RE = re.compile(r"[^\W\d_]{1,8}|\d{1,3}|\S")


def count_tokens(text: str) -> int:
    return len(TOKEN_RE.findall(text))


class LengthFilter(Filter):
    name = "length"

    def __init__(self, min_tokens: int, max_tokens: int) -> None:
        self.min_tokens = min_tokens
        self.max_tokens = max_tokens

    def check(self, row: Row) -> Outcome:
        n = count_tokens(row["instruction"]) + count_tokens(row["response"])
        if n < self.min_tokens:
            return drop("too_short")
        if n > self.max_tokens:
            return drop("too_long")
        return KEEP
