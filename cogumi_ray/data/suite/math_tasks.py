"""Math: arithmetic and word problems with computed answers.

Every response shows its working one step per line and ends with `Answer: N` (an integer), which the
numeric verifier extracts. Easy = one single-digit operation (a small lookup table a tiny model can
memorise); medium = two-digit numbers or one multiplication/division; hard = multi-step or
multi-digit work that needs real computation.
"""

from __future__ import annotations

import random

from cogumi_ray.data.suite.base import Makers, Task, tagged
from cogumi_ray.data.suite.vocab import NAMES, OBJECTS


def _steps(lines: list[str], answer: int) -> Task:
    return Task("", "\n".join([*lines, f"Answer: {answer}"]), {"answer": answer})


def _with(instruction: str, t: Task) -> Task:
    return Task(instruction, t.response, t.metadata)


@tagged("math.add_story")
def add_story(rng: random.Random) -> Task:
    name, obj = rng.choice(NAMES), rng.choice(OBJECTS)
    a, b = rng.randint(2, 9), rng.randint(1, 9)
    q = f"{name} has {a} {obj}s and gets {b} more. How many {obj}s does {name} have now?"
    return _with(q, _steps([f"{a} + {b} = {a + b}"], a + b))


@tagged("math.sub_story")
def sub_story(rng: random.Random) -> Task:
    name, other = rng.sample(NAMES, 2)
    obj = rng.choice(OBJECTS)
    a = rng.randint(3, 9)
    b = rng.randint(1, a - 1)
    q = f"{name} had {a} {obj}s and gave {b} to {other}. How many {obj}s are left?"
    return _with(q, _steps([f"{a} - {b} = {a - b}"], a - b))


@tagged("math.add_bare")
def add_bare(rng: random.Random) -> Task:
    a, b = rng.randint(0, 9), rng.randint(0, 9)
    q = rng.choice(["What is {a} + {b}?", "Add {a} and {b}.", "Compute {a} plus {b}."])
    return _with(q.format(a=a, b=b), _steps([f"{a} + {b} = {a + b}"], a + b))


@tagged("math.times_small")
def times_small(rng: random.Random) -> Task:
    a, b = rng.randint(2, 5), rng.randint(2, 9)
    q = rng.choice(["What is {a} times {b}?", "Multiply {a} by {b}.", "What is {a} * {b}?"])
    return _with(q.format(a=a, b=b), _steps([f"{a} * {b} = {a * b}"], a * b))


@tagged("math.points_total")
def points_total(rng: random.Random) -> Task:
    name = rng.choice(NAMES)
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    game = rng.choice(["game", "round", "match", "quiz"])
    q = (f"{name} scored {a} points in the first {game} and {b} in the second. "
         "How many points in total?")
    return _with(q, _steps([f"{a} + {b} = {a + b}"], a + b))


@tagged("math.packs")
def packs(rng: random.Random) -> Task:
    name, obj = rng.choice(NAMES), rng.choice(OBJECTS)
    n, k = rng.randint(2, 9), rng.randint(2, 12)
    q = f"{name} buys {n} packs of {obj}s with {k} in each pack. How many {obj}s is that?"
    return _with(q, _steps([f"{n} * {k} = {n * k}"], n * k))


@tagged("math.share")
def share(rng: random.Random) -> Task:
    name, obj = rng.choice(NAMES), rng.choice(OBJECTS)
    k, each = rng.randint(2, 9), rng.randint(2, 12)
    total = k * each
    q = f"{name} shares {total} {obj}s equally among {k} friends. How many does each friend get?"
    return _with(q, _steps([f"{total} / {k} = {each}"], each))


@tagged("math.two_step_small")
def two_step_small(rng: random.Random) -> Task:
    name, obj = rng.choice(NAMES), rng.choice(OBJECTS)
    a, b = rng.randint(5, 20), rng.randint(2, 15)
    c = rng.randint(1, a + b - 1)
    q = f"{name} has {a} {obj}s, buys {b} more, then gives away {c}. How many {obj}s are left?"
    return _with(q, _steps([f"{a} + {b} = {a + b}", f"{a + b} - {c} = {a + b - c}"], a + b - c))


