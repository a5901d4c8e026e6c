"""The escalation detector's training set, generated: templates x slots for follow-up messages.

Label 1 = the user is dissatisfied with the last answer (wrong, still broken, try again,
frustration, sarcasm, a polite "thanks, but ..."); 0 = satisfied or a neutral follow-up. Each
family names a phenomenon rather than a sentence, including the ones that fool keyword rules:
problem words under negation ("no errors now") and in questions ("what happens if it is
empty?"), self-blame ("I used the wrong file"), fixed errors ("the TypeError is gone"), and
praise words used sarcastically ("brilliant, it still fails"). The hand-written hard cases
(`data/escalation_hard.jsonl`) are kept out of this set and only ever evaluate.
"""

from __future__ import annotations

import random

Template = tuple[str, ...]  # parts joined by spaces; "{slot}" parts are drawn from SLOTS

SLOTS: dict[str, list[str]] = {
    "no": ["no", "nope", "nah", "no no", "hmm no"],
    "it": ["it", "this", "that", "the code", "the function", "your answer", "the result", "the script"],
    "its": ["that's", "it's", "this is", "that is", "it is", "this's"],
    "wrong": ["wrong", "incorrect", "not right", "not correct", "off", "broken", "a mess"],
    "still": ["still", "again", "yet again", "once more", "still just"],
    "fails": ["fails", "crashes", "breaks", "errors out", "doesn't work", "does not run",
              "won't compile", "gives the wrong output", "returns garbage", "hangs"],
    "verb_neg": ["doesn't work", "does not work", "doesn't compile", "isn't correct", "isn't right",
                 "doesn't run", "won't run", "is not working", "doesn't pass the tests",
                 "isn't what I wanted", "does not sort correctly", "is not the right answer"],
    "error": ["TypeError", "IndexError", "KeyError", "ValueError", "NameError", "SyntaxError",
              "ZeroDivisionError", "AttributeError", "a segfault", "an exception", "a stack trace",
              "RecursionError"],
    "context": ["the list is empty", "I pass a negative number", "the input has duplicates",
                "the string is long", "n is zero", "there is one element", "the file is missing",
                "the numbers are floats"],
    "where": ["on line 3", "on the last line", "in the loop", "at the return", "on the first call",
              "with an empty list", "for negative inputs", "in the second test"],
    "retry": ["try again", "please try again", "redo it", "give it another go", "fix it",
              "do it again properly", "one more time please", "please fix this"],
    "thanks": ["thanks", "thank you", "ok thanks", "I appreciate it", "thanks for trying", "cheers",
               "ok", "fine"],
    "but": [", but", ", however", ". Unfortunately", ", though", " but", ". Sadly"],
    "complaint": ["it still fails the test", "the result is off by one", "it returns None",
                  "the output is empty", "the answer is wrong", "it crashes on big inputs",
                  "that is not what I asked for", "it ignores the edge case",
                  "the total is wrong", "it prints nothing"],
    "praise": ["oh great", "wow", "brilliant", "fantastic", "perfect", "super", "nice", "great job",
               "amazing", "lovely", "awesome", "wonderful", "terrific"],
    "bad_outcome": ["it still crashes", "same error as before", "now nothing works",
                    "another exception", "you broke it again", "the tests fail again",
                    "still the wrong number", "now it doesn't even compile", "it got worse",
                    "back to the same bug"],
    "frust": ["ugh", "come on", "seriously", "for crying out loud", "argh", "this is ridiculous",
              "are you kidding", "unbelievable"],
    "times": ["twice", "three times", "so many times", "again and again", "five times"],
    "part": ["the part about duplicates", "the edge case", "my second requirement",
             "the negative numbers", "the sorting order", "what I said about types",
             "the constraint", "half of the question"],
    "num": [str(n) for n in range(2, 60, 3)],
    "good": ["it works", "that works", "works now", "all tests pass", "it runs", "that's correct",
             "exactly what I needed", "that's right", "looks good", "that did it", "it's fixed",
             "it compiles now", "that solved it", "spot on"],
    "happy": ["thanks", "thank you", "great", "perfect", "awesome", "nice", "cool", "excellent",
              "brilliant", "wonderful", "cheers", "yes", "yay", "sweet", "good"],
    "problem": ["errors", "problems", "issues", "crashes", "complaints", "bugs", "failures",
                "exceptions"],
    "now": ["now", "anymore", "any more", "this time", "after your fix", "today"],
    "negverb": ["doesn't crash", "doesn't fail", "no longer fails", "no longer crashes",
                "doesn't throw", "isn't broken", "is not broken", "doesn't hang",
                "no longer throws", "doesn't error"],
    "right": ["right", "correct", "fine", "good", "exactly it", "what I wanted"],
    "myfault": ["my bad", "my mistake", "sorry", "oops", "I was wrong", "my fault", "turns out"],
    "mywrong": ["I used the wrong input", "I had the wrong version", "I ran the wrong file",
                "I typed the wrong number", "I was calling the wrong function",
                "I had the wrong argument order", "I copied the wrong line"],
    "fixed": ["fixed the", "got rid of the", "solved the", "cleared up the", "took care of the"],
    "gone": ["is gone", "disappeared", "went away", "is fixed", "no longer shows up"],
    "bug": ["error", "bug", "problem", "issue", "crash", "failing test", "warning"],
    "ask": ["can you", "could you", "please", "would you", "now", "next,"],
    "task": ["add comments", "add docstrings", "make it shorter", "add type hints",
             "write tests for it", "explain how it works", "make it faster", "rename the variables",
             "do the same for a dictionary", "convert it to a class", "handle strings too",
             "show an example call"],
    "q": ["what does", "how does", "why does", "when does", "what would"],
    "thing": ["the second line", "the loop", "this function", "the return statement", "that regex",
              "the base case", "line 4"],
    "qverb": ["do", "work", "return", "mean", "print"],
    "general": ["what happens if", "what should I do if", "how do I handle it when",
                "what could go wrong if", "is it a problem if", "what if"],
    "topic": ["using recursion", "a global variable", "a for loop", "mutating the list",
              "catching every exception", "floating point sums"],
}

