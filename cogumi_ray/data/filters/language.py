"""English-only filter with py3langid (its model ships inside the wheel: no download, no network).

Language detectors read letters, so code, JSON tool calls and arithmetic confuse them. The filter
therefore detects on the row's *natural-language part*: fenced and inline code, URLs, e-mails and a
response that parses as JSON are removed, and only letter runs are kept. Then:
- an ASCII-only text with fewer than `min_letters` letters is too short to judge and is kept
  ("undetermined"): "Compute 17 times 23." or a bare code answer says nothing about language;
  text with non-ASCII letters is always judged (accents and non-Latin scripts are strong evidence);
- only the first SAMPLE_CHARS characters of that prose are judged (the verdict settles early);
- otherwise the row is kept when English is the top language *or* its probability reaches
  `min_english_prob`: on short English text py3langid spreads probability over related languages
  (e.g. Nigerian Pidgin, Scots), while real non-English text gives English almost nothing.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from cogumi_ray.data.filters.base import KEEP, Filter, Outcome, Row, drop

_CODE_BLOCK = re.compile(r"```.*?(?:```|$)", re.S)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_URL_OR_EMAIL = re.compile(r"https?://\S+|\S+@\S+")
_LETTER_RUN = re.compile(r"[^\W\d_]{2,}")
# The detector's cost grows with text length while its verdict settles within a few hundred
# characters; long rows (~850 tokens) are judged on their first SAMPLE_CHARS of prose.
SAMPLE_CHARS = 600


@functools.lru_cache(maxsize=1)
def _identifier() -> Any:
    """Load the model once per worker process (about a second), never on the driver at import."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    load = getattr(LanguageIdentifier, "from_model_file", None) or LanguageIdentifier.from_pickled_model
    return load(MODEL_FILE, norm_probs=True)


def natural_text(instruction: str, response: str) -> str:
    """The letters-only prose of a row, without code, JSON, URLs and numbers."""
    parts = [instruction]
    stripped = response.strip()
    if not (stripped[:1] in "{[" and _is_json(stripped)):
        parts.append(response)
    # Raw text is cut (generously: code and numbers are stripped next) before the regex passes.
    text = "\n".join(parts)[: 4 * SAMPLE_CHARS]
    for pattern in (_CODE_BLOCK, _INLINE_CODE, _URL_OR_EMAIL):
        text = pattern.sub(" ", text)
    return " ".join(_LETTER_RUN.findall(text))


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def english_prob(text: str) -> tuple[str, float, float]:
    """(top language, its probability, probability of English) for `text`."""
    ranked = _identifier().rank(text)
    return ranked[0][0], float(ranked[0][1]), float(dict(ranked).get("en", 0.0))


class LanguageFilter(Filter):
    name = "language"

    def __init__(self, min_english_prob: float, min_letters: int) -> None:
        self.min_english_prob = min_english_prob
        self.min_letters = min_letters

    def check(self, row: Row) -> Outcome:
        text = natural_text(row["instruction"], row["response"])[:SAMPLE_CHARS]
        letters = len(text) - text.count(" ")
        if letters == 0 or (letters < self.min_letters and text.isascii()):
            return Outcome(counts={"undetermined": 1})
        top, _ = _identifier().classify(text)
        if top == "en":
            return KEEP
        if english_prob(text)[2] >= self.min_english_prob:  # ranking costs more: only when needed
            return KEEP
        return drop("non_english", **{f"detected_{top}": 1})