@tagged("math.sub_two_digit")
def sub_two_digit(rng: random.Random) -> Task:
    a, b = rng.randint(50, 99), rng.randint(10, 49)
    q = rng.choice(["What is {a} - {b}?", "Subtract {b} from {a}.", "Compute {a} minus {b}."])
    return _with(q.format(a=a, b=b), _steps([f"{a} - {b} = {a - b}"], a - b))


@tagged("math.change")
def change(rng: random.Random) -> Task:
    name, obj = rng.choice(NAMES), rng.choice(OBJECTS)
    n, p = rng.randint(3, 9), rng.randint(6, 19)
    total = n * p
    bill = 100 if total < 100 else 200
    q = (f"{name} buys {n} {obj}s at {p} dollars each and pays with a {bill} dollar bill. "
         f"How much change does {name} get?")
    return _with(q, _steps([f"{n} * {p} = {total}", f"{bill} - {total} = {bill - total}"],
                           bill - total))


@tagged("math.mul_big")
def mul_big(rng: random.Random) -> Task:
    a, b = rng.randint(100, 999), rng.randint(11, 99)
    q = rng.choice(["What is {a} * {b}?", "Multiply {a} by {b}.", "Compute {a} times {b}."])
    return _with(q.format(a=a, b=b), _steps([f"{a} * {b} = {a * b}"], a * b))


@tagged("math.percent")
def percent(rng: random.Random) -> Task:
    p = rng.choice([5, 10, 15, 20, 25, 30, 40, 60, 75])
    x = 20 * rng.randint(2, 60)
    ans = x * p // 100
    q = rng.choice(["What is {p}% of {x}?", "Compute {p} percent of {x}."])
    return _with(q.format(p=p, x=x), _steps([f"{x} * {p} / 100 = {ans}"], ans))


@tagged("math.wages")
def wages(rng: random.Random) -> Task:
    name = rng.choice(NAMES)
    w, d = rng.randint(12, 48), rng.randint(3, 9)
    e = w * d
    s = rng.randint(10, e - 1)
    b = rng.randint(5, 60)
    q = (f"{name} earns {w} dollars a day for {d} days, spends {s} dollars, then earns {b} more. "
         f"How many dollars does {name} have?")
    lines = [f"{w} * {d} = {e}", f"{e} - {s} = {e - s}", f"{e - s} + {b} = {e - s + b}"]
    return _with(q, _steps(lines, e - s + b))


@tagged("math.average")
def average(rng: random.Random) -> Task:
    k = rng.choice([3, 4, 5])
    while True:  # pick the mean first so it is a whole number; the last value makes it so
        mean = rng.randint(20, 80)
        nums = [rng.randint(10, 95) for _ in range(k - 1)]
        last = mean * k - sum(nums)
        if 1 <= last <= 99:
            break
    nums.append(last)
    listed = ", ".join(map(str, nums))
    q = f"What is the average of {listed}?"
    lines = [f"{' + '.join(map(str, nums))} = {sum(nums)}", f"{sum(nums)} / {k} = {mean}"]
    return _with(q, _steps(lines, mean))


@tagged("math.order_of_ops")
def order_of_ops(rng: random.Random) -> Task:
    a, b, c = rng.randint(10, 99), rng.randint(3, 19), rng.randint(3, 19)
    d = rng.randint(1, a + b * c - 1)
    p = b * c
    q = f"Compute {a} + {b} * {c} - {d}."
    return _with(q, _steps([f"{b} * {c} = {p}", f"{a} + {p} = {a + p}",
                            f"{a + p} - {d} = {a + p - d}"], a + p - d))


MAKERS: Makers = {
    "easy": (add_story, sub_story, add_bare, times_small),
    "medium": (points_total, packs, share, two_step_small, sub_two_digit),
    "hard": (change, mul_big, percent, wages, average, order_of_ops),
}
