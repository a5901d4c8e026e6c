"""General: short factual and transformational tasks with exact-match answers.

The response is only the answer; metadata["expected"] holds it and metadata["case_sensitive"] says
whether case matters (it does for "in capital letters" and acronyms). Easy = copying,
copy-and-transform or small lookups (repeat words, quoted word, uppercase, first letter, antonyms,
capitals, plurals); medium = counting and reversing one word; hard = whole phrases (reverse word
order, number words, acronyms, vowels).
"""

from __future__ import annotations

import random

from cogumi_ray.data.suite.base import Makers, Task, tagged
from cogumi_ray.data.suite.vocab import ANTONYMS, CAPITALS, OBJECTS, WORDS, number_to_words


def _exact(q: str, answer: str, case_sensitive: bool = False) -> Task:
    return Task(q, answer, {"expected": answer, "case_sensitive": case_sensitive})


@tagged("general.uppercase")
def uppercase(rng: random.Random) -> Task:
    w = rng.choice(WORDS)
    q = rng.choice(["Write the word {w} in capital letters.", "Uppercase this word: {w}",
                    "Convert {w} to upper case."])
    return _exact(q.format(w=w), w.upper(), case_sensitive=True)


@tagged("general.first_letter")
def first_letter(rng: random.Random) -> Task:
    w = rng.choice(WORDS)
    q = rng.choice(["What is the first letter of the word {w}?",
                    "Which letter does {w} start with?"])
    return _exact(q.format(w=w), w[0])


@tagged("general.antonym")
def antonym(rng: random.Random) -> Task:
    a, b = rng.choice(ANTONYMS)
    if rng.random() < 0.5:
        a, b = b, a
    q = rng.choice(["What is the opposite of {w}?", "Give an antonym of {w}.",
                    "What word means the opposite of {w}?"])
    return _exact(q.format(w=a), b)


@tagged("general.capital")
def capital(rng: random.Random) -> Task:
    country, city = rng.choice(CAPITALS)
    q = rng.choice(["What is the capital of {c}?", "Name the capital city of {c}.",
                    "Which city is the capital of {c}?"])
    return _exact(q.format(c=country), city)


@tagged("general.plural")
def plural(rng: random.Random) -> Task:
    w = rng.choice(OBJECTS)
    q = rng.choice(["What is the plural of {w}?", "Write the plural form of {w}."])
    return _exact(q.format(w=w), w + "s")


@tagged("general.repeat_words")
def repeat_words(rng: random.Random) -> Task:
    words = " ".join(rng.sample(WORDS, rng.randint(2, 4)))
    q = rng.choice(["Repeat these words exactly: {p}", "Copy this phrase: {p}",
                    "Say back to me: {p}"])
    return _exact(q.format(p=words), words)


@tagged("general.quote_word")
def quote_word(rng: random.Random) -> Task:
    w = rng.choice(WORDS + OBJECTS)
    q = rng.choice(["Which word is in quotes here: \"{w}\"?", "Echo the word \"{w}\".",
                    "Return the quoted word: \"{w}\""])
    return _exact(q.format(w=w), w)


@tagged("general.count_letters")
def count_letters(rng: random.Random) -> Task:
    w = rng.choice(WORDS)
    q = rng.choice(["How many letters are in the word {w}?", "Count the letters in {w}."])
    return _exact(q.format(w=w), str(len(w)))


@tagged("general.reverse_word")
def reverse_word(rng: random.Random) -> Task:
    w = rng.choice(WORDS)
    q = rng.choice(["Spell {w} backwards.", "Write the word {w} in reverse."])
    return _exact(q.format(w=w), w[::-1])


@tagged("general.last_letter")
def last_letter(rng: random.Random) -> Task:
    w = rng.choice(WORDS)
    q = rng.choice(["What is the last letter of the word {w}?", "Which letter does {w} end with?"])
    return _exact(q.format(w=w), w[-1])


@tagged("general.letter_count")
def letter_count(rng: random.Random) -> Task:
    w = rng.choice(WORDS)
    c = rng.choice(sorted(set(w)))
    return _exact(f"How many times does the letter {c} appear in {w}?", str(w.count(c)))


@tagged("general.reverse_words")
def reverse_words(rng: random.Random) -> Task:
    words = rng.sample(WORDS, rng.randint(4, 6))
    q = f"Reverse the order of these words: {' '.join(words)}"
    return _exact(q, " ".join(words[::-1]))


@tagged("general.number_words")
def number_words(rng: random.Random) -> Task:
    n = rng.randint(101, 9999)
    return _exact(rng.choice(["Write {n} in words.", "Spell out the number {n}."]).format(n=n),
                  number_to_words(n))


@tagged("general.acronym")
def acronym(rng: random.Random) -> Task:
    words = rng.sample(WORDS, rng.randint(3, 5))
    q = f"Make an acronym in capital letters from: {' '.join(words)}"
    return _exact(q, "".join(w[0] for w in words).upper(), case_sensitive=True)


@tagged("general.vowels")
def vowels(rng: random.Random) -> Task:
    words = rng.sample(WORDS, 3)
    phrase = " ".join(words)
    return _exact(f"How many vowels (a, e, i, o, u) are in: {phrase}?",
                  str(sum(ch in "aeiou" for ch in phrase)))


@tagged("general.sort_letters")
def sort_letters(rng: random.Random) -> Task:
    w = rng.choice(WORDS)
    return _exact(f"Write the letters of {w} in alphabetical order.", "".join(sorted(w)))


MAKERS: Makers = {
    "easy": (uppercase, first_letter, antonym, capital, plural, repeat_words, quote_word),
    "medium": (count_letters, reverse_word, last_letter, letter_count),
    "hard": (reverse_words, number_words, acronym, vowels, sort_letters),
}
