"""PII filter: e-mail addresses, phone numbers and API-key-like secrets, scrubbed or dropped.

Patterns are deliberately conservative where the suite's own data could look alike: a phone number
is international (leading "+") or North American ((555) 123-4567, 555-123-4567) with 9-15 digits,
so arithmetic like "123456789", number lists and dates are left alone; a generic secret is a 32+
character hex run, or a 32+ character base64-like run mixing upper case, lower case and digits
(long identifiers and words have no digits mixed in).
Vendor key shapes (sk-..., AKIA..., ghp_..., xox?-..., AIza..., hf_...) are matched first.
Scrubbing covers instruction, response and metadata, so no PII survives into any artifact.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Literal

from cogumi_ray.data.filters.base import KEEP, Filter, Outcome, Row

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
PHONE = re.compile(
    # international (+CC ...), North American (555) 123-4567 / 555-123-4567, or bare E.164
    r"(?<![\w+])\+\d{1,3}[\s.-]?(?:\(\d{1,4}\)[\s.-]?)?\d{1,4}(?:[\s.-]\d{2,4}){1,4}(?!\w)"
    r"|(?<![\w(])(?:\(\d{3}\)\s?|\d{3}[-.\s])\d{3}[-.\s]\d{4}(?![\w-])"
    r"|(?<![\w+])\+\d{9,15}(?!\w)"
)
API_KEY = re.compile(
    r"\b(?:sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}"
    r"|xox[abposr]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}|hf_[A-Za-z0-9]{30,})"
)
# One scan for both secret shapes: hex is a subset of the base64-like alphabet.
SECRET = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{32,}={0,2}")
HEX = frozenset("0123456789abcdefABCDEF")

Kind = Literal["email", "phone", "api_key", "secret"]
PLACEHOLDERS: dict[str, str] = {
    "email": "[EMAIL]", "phone": "[PHONE]", "api_key": "[API_KEY]", "secret": "[SECRET]",
}


def _phone_ok(match: str) -> bool:
    digits = sum(c.isdigit() for c in match)
    return 9 <= digits <= 15


def _secret_ok(match: str) -> bool:
    """A hex run, or a run mixing upper case, lower case and digits (not a long word)."""
    body = match.rstrip("=")
    if all(c in HEX for c in body):
        return True
    return any(c.isupper() for c in body) and any(c.islower() for c in body) and any(
        c.isdigit() for c in body
    )


# (kind, pattern, extra check on the matched text, literal hints: skip the regex when the text
# holds none of them, which is most rows); order matters: specific shapes first.
RULES: tuple[tuple[str, re.Pattern[str], Callable[[str], bool] | None, tuple[str, ...]], ...] = (
    ("api_key", API_KEY, None, ("sk-", "AKIA", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "xox",
                                "AIza", "hf_")),
    ("email", EMAIL, None, ("@",)),
    ("secret", SECRET, _secret_ok, ()),
    ("phone", PHONE, _phone_ok, ()),
)


def scrub(text: str) -> tuple[str, Counter]:
    """Text with every PII match replaced by its placeholder, and the number of matches per kind."""
    found: Counter = Counter()
    for kind, pattern, ok, hints in RULES:
        if hints and not any(h in text for h in hints):
            continue
        def repl(m: re.Match[str], kind: str = kind, ok=ok) -> str:
            if ok is not None and not ok(m.group(0)):
                return m.group(0)
            found[kind] += 1
            return PLACEHOLDERS[kind]

        text = pattern.sub(repl, text)
    return text, found


class PIIFilter(Filter):
    name = "pii"

    def __init__(self, mode: Literal["scrub", "drop"]) -> None:
        if mode not in ("scrub", "drop"):
            raise ValueError(f"PIIFilter mode must be 'scrub' or 'drop', got {mode!r}")
        self.mode = mode

    def check(self, row: Row) -> Outcome:
        update: Row = {}
        found: Counter = Counter()
        for key in ("instruction", "response", "metadata"):
            value = row.get(key)
            if not isinstance(value, str) or not value:
                continue
            clean, kinds = scrub(value)
            if kinds:
                update[key] = clean
                found.update(kinds)
        if not found:
            return KEEP
        counts = {kind: n for kind, n in found.items()}
        counts["rows_with_pii"] = 1
        if self.mode == "drop":
            return Outcome(reason="has_pii", counts=counts)
        return Outcome(update=update, counts=counts)
