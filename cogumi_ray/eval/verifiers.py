"""Which of the task suite's verifiers grades a row. Domains are free names; verifiers are not.

A suite row (its domain one the suite generates) is graded by its own domain's verifier, exactly
as before domains were free. A row of any other domain (suite tasks relabelled 'legal', a new
domain's rows written in the suite's format) is graded by the verifier `metadata["verifier"]`
names, else by the one whose data it carries, and its verdict stays under its own domain. A row no
verifier fits is not scored; it is counted per domain (`unverifiable`), never silently dropped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cogumi_ray.data.schema import Example

# Verifier data a row may carry -> the suite domain whose verifier reads it, in verify()'s own
# order (code's tests and automation's call before the text checks; math's bare answer last).
_VERIFIER_DATA = (("tests", "code"), ("call", "automation"), ("order", "general"),
                  ("expected", "general"), ("answer", "math"))


def verifier_domain(ex: Example) -> str | None:
    """The suite domain whose verifier grades `ex`, or None when none can."""
    from cogumi_ray.data.config import DOMAINS
    from cogumi_ray.data.suite.verify import can_verify

    if ex.domain in DOMAINS:  # a suite row: its own verifier or none, as it always was
        return ex.domain if can_verify(ex) else None
    named = ex.metadata.get("verifier")
    # a named verifier whose data the row lacks does not fall back to another
    for d in [str(named)] if named else [d for key, d in _VERIFIER_DATA if key in ex.metadata]:
        if d in DOMAINS and can_verify(replace(ex, domain=d)):
            return d
    return None


def as_graded(ex: Example) -> Example | None:
    """`ex` as its verifier reads it (the verifier's domain in place of its own), or None."""
    d = verifier_domain(ex)
    return None if d is None else ex if d == ex.domain else replace(ex, domain=d)


def borrows_verifier(ex: Example) -> bool:
    """True for a row graded by another domain's verifier (a domain the suite does not make)."""
    return verifier_domain(ex) not in (None, ex.domain)


def unverifiable(examples: Iterable[Example]) -> dict[str, int]:
    """Domain -> rows no verifier can grade (sorted by domain; empty when every row is graded)."""
    return dict(sorted(Counter(ex.domain for ex in examples if verifier_domain(ex) is None).items()))
