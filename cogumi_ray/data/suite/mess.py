"""Planted mess for curation to clean, each planted row labelled in metadata["planted"].

Kinds (counts are rates of the clean row count, from SuiteConfig):
- exact_dup_of:<id>  a clean row re-emitted verbatim under a new id (often in another format file)
- near_dup_of:<id>   a clean row whose instruction got small edits (case, punctuation, whitespace,
                     a synonym, a polite prefix); char-3-gram Jaccard with the original >= 0.85
                     (metadata["near_dup_jaccard"], metadata["edits"])
- too_short          one word each side
- too_long           ~1,600-word "meeting notes" to summarise (far above curate.max_tokens)
- non_english:<lang> real Spanish/French/German/Italian/Portuguese sentences
- pii:<kind>         email | phone | api_key put into the instruction of an otherwise valid clean
                     row (the row keeps its id and verifier data; the value is never in metadata)
Malformed lines (no metadata possible) are listed by file and line in the suite stats instead.
"""

from __future__ import annotations

import json
import random
import re
import string
from dataclasses import replace
from typing import Any

from cogumi_ray.data.schema import Example
from cogumi_ray.data.suite.base import char_ngrams, jaccard, normalise_for_similarity
from cogumi_ray.data.suite.foreign import LANGS, foreign_pair
from cogumi_ray.data.suite.generator import SOURCE
from cogumi_ray.data.suite.vocab import DAYS, NAMES, WORDS

NEAR_DUP_MIN_JACCARD = 0.85
MALFORMED_KINDS = ("truncated", "not_object", "missing_keys", "not_json")
PII_KINDS = ("email", "phone", "api_key")

SYNONYMS = (("What is", "What's"), ("Write", "Create"), ("Compute", "Calculate"),
            ("returns", "gives back"), ("How many", "What number of"), ("Sort", "Order"),
            ("Which", "What"), ("buys", "purchases"), ("gets", "receives"), ("Set", "Put"),
            ("words", "terms"), ("numbers", "values"), ("letters", "characters"))


def similarity(a: Example, b: Example) -> float:
    """Char-3-gram Jaccard of instruction + response, the lower of a mild (case + whitespace)
    and an aggressive (also punctuation) normalisation."""
    def grams(e: Example, aggressive: bool) -> frozenset[str]:
        text = f"{e.instruction}\n{e.response}"
        norm = normalise_for_similarity(text) if aggressive else " ".join(text.lower().split())
        return char_ngrams(norm)

    return min(jaccard(grams(a, f), grams(b, f)) for f in (False, True))


# Near duplicates ------------------------------------------------------------------------------
def _edit(rng: random.Random, text: str, kind: str) -> str:
    if kind == "case":
        return text.lower() if rng.random() < 0.5 else text[:1].swapcase() + text[1:]
    if kind == "punct":
        stripped = text.rstrip("?.!")
        if stripped != text:
            return stripped if rng.random() < 0.5 else stripped + rng.choice(["!", "??", " ?"])
        return text + rng.choice([".", "!", "?"])
    if kind == "whitespace":
        spaces = [m.start() for m in re.finditer(" ", text)]
        if spaces:
            i = rng.choice(spaces)
            text = text[:i] + "  " + text[i + 1:]
        return rng.choice(["", " "]) + text + rng.choice(["  ", "\n", " \t"])
    if kind == "synonym":
        options = [(a, b) for a, b in SYNONYMS if re.search(rf"\b{re.escape(a)}\b", text)]
        if options:
            a, b = rng.choice(options)
            return re.sub(rf"\b{re.escape(a)}\b", b, text, count=1)
        return text
    if kind == "polite":
        return rng.choice(["Please: ", "Quick question: ", "Hey, "]) + text
    raise ValueError(kind)


def near_duplicate(rng: random.Random, ex: Example, new_id: str) -> Example:
    """Edit the instruction only (the response stays valid for the verifier)."""
    for _ in range(10):
        kinds = rng.sample(["case", "punct", "whitespace", "synonym", "polite"], 2)
        text = ex.instruction
        for kind in kinds:
            text = _edit(rng, text, kind)
        cand = replace(ex, id=new_id, instruction=text)
        sim = similarity(ex, cand)
        if text != ex.instruction and sim >= NEAR_DUP_MIN_JACCARD:
            break
    else:  # short rows: whitespace edits alone always keep the normalised text identical
        kinds = ["whitespace"]
        cand = replace(ex, id=new_id, instruction=_edit(rng, ex.instruction, "whitespace"))
        sim = similarity(ex, cand)
    meta = {**ex.metadata, "planted": f"near_dup_of:{ex.id}", "edits": sorted(kinds),
            "near_dup_jaccard": round(sim, 3)}
    return replace(cand, metadata=meta)


