"""Reasoning: comparisons and ordering, checked by exact or ordering match.

The response is only the answer: a name, a number, yes/no (metadata["expected"]) or a
comma-separated order (metadata["order"]). Easy = one comparison stated outright; medium = a chain
of three or sorting four items; hard = orders of four to six items from shuffled clues, sorting
larger lists, and modular day arithmetic.
"""

from __future__ import annotations

import random

from cogumi_ray.data.suite.base import Makers, Task, tagged
from cogumi_ray.data.suite.vocab import DAYS, NAMES, WORDS

# (comparative, opposite comparative, superlative, opposite superlative)
TRAITS: tuple[tuple[str, str, str, str], ...] = (
    ("taller", "shorter", "tallest", "shortest"),
    ("older", "younger", "oldest", "youngest"),
    ("faster", "slower", "fastest", "slowest"),
    ("heavier", "lighter", "heaviest", "lightest"),
    ("richer", "poorer", "richest", "poorest"),
    ("stronger", "weaker", "strongest", "weakest"),
)


def _exact(q: str, answer: str) -> Task:
    return Task(q, answer, {"expected": answer})


def _order(q: str, items: list[str]) -> Task:
    return Task(q, ", ".join(items), {"order": items})


@tagged("reasoning.larger_of_two")
def larger_of_two(rng: random.Random) -> Task:
    a, b = rng.sample(range(1, 100), 2)
    word, pick = rng.choice([("larger", max), ("smaller", min), ("bigger", max), ("less", min)])
    q = rng.choice(["Which is {w}, {a} or {b}?", "Which number is {w}: {a} or {b}?"])
    return _exact(q.format(w=word, a=a, b=b), str(pick(a, b)))


@tagged("reasoning.pair_trait")
def pair_trait(rng: random.Random) -> Task:
    x, y = rng.sample(NAMES, 2)
    more, less, _, _ = rng.choice(TRAITS)
    ask_more = rng.random() < 0.5
    q = f"{x} is {more} than {y}. Who is {more if ask_more else less}?"
    return _exact(q, x if ask_more else y)


@tagged("reasoning.yes_no")
def yes_no(rng: random.Random) -> Task:
    a, b = rng.sample(range(1, 100), 2)
    q = f"Is {a} greater than {b}? Answer yes or no."
    return _exact(q, "yes" if a > b else "no")


@tagged("reasoning.chain_three")
def chain_three(rng: random.Random) -> Task:
    people = rng.sample(NAMES, 3)  # people[0] has the most of the trait
    more, _, most, least = rng.choice(TRAITS)
    clues = [f"{people[0]} is {more} than {people[1]}.", f"{people[1]} is {more} than {people[2]}."]
    rng.shuffle(clues)
    ask_most = rng.random() < 0.5
    q = " ".join(clues) + f" Who is the {most if ask_most else least}?"
    return _exact(q, people[0] if ask_most else people[2])


@tagged("reasoning.sort_four")
def sort_four(rng: random.Random) -> Task:
    nums = rng.sample(range(1, 100), 4)
    up = rng.random() < 0.5
    how = "from smallest to largest" if up else "from largest to smallest"
    q = f"Sort these numbers {how}: {', '.join(map(str, nums))}"
    return _order(q, [str(n) for n in sorted(nums, reverse=not up)])


@tagged("reasoning.alpha_first")
def alpha_first(rng: random.Random) -> Task:
    words = rng.sample(WORDS, 3)
    first = rng.random() < 0.5
    which = "first" if first else "last"
    q = f"Which word comes {which} in alphabetical order: {', '.join(words)}?"
    return _exact(q, min(words) if first else max(words))


@tagged("reasoning.min_of_list")
def min_of_list(rng: random.Random) -> Task:
    nums = rng.sample(range(1, 200), 5)
    small = rng.random() < 0.5
    q = f"What is the {'smallest' if small else 'largest'} number in {', '.join(map(str, nums))}?"
    return _exact(q, str(min(nums) if small else max(nums)))


@tagged("reasoning.chain_order")
def chain_order(rng: random.Random) -> Task:
    people = rng.sample(NAMES, rng.choice([4, 5]))  # in order, most of the trait first
    more, _, most, least = rng.choice(TRAITS)
    clues = [f"{a} is {more} than {b}." for a, b in zip(people, people[1:], strict=False)]
    rng.shuffle(clues)
    down = rng.random() < 0.5
    q = " ".join(clues) + f" List them from {most if down else least} to {least if down else most}."
    return _order(q, people if down else people[::-1])


@tagged("reasoning.middle_person")
def middle_person(rng: random.Random) -> Task:
    people = rng.sample(NAMES, 5)
    more, *_ = rng.choice(TRAITS)
    clues = [f"{a} is {more} than {b}." for a, b in zip(people, people[1:], strict=False)]
    rng.shuffle(clues)
    return _exact(" ".join(clues) + " Who is in the middle?", people[2])


@tagged("reasoning.sort_many")
def sort_many(rng: random.Random) -> Task:
    nums = rng.sample(range(100, 1000), rng.randint(6, 8))
    up = rng.random() < 0.5
    how = "in ascending order" if up else "in descending order"
    q = f"Put these numbers {how}: {', '.join(map(str, nums))}"
    return _order(q, [str(n) for n in sorted(nums, reverse=not up)])


@tagged("reasoning.alpha_sort")
def alpha_sort(rng: random.Random) -> Task:
    words = rng.sample(WORDS, 5)
    q = f"Sort these words alphabetically: {', '.join(words)}"
    return _order(q, sorted(words))


@tagged("reasoning.day_offset")
def day_offset(rng: random.Random) -> Task:
    start, k = rng.randrange(7), rng.randint(8, 60)
    q = f"Today is {DAYS[start]}. What day of the week will it be in {k} days?"
    return _exact(q, DAYS[(start + k) % 7])


MAKERS: Makers = {
    "easy": (larger_of_two, pair_trait, yes_no),
    "medium": (chain_three, sort_four, alpha_first, min_of_list),
    "hard": (chain_order, middle_person, sort_many, alpha_sort, day_offset),
}
