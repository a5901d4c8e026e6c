"""Composed code tasks: filter -> map -> reduce over a list of numbers or words.

Fixed algorithm templates ("count the primes") collapse into near-duplicates once function names
are the only thing that varies, so most medium/hard code tasks are compositions: each part changes
the wording and the code in a different place, giving thousands of genuinely different tasks.
Medium tasks compose two parts, hard tasks three (plus a choice of reducer that must match the
wording exactly).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cogumi_ray.data.suite.base import Task
from cogumi_ray.data.suite.vocab import WORDS


@dataclass(frozen=True)
class Part:
    words: str  # wording in the instruction
    code: str  # code fragment; {v} is the element, {k} the constant
    fn: Callable[[Any, int], Any]  # reference semantics (element, constant) -> value
    tag: str  # piece of the function name


# Number pipelines ----------------------------------------------------------------------------
NUM_FILTERS = (
    Part("keeps the numbers greater than {k}", "{v} > {k}", lambda v, k: v > k, "above"),
    Part("keeps the numbers less than {k}", "{v} < {k}", lambda v, k: v < k, "below"),
    Part("keeps the even numbers", "{v} % 2 == 0", lambda v, k: v % 2 == 0, "even"),
    Part("keeps the odd numbers", "{v} % 2 == 1", lambda v, k: v % 2 == 1, "odd"),
    Part("keeps the multiples of {k}", "{v} % {k} == 0", lambda v, k: v % k == 0, "mult"),
    Part("drops every {k}", "{v} != {k}", lambda v, k: v != k, "no"),
)
NUM_MAPS = (
    Part("squares each one", "{v} * {v}", lambda v, k: v * v, "sq"),
    Part("doubles each one", "{v} * 2", lambda v, k: v * 2, "dbl"),
    Part("adds {k} to each one", "{v} + {k}", lambda v, k: v + k, "plus"),
    Part("multiplies each one by {k}", "{v} * {k}", lambda v, k: v * k, "times"),
    Part("subtracts {k} from each one", "{v} - {k}", lambda v, k: v - k, "minus"),
    Part("takes the absolute value of each one", "abs({v})", lambda v, k: abs(v), "abs"),
    Part("takes each one modulo {k}", "{v} % {k}", lambda v, k: v % k, "mod"),
)
NUM_REDUCERS = (
    Part("returns their sum", "sum({xs})", lambda xs, k: sum(xs), "sum"),
    Part("returns the largest (0 if none are left)", "max({xs}, default=0)",
         lambda xs, k: max(xs, default=0), "max"),
    Part("returns the smallest (0 if none are left)", "min({xs}, default=0)",
         lambda xs, k: min(xs, default=0), "min"),
    Part("returns how many are left", "len({xs})", lambda xs, k: len(xs), "count"),
    Part("returns them sorted in ascending order", "sorted({xs})", lambda xs, k: sorted(xs), "asc"),
    Part("returns them sorted in descending order", "sorted({xs}, reverse=True)",
         lambda xs, k: sorted(xs, reverse=True), "desc"),
    Part("returns them as a list", "{xs}", lambda xs, k: list(xs), "list"),
)

# Word pipelines ------------------------------------------------------------------------------
WORD_FILTERS = (
    Part("keeps the words longer than {k} letters", "len({v}) > {k}",
         lambda w, k: len(w) > k, "long"),
    Part("keeps the words shorter than {k} letters", "len({v}) < {k}",
         lambda w, k: len(w) < k, "short"),
    Part("keeps the words that contain the letter '{c}'", "'{c}' in {v}",
         lambda w, c: c in w, "with"),
    Part("keeps the words that start with '{c}'", "{v}.startswith('{c}')",
         lambda w, c: w.startswith(c), "starts"),
    Part("drops the words that contain the letter '{c}'", "'{c}' not in {v}",
         lambda w, c: c not in w, "without"),
)
WORD_MAPS = (
    Part("uppercases each one", "{v}.upper()", lambda w, k: w.upper(), "upper"),
    Part("reverses each one", "{v}[::-1]", lambda w, k: w[::-1], "rev"),
    Part("keeps the first {k} letters of each one", "{v}[:{k}]", lambda w, k: w[:k], "head"),
    Part("keeps the last {k} letters of each one", "{v}[-{k}:]", lambda w, k: w[-k:], "tail"),
    Part("capitalizes each one", "{v}.capitalize()", lambda w, k: w.capitalize(), "cap"),
    Part("adds '{sfx}' to the end of each one", "{v} + '{sfx}'", lambda w, s: w + s, "sfx"),
)
WORD_REDUCERS = (
    Part("returns them joined with '{sep}'", "'{sep}'.join({xs})", lambda xs, s: s.join(xs),
         "join"),
    Part("returns how many are left", "len({xs})", lambda xs, k: len(xs), "count"),
    Part("returns them sorted alphabetically", "sorted({xs})", lambda xs, k: sorted(xs), "sorted"),
    Part("returns them as a list", "{xs}", lambda xs, k: list(xs), "list"),
)

LIST_PARAMS = ("nums", "values", "items", "data", "numbers", "xs")
WORD_PARAMS = ("words", "names", "tokens", "terms", "items")
PHRASES = (
    "Write a Python function `{sig}` that takes a {what} {p}, {steps}.",
    "`{sig}`: given a {what}, it {steps}.",
    "Implement {sig} in Python. It {steps}.",
    "Define {sig}, which {steps}.",
)
TMP_NAMES = ("kept", "picked", "chosen", "out", "result", "selected")
ELEM_NAMES = ("v", "x", "n", "item", "e")
WORD_ELEMS = ("w", "word", "t", "s")


def _compose(rng: random.Random, parts: list[str], words: bool) -> Task:
    """`parts` is a subset of ("filter", "map") — the reducer is always present."""
    fil, mp, red = (WORD_FILTERS, WORD_MAPS, WORD_REDUCERS) if words else \
        (NUM_FILTERS, NUM_MAPS, NUM_REDUCERS)
    f = rng.choice(fil) if "filter" in parts else None
    m = rng.choice(mp) if "map" in parts else None
    r = rng.choice(red)
    param = rng.choice(WORD_PARAMS if words else LIST_PARAMS)
    v = rng.choice(WORD_ELEMS if words else ELEM_NAMES)
    tmp = rng.choice(TMP_NAMES)
    # Constants per part, chosen so every part has an effect on typical inputs.
    if words and f and "{c}" in f.words:
        fk: Any = rng.choice("aeinorst")
    else:
        fk = rng.randint(2, 7 if words else 9)
    mk = rng.choice(["s", "ed", "!", "er", "y"]) if words and m and "{sfx}" in m.words \
        else rng.randint(2, 4 if words else 9)
    rk = rng.choice([" ", ", ", "-", "+", ""]) if words else 0

    def fill(text: str, k: Any) -> str:
        return text.replace("{k}", str(k)).replace("{c}", str(k)).replace("{sfx}", str(k)) \
            .replace("{sep}", str(k))

    steps = [fill(p.words, k) for p, k in ((f, fk), (m, mk)) if p] + [fill(r.words, rk)]
    what = "list of words" if words else "list of integers"
    fn = "_".join([r.tag] + [p.tag for p in (m, f) if p])
    steps_text = ", ".join(steps[:-1]) + (", and " if len(steps) > 1 else "") + steps[-1]
    q = rng.choice(PHRASES).format(sig=f"{fn}({param})", what=what, p=param, steps=steps_text)
    elem = fill(m.code, mk).replace("{v}", v) if m else v
    cond = f" if {fill(f.code, fk).replace('{v}', v)}" if f else ""
    result = fill(r.code, rk).replace("{xs}", tmp)
    body = f"{tmp} = [{elem} for {v} in {param}{cond}]\nreturn {result}"
    code = f"def {fn}({param}):\n" + "\n".join("    " + ln for ln in body.splitlines())

    def ref(xs: list[Any]) -> Any:
        kept = [x for x in xs if f is None or f.fn(x, fk)]
        return r.fn([m.fn(x, mk) if m else x for x in kept], rk)

    cases = []
    for _ in range(3):
        if words:
            xs: list[Any] = rng.sample(WORDS, rng.randint(3, 6))
        else:
            xs = [rng.randint(-5, 30) for _ in range(rng.randint(4, 8))]
        cases.append(xs)
    tests = "\n".join(f"assert {fn}({xs!r}) == {ref(xs)!r}" for xs in cases)
    return Task(q, code, {"entry_point": fn, "tests": tests})


def compose_two(rng: random.Random) -> Task:
    return _compose(rng, [rng.choice(["filter", "map"])], words=rng.random() < 0.4)


def compose_three(rng: random.Random) -> Task:
    return _compose(rng, ["filter", "map"], words=rng.random() < 0.4)