# PII ------------------------------------------------------------------------------------------
def _pii_value(rng: random.Random, kind: str) -> str:
    if kind == "email":
        last = rng.choice(["smith", "garcia", "novak", "okafor", "tanaka", "rossi", "dubois"])
        domain = rng.choice(["gmail.com", "outlook.com", "yahoo.com", "proton.me", "acme-corp.com"])
        return f"{rng.choice(NAMES).lower()}.{last}{rng.randint(1, 99)}@{domain}"
    if kind == "phone":
        a, b, c = rng.randint(201, 989), rng.randint(200, 999), rng.randint(0, 9999)
        return rng.choice([f"+1 {a}-{b}-{c:04d}", f"({a}) {b}-{c:04d}",
                           f"+44 20 {b}{c % 10} {c:04d}", f"{a}.{b}.{c:04d}"])
    alnum = string.ascii_letters + string.digits
    upper = string.ascii_uppercase + string.digits
    return rng.choice([
        "sk-" + "".join(rng.choice(alnum) for _ in range(48)),
        "AKIA" + "".join(rng.choice(upper) for _ in range(16)),
        "ghp_" + "".join(rng.choice(alnum) for _ in range(36)),
    ])


_PII_SENTENCES = {
    "email": ("My email is {v}.", "Please reply to {v} when done.", "(sent from {v})"),
    "phone": ("Call me at {v} if anything is unclear.", "My number is {v}."),
    "api_key": ("Use my key {v} for this.", "API_KEY={v}"),
}


def with_pii(rng: random.Random, ex: Example, kind: str) -> Example:
    sentence = rng.choice(_PII_SENTENCES[kind]).format(v=_pii_value(rng, kind))
    text = f"{sentence} {ex.instruction}" if rng.random() < 0.5 else f"{ex.instruction} {sentence}"
    return replace(ex, instruction=text, metadata={**ex.metadata, "planted": f"pii:{kind}"})


# Junk rows ------------------------------------------------------------------------------------
_SHORT_Q = ("Hi", "Thanks", "Hello", "Ok", "Test", "Why?", "Yes", "No", "Help", "Hey", "Sure",
            "Hmm", "Cool", "Bye", "What?")
_SHORT_A = ("Ok.", "Yes.", "Hi!", "Sure.", "No.", "Done.", "Thanks.", "Fine.", "Right.", "Great.")


def too_short_rows(rng: random.Random, n: int) -> list[Example]:
    pairs = [(q, a) for q in _SHORT_Q for a in _SHORT_A]
    rng.shuffle(pairs)
    out = []
    for i in range(n):
        q, a = pairs[i % len(pairs)]
        out.append(_junk(rng, f"junk-short-{i:04d}", q, a + "!" * (i // len(pairs)), "too_short"))
    return out


def too_long(rng: random.Random, i: int, words: int = 1600) -> Example:
    sentences: list[str] = []
    count = 0
    while count < words:
        s = rng.choice([
            "On {day} {name} moved the {w1} next to the {w2} and wrote a note about the {w3}.",
            "{name} said the {w1} was ready, but the {w2} still needed work before {day}.",
            "The team discussed the {w1}, the {w2} and whether the {w3} should wait until {day}.",
            "Nobody could find the {w1}, so {name} checked the {w2} near the {w3} again.",
        ]).format(day=rng.choice(DAYS), name=rng.choice(NAMES), w1=rng.choice(WORDS),
                  w2=rng.choice(WORDS), w3=rng.choice(WORDS))
        sentences.append(s)
        count += len(s.split())
    q = "Summarize these meeting notes in one sentence:\n" + " ".join(sentences)
    a = f"The notes list small tasks that {rng.choice(NAMES)} and the team still need to finish."
    return _junk(rng, f"junk-long-{i:04d}", q, a, "too_long")


def non_english(rng: random.Random, i: int) -> Example:
    lang = sorted(LANGS)[i % len(LANGS)]
    q, a, domain = foreign_pair(rng, lang)
    return _junk(rng, f"junk-lang-{i:04d}", q, a, f"non_english:{lang}", domain)


def _junk(rng: random.Random, id_: str, q: str, a: str, planted: str,
          domain: str | None = None) -> Example:
    return Example(id=id_, instruction=q, response=a,
                   domain=domain or rng.choice(["math", "general", "reasoning"]),
                   difficulty="easy", source=SOURCE, metadata={"planted": planted})


# Malformed lines ------------------------------------------------------------------------------
def malformed_line(rng: random.Random, kind: str, row: dict[str, Any]) -> str:
    """A line a JSONL reader must quarantine; `row` is a valid raw row of the target file."""
    if kind == "truncated":
        full = json.dumps(row, ensure_ascii=False)
        while True:
            cut = full[: rng.randint(10, max(11, len(full) - 5))]
            try:
                json.loads(cut)
            except json.JSONDecodeError:
                return cut
    if kind == "not_object":
        return rng.choice(['[1, 2, 3]', '"just a string"', '42', 'null', 'true',
                           '["instruction", "response"]'])
    if kind == "missing_keys":
        if "conversations" in row and rng.random() < 0.5:  # a human turn with no answer
            return json.dumps({**row, "conversations": row["conversations"][:1]},
                              ensure_ascii=False)
        content = [k for k in row if k not in ("id", "domain", "difficulty", "source", "metadata")]
        drop = rng.choice([content[-1:], content])  # lose the response side, or all content
        return json.dumps({k: v for k, v in row.items() if k not in drop}, ensure_ascii=False)
    if kind == "not_json":
        return rng.choice(["this line is not JSON at all", "<<<<<<< HEAD",
                           "id,instruction,response", "{'id': 1, 'instruction': 'single quotes'}",
                           '{"id": "x", "instruction": "unterminated'])
    raise ValueError(f"unknown malformed kind {kind!r}; kinds: {MALFORMED_KINDS}")
