"""Final numeric answers: GSM8K's `#### 42` convention first, then free-text fallbacks.

Numbers compare as exact fractions after removing thousands separators, currency and percent
signs, so "1,000", "$1000.00" and "1000" are the same answer and 0.1 + 0.2 style float noise never
decides a match.
"""

from __future__ import annotations

import re
from fractions import Fraction

_NUM = r"[-+]?\$?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?%?|[-+]?\$?\s?\.\d+%?"
_NUM_RE = re.compile(_NUM)
_MARKERS = (
    re.compile(r"####\s*(" + _NUM + ")"),
    re.compile(r"\\boxed\{\s*(" + _NUM + r")\s*\}"),
    re.compile(
        r"(?:final answer|the answer|answer)\s*(?:is|=|:)?\s*:?\s*\**\s*(" + _NUM + ")",
        re.IGNORECASE,
    ),
)


def parse_number(text: str) -> Fraction | None:
    """'1,234.50' -> Fraction(2469, 2); '$5' -> 5; '12%' -> 12; None when it is not a number."""
    s = text.strip().replace(",", "").replace("$", "").replace(" ", "").rstrip("%").rstrip(".")
    if not s:
        return None
    try:
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None


def extract_final_number(text: str) -> Fraction | None:
    """The answer a response commits to: the last `#### N`, else the last `\\boxed{N}`, else the
    last 'answer is N', else the last number in the text; None if it holds no number."""
    for marker in _MARKERS:
        found = marker.findall(text)
        if found:
            return parse_number(found[-1])
    found = _NUM_RE.findall(text)
    return parse_number(found[-1]) if found else None


def reference_answer(solution: str) -> Fraction:
    """The number after `####` in a GSM8K reference solution (which always has one)."""
    found = _MARKERS[0].findall(solution)
    value = parse_number(found[-1]) if found else None
    if value is None:
        raise ValueError(f"reference solution has no '#### <number>' line: {solution[-80:]!r}")
    return value


def numbers_match(answer: str, reference: Fraction) -> bool:
    got = extract_final_number(answer)
    return got is not None and got == reference
