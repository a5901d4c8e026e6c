"""Code: small Python functions, checked by running stored asserts in the sandbox.

The response is the bare function (no prose, no fences), a few lines. metadata["tests"] holds
`assert fn(...) == ...` lines computed from a reference implementation; metadata["entry_point"] is
the function name. Easy = one-line expressions; medium = a loop, a filter or a branch; hard = small
algorithms (generalised Fibonacci, primes, run-length encoding, Caesar shift, rotations).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any

from cogumi_ray.data.suite.base import Makers, Task, tagged
from cogumi_ray.data.suite.code_compose import compose_three, compose_two
from cogumi_ray.data.suite.vocab import WORDS

PHRASES: tuple[str, ...] = (
    "Write a Python function `{sig}` that returns {desc}.",
    "Define `{sig}` in Python so that it returns {desc}.",
    "Implement `{sig}`, which returns {desc}.",
    "Create a Python function `{sig}` returning {desc}.",
)
INT = ("x", "n", "value", "num", "amount")
STR = ("s", "text", "word", "name", "line")
LIST = ("nums", "values", "items", "data", "numbers", "xs")


def _fn_task(
    rng: random.Random,
    names: Sequence[str],
    params: Sequence[Sequence[str]],
    desc: str,
    body: str,
    ref: Callable[..., Any],
    cases: Sequence[tuple[Any, ...]],
) -> Task:
    """One function task: `desc` and `body` use {p0}, {p1}... for the chosen parameter names."""
    fn = rng.choice(names)
    chosen = [rng.choice(pool) for pool in params]
    while len(set(chosen)) < len(chosen):  # two parameters must not share a name
        chosen = [rng.choice(pool) for pool in params]
    slots = {f"p{i}": p for i, p in enumerate(chosen)}
    sig = f"{fn}({', '.join(chosen)})"
    q = rng.choice(PHRASES).format(sig=sig, desc=desc.format(**slots))
    code = f"def {sig}:\n" + "\n".join("    " + ln for ln in body.format(**slots).splitlines())
    tests = "\n".join(
        f"assert {fn}({', '.join(map(repr, args))}) == {ref(*args)!r}" for args in cases
    )
    return Task(q, code, {"entry_point": fn, "tests": tests})


def _ints(rng: random.Random, k: int, lo: int = -20, hi: int = 50) -> list[tuple[int]]:
    return [(rng.randint(lo, hi),) for _ in range(k)]


def _words(rng: random.Random, k: int) -> list[tuple[str]]:
    return [(w,) for w in rng.sample(WORDS, k)]


def _lists(rng: random.Random, k: int, lo: int = -9, hi: int = 30) -> list[tuple[list[int]]]:
    return [([rng.randint(lo, hi) for _ in range(rng.randint(3, 7))],) for _ in range(k)]


@tagged("code.add_const")
def add_const(rng: random.Random) -> Task:
    k = rng.randint(1, 20)
    return _fn_task(rng, ("add_bonus", "bump", "shift_up", "plus_offset", "raise_level"), [INT],
                    f"{{p0}} plus {k}", f"return {{p0}} + {k}", lambda x: x + k, _ints(rng, 3))


@tagged("code.mul_const")
def mul_const(rng: random.Random) -> Task:
    k = rng.randint(2, 12)
    return _fn_task(rng, ("scale", "times_factor", "multiply", "grow", "stretch"), [INT],
                    f"{{p0}} multiplied by {k}", f"return {{p0}} * {k}", lambda x: x * k,
                    _ints(rng, 3))


@tagged("code.repeat_str")
def repeat_str(rng: random.Random) -> Task:
    k = rng.randint(2, 5)
    return _fn_task(rng, ("repeat", "echo", "duplicate", "stutter", "copy_text"), [STR],
                    f"the string {{p0}} repeated {k} times", f"return {{p0}} * {k}",
                    lambda s: s * k, _words(rng, 3))


@tagged("code.greater_than")
def greater_than(rng: random.Random) -> Task:
    k = rng.randint(-5, 40)
    return _fn_task(rng, ("is_big", "above_limit", "exceeds", "is_over", "too_high"), [INT],
                    f"True if {{p0}} is greater than {k}, else False", f"return {{p0}} > {k}",
                    lambda x: x > k, [(k - 1,), (k,), (k + 1,), (k + 7,)])


@tagged("code.prefix")
def prefix(rng: random.Random) -> Task:
    k = rng.randint(1, 4)
    return _fn_task(rng, ("head", "prefix", "first_part", "start_of", "lead"), [STR],
                    f"the first {k} characters of the string {{p0}}", f"return {{p0}}[:{k}]",
                    lambda s: s[:k], _words(rng, 3))


@tagged("code.suffix_add")
def suffix_add(rng: random.Random) -> Task:
    tail = rng.choice(["!", "?", "ing", "ed", "er", "s", "ly", "-x", "_v2", "..."])
    return _fn_task(rng, ("decorate", "append_tail", "with_suffix", "extend", "finish"), [STR],
                    f"the string {{p0}} followed by '{tail}'", f"return {{p0}} + {tail!r}",
                    lambda s: s + tail, _words(rng, 3))


@tagged("code.int_op")
def int_op(rng: random.Random) -> Task:
    k = rng.randint(2, 9)
    desc, code, ref, names = rng.choice([
        (f"{{p0}} minus {k}", f"{{p0}} - {k}", lambda x: x - k, ("reduce_by", "minus", "drop")),
        ("the square of {p0}", "{p0} * {p0}", lambda x: x * x, ("square", "sq", "power_two")),
        (f"the remainder of {{p0}} divided by {k}", f"{{p0}} % {k}", lambda x: x % k,
         ("remainder", "mod", "leftover")),
        ("True if {p0} is even, else False", "{p0} % 2 == 0", lambda x: x % 2 == 0,
         ("is_even", "even", "check_even")),
        ("the absolute value of {p0}", "abs({p0})", abs, ("absolute", "magnitude", "size_of")),
        (f"{{p0}} divided by {k}, rounded down", f"{{p0}} // {k}", lambda x: x // k,
         ("split_even", "share", "per_part")),
    ])
    return _fn_task(rng, names, [INT], desc, f"return {code}", ref, _ints(rng, 3))


@tagged("code.str_op")
def str_op(rng: random.Random) -> Task:
    k = rng.randint(1, 3)
    desc, code, ref, names = rng.choice([
        ("{p0} in lowercase", "{p0}.lower()", str.lower, ("lower", "quiet", "small_text")),
        ("{p0} reversed", "{p0}[::-1]", lambda s: s[::-1], ("reverse", "backwards", "mirror")),
        ("the number of characters in {p0}", "len({p0})", len, ("length", "size", "char_count")),
        (f"the last {k} characters of {{p0}}", f"{{p0}}[-{k}:]", lambda s: s[-k:],
         ("tail", "ending", "last_part")),
        ("{p0} with its first letter capitalized", "{p0}.capitalize()", str.capitalize,
         ("capitalize", "title_word", "proper")),
        ("True if {p0} is a palindrome, else False", "{p0} == {p0}[::-1]",
         lambda s: s == s[::-1], ("is_palindrome", "same_both_ways", "palindrome")),
    ])
    cases = _words(rng, 3) + ([("level",)] if "palindrome" in desc else [])
    return _fn_task(rng, names, [STR], desc, f"return {code}", ref, cases)


@tagged("code.count_char")
def count_char(rng: random.Random) -> Task:
    c = rng.choice("aeioulnrst")
    return _fn_task(rng, ("count_letter", "tally", "letter_count", "how_many", "occurrences"),
                    [STR], f"how many times the letter '{c}' appears in {{p0}}",
                    f"return {{p0}}.count({c!r})", lambda s: s.count(c), _words(rng, 4))


@tagged("code.sum_filtered")
def sum_filtered(rng: random.Random) -> Task:
    kind, k = rng.choice(["even", "odd", "above"]), rng.randint(0, 15)
    desc, cond, keep = {
        "even": ("the sum of the even numbers in the list {p0}", "v % 2 == 0",
                 lambda v: v % 2 == 0),
        "odd": ("the sum of the odd numbers in the list {p0}", "v % 2 == 1",
                lambda v: v % 2 == 1),
        "above": (f"the sum of the numbers in the list {{p0}} that are greater than {k}",
                  f"v > {k}", lambda v: v > k),
    }[kind]
    return _fn_task(rng, ("sum_some", "partial_sum", "total_of", "add_selected", "picked_sum"),
                    [LIST], desc, f"return sum(v for v in {{p0}} if {cond})",
                    lambda xs: sum(v for v in xs if keep(v)), _lists(rng, 3))


@tagged("code.clamp")
def clamp(rng: random.Random) -> Task:
    lo = rng.randint(-10, 10)
    hi = lo + rng.randint(5, 30)
    return _fn_task(rng, ("clamp", "limit", "bound", "clip", "restrict"), [INT],
                    f"{{p0}} limited to the range {lo} to {hi}",
                    f"return max({lo}, min({hi}, {{p0}}))", lambda x: max(lo, min(hi, x)),
                    [(lo - 3,), (hi + 4,), (rng.randint(lo, hi),)])


@tagged("code.label_divisible")
def label_divisible(rng: random.Random) -> Task:
    k = rng.randint(2, 9)
    labels = ["fizz", "buzz", "yes", "no", "hit", "miss", "on", "off", "ping", "pong"]
    yes, no = rng.sample(labels, 2)
    body = f"if {{p0}} % {k} == 0:\n    return {yes!r}\nreturn {no!r}"
    return _fn_task(rng, ("label", "classify", "tag_number", "name_of", "mark"), [INT],
                    f"'{yes}' if {{p0}} is divisible by {k}, otherwise '{no}'", body,
                    lambda x: yes if x % k == 0 else no, [(k * 3,), (k * 3 + 1,), (0,), (k + 1,)])


@tagged("code.fib_general")
def fib_general(rng: random.Random) -> Task:
    a, b = rng.randint(0, 5), rng.randint(1, 7)

    def ref(n: int) -> int:
        x, y = a, b
        for _ in range(n):
            x, y = y, x + y
        return x

    body = f"a, b = {a}, {b}\nfor _ in range({{p0}}):\n    a, b = b, a + b\nreturn a"
    return _fn_task(rng, ("fib", "sequence_at", "nth_term", "fibo", "series"), [INT],
                    f"the {{p0}}-th term of the sequence that starts {a}, {b} and where each "
                    "next term is the sum of the two before it (counting from 0)",
                    body, ref, [(0,), (1,), (rng.randint(4, 9),), (rng.randint(10, 15),)])


@tagged("code.count_primes")
def count_primes(rng: random.Random) -> Task:
    def ref(n: int) -> int:
        return sum(all(m % d for d in range(2, int(m ** 0.5) + 1)) for m in range(2, n + 1))

    body = ("count = 0\nfor m in range(2, {p0} + 1):\n"
            "    if all(m % d for d in range(2, int(m ** 0.5) + 1)):\n        count += 1\n"
            "return count")
    return _fn_task(rng, ("count_primes", "prime_count", "primes_upto", "num_primes", "pi_of"),
                    [INT], "how many prime numbers are less than or equal to {p0}", body, ref,
                    [(1,), (2,), (rng.randint(10, 30),), (rng.randint(31, 100),)])


@tagged("code.run_length")
def run_length(rng: random.Random) -> Task:
    def ref(s: str) -> str:
        out, i = [], 0
        while i < len(s):
            j = i
            while j < len(s) and s[j] == s[i]:
                j += 1
            out.append(f"{s[i]}{j - i}")
            i = j
        return "".join(out)

    body = ("out, i = '', 0\nwhile i < len({p0}):\n    j = i\n"
            "    while j < len({p0}) and {p0}[j] == {p0}[i]:\n        j += 1\n"
            "    out += {p0}[i] + str(j - i)\n    i = j\nreturn out")
    cases = [("".join(c * rng.randint(1, 4) for c in rng.sample("abcdxyz", 3)),) for _ in range(3)]
    return _fn_task(rng, ("rle", "run_length", "compress", "encode_runs", "squeeze"), [STR],
                    "the run-length encoding of {p0}, e.g. 'aaab' gives 'a3b1'", body, ref,
                    [("",), *cases])


@tagged("code.caesar")
def caesar(rng: random.Random) -> Task:
    k = rng.randint(1, 25)

    def ref(s: str) -> str:
        return "".join(chr((ord(c) - 97 + k) % 26 + 97) for c in s)

    body = f"return ''.join(chr((ord(c) - 97 + {k}) % 26 + 97) for c in {{p0}})"
    return _fn_task(rng, ("caesar", "shift_letters", "rotate_text", "encode", "cipher"), [STR],
                    f"the lowercase word {{p0}} with every letter shifted {k} places forward in "
                    "the alphabet, wrapping from z to a", body, ref, _words(rng, 3))


@tagged("code.rotate_list")
def rotate_list(rng: random.Random) -> Task:
    k = rng.randint(1, 6)

    def ref(xs: list[int]) -> list[int]:
        r = k % len(xs)
        return xs[r:] + xs[:r]

    body = f"r = {k} % len({{p0}})\nreturn {{p0}}[r:] + {{p0}}[:r]"
    return _fn_task(rng, ("rotate", "rotate_left", "cycle", "turn", "spin"), [LIST],
                    f"the non-empty list {{p0}} rotated left by {k} positions", body, ref,
                    _lists(rng, 3))


@tagged("code.gcd")
def gcd(rng: random.Random) -> Task:
    body = "while {p1}:\n    {p0}, {p1} = {p1}, {p0} % {p1}\nreturn {p0}"
    cases = []
    for _ in range(3):
        g = rng.randint(2, 12)
        cases.append((g * rng.randint(1, 20), g * rng.randint(1, 20)))
    return _fn_task(rng, ("gcd", "greatest_divisor", "common_factor", "hcf", "euclid"),
                    [("a", "x", "m"), ("b", "y", "k")],
                    "the greatest common divisor of the positive integers {p0} and {p1}", body,
                    math.gcd, cases)


@tagged("code.second_largest")
def second_largest(rng: random.Random) -> Task:
    def ref(xs: list[int]) -> int:
        return sorted(set(xs))[-2]

    body = "return sorted(set({p0}))[-2]"
    cases = [([rng.randint(-9, 40) for _ in range(rng.randint(4, 7))] + [41, 42],)
             for _ in range(3)]
    for c in cases:
        rng.shuffle(c[0])
    return _fn_task(rng, ("second_largest", "runner_up", "second_max", "next_biggest", "silver"),
                    [LIST], "the second largest distinct number in the list {p0}", body, ref, cases)


compose_pair = tagged("code.compose_two")(compose_two)
compose_triple = tagged("code.compose_three")(compose_three)

MAKERS: Makers = {
    "easy": (add_const, mul_const, repeat_str, greater_than, prefix, suffix_add, int_op, str_op),
    "medium": (compose_pair, count_char, sum_filtered, clamp, label_divisible),
    "hard": (compose_triple, fib_general, count_primes, run_length, caesar, rotate_list, gcd,
             second_largest),
}