DISSATISFIED: list[Template] = [
    ("{no},", "{it}", "is", "{wrong}"), ("{it}", "is", "{wrong}"), ("{no}.", "{wrong}."),
    ("{its}", "{wrong}"), ("{no},", "{its}", "{wrong}"), ("{its}", "{still}", "{wrong}"),
    ("{it}", "{still}", "{fails}"), ("{still}", "{wrong}"), ("{retry}",), ("{no},", "{retry}"),
    ("{it}", "{verb_neg}"), ("{no},", "{it}", "{verb_neg}"), ("{it}", "{still}", "{verb_neg}"),
    ("{error}", "{where}"), ("{it}", "throws", "{error}", "{where}"), ("{still}", "{error}"),
    ("I get", "{error}", "when", "{context}"), ("{it}", "{fails}", "when", "{context}"),
    ("{thanks}{but}", "{complaint}"), ("{thanks}{but}", "{it}", "{verb_neg}"),
    ("{praise},", "{bad_outcome}"), ("{praise}.", "{bad_outcome}."), ("{praise},", "thanks for nothing"),
    ("yeah right,", "{it}", "{verb_neg}"), ("{praise},", "{it}", "{still}", "{fails}"),
    ("{frust},", "{bad_outcome}"), ("{frust},", "{it}", "is", "{still}", "{wrong}"),
    ("I asked", "{times}", "and", "{it}", "is", "{still}", "{wrong}"), ("{frust}!", "{retry}"),
    ("the answer should be", "{num},", "not", "{num}"), ("expected", "{num}", "but got", "{num}"),
    ("you ignored", "{part}"), ("you forgot", "{part}"), ("you missed", "{part}"),
    ("that's not what I asked,", "{retry}"), ("{bad_outcome}",), ("useless,", "{it}", "{verb_neg}"),
    ("not quite,", "{complaint}"), ("{it}", "can't be", "{right},", "{complaint}"),
    # Bare verdicts ("that's wrong") were one template among ~40, while "that's"/"no, that's"
    # led three satisfied ones ("no, that's right"): the detector scored "that's wrong" as
    # satisfied. More of the plainest shape of complaint, none of them a hard case verbatim.
    ("{its}", "just", "{wrong}"), ("{its}", "{wrong},", "{retry}"), ("{no},", "{wrong}"),
    ("{no},", "{its}", "{wrong},", "{retry}"), ("{its}", "{wrong}", "again"),
    ("{no},", "{its}", "{wrong}", "again"),
]

SATISFIED: list[Template] = [
    ("{happy},", "{good}"), ("{good},", "{happy}"), ("{good}",), ("{happy}!",),
    ("{no},", "{its}", "{right},", "{happy}"), ("{no},", "{its}", "{right}", "{now}"),
    ("{its}", "{right}"),
    ("no", "{problem}", "{now},", "{happy}"), ("no more", "{problem},", "{good}"),
    ("nothing", "{wrong}", "with", "{it}", "{now}"), ("I can't find any", "{problem},", "{happy}"),
    ("{it}", "{negverb}", "{now},", "{happy}"), ("{it}", "{negverb}", "{now}"),
    ("not", "bad at all,", "{good}"), ("{myfault},", "{mywrong}.", "{good}"),
    ("{myfault},", "{mywrong};", "your answer is", "{right}"), ("{it}", "{fixed}", "{bug}", "I had"),
    ("the", "{error}", "{gone}"), ("the", "{bug}", "{gone},", "{happy}"),
    ("{ask}", "{task}?"), ("{ask}", "also", "{task}?"), ("{happy},", "now", "{task}"),
    ("{q}", "{thing}", "{qverb}?"), ("{general}", "{context}?"),
    ("is there anything", "{wrong}", "with", "{topic}", "in general?"),
    ("ok, next question:", "what is", "{num}", "times", "{num}?"),
    ("{no},", "I don't need anything else,", "{happy}"), ("no further questions,", "{good}"),
    ("{happy},", "that fixed the", "{bug}"), ("{happy},", "the", "{error}", "{gone}"),
]


def _fill(template: Template, label: int, rng: random.Random) -> str:
    import re

    words = [re.sub(r"\{(\w+)\}", lambda m: rng.choice(SLOTS[m.group(1)]), part) for part in template]
    text = " ".join(words).replace(" ,", ",").replace(" .", ".").replace(" ;", ";")
    if rng.random() < 0.35:
        text = text.lower()
    elif rng.random() < 0.05:
        text = text.upper()
    if rng.random() < 0.3:
        endings = [".", "!", "!!", "?", "...", " :)"] + ([" :("] if label else [])
        text = text.rstrip(".!?") + rng.choice(endings)
    return text[0].upper() + text[1:] if rng.random() < 0.5 else text


def generate(per_class: int, seed: int = 0) -> list[tuple[str, int]]:
    """Up to `per_class` distinct messages of each label, shuffled."""
    rng = random.Random(seed)
    out: list[tuple[str, int]] = []
    for label, templates in ((1, DISSATISFIED), (0, SATISFIED)):
        seen: set[str] = set()
        for _ in range(per_class * 20):  # bounded: small template families run out of variety
            if len(seen) >= per_class:
                break
            text = _fill(rng.choice(templates), label, rng)
            if text not in seen:
                seen.add(text)
                out.append((text, label))
    rng.shuffle(out)
    return out
