"""Judge prompts and the strict parsing of judge replies.

Reference grading uses the original spec's rubric: factual accuracy 0-3, completeness 0-2,
coherence 0-2, helpfulness 0-3; the 1-10 score is their sum (a sum of 0 is reported as 1). The
judge also states pass/fail. Pairwise comparison asks for a winner A/B/tie; the caller runs it in
both orders. A reply that does not parse raises ParseError, whose message is sent back to the
judge when it is re-asked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

CRITERIA: dict[str, int] = {  # name -> max points
    "factual_accuracy": 3,
    "completeness": 2,
    "coherence": 2,
    "helpfulness": 3,
}

REFERENCE_SYSTEM = """\
You grade a candidate answer to a task against a reference answer. Score the candidate with this rubric:
- factual_accuracy (0-3): 3 = every claim, number and result is correct; 0 = the core result is wrong.
- completeness (0-2): 2 = covers everything the task asks for; 0 = misses the main part.
- coherence (0-2): 2 = clear and well organised; 0 = garbled or self-contradictory.
- helpfulness (0-3): 3 = directly usable by the person who asked; 0 = useless.
verdict: "pass" if the candidate is correct and solves the task in substance as the reference does \
(wording and style may differ), otherwise "fail". Judge substance, not length.
Reply with only one JSON object and nothing else:
{"factual_accuracy": <0-3>, "completeness": <0-2>, "coherence": <0-2>, "helpfulness": <0-3>, \
"verdict": "pass" or "fail", "rationale": "<one or two sentences on what is right or wrong>"}"""

PAIRWISE_SYSTEM = """\
You compare two answers, A and B, to the same task and decide which one is better: more correct \
first, then more complete and more helpful. Ignore length, style and the order in which they are \
shown. Say "tie" only if neither is better.
Reply with only one JSON object and nothing else:
{"winner": "A" or "B" or "tie", "rationale": "<one or two sentences>"}"""

REASK = (
    "Your reply could not be used: {problem}. Reply again with only the JSON object in the "
    "required format, nothing else."
)


def _schema(props: dict[str, Any]) -> str:
    return json.dumps({"type": "object", "properties": props, "required": list(props),
                       "additionalProperties": False}, sort_keys=True)


REFERENCE_SCHEMA = _schema({
    **{name: {"type": "integer", "enum": list(range(top + 1))} for name, top in CRITERIA.items()},
    "verdict": {"type": "string", "enum": ["pass", "fail"]},
    "rationale": {"type": "string"},
})
PAIRWISE_SCHEMA = _schema({
    "winner": {"type": "string", "enum": ["A", "B", "tie"]},
    "rationale": {"type": "string"},
})


def bounded(schema: str, max_chars: int) -> str:
    """`schema` with a maxLength on every string property. Only for grammar-constrained local
    servers: it stops a small judge from rambling inside the rationale until max_tokens cuts the
    JSON off. (OpenAI's strict mode accepts no length constraints, so the shared schema has none.)"""
    obj = json.loads(schema)
    for prop in obj["properties"].values():
        if prop.get("type") == "string" and "enum" not in prop:
            prop["maxLength"] = max_chars
    return json.dumps(obj, sort_keys=True)


class ParseError(ValueError):
    """The judge's reply is not in the required format; the message says what is wrong."""


@dataclass(frozen=True)
class Grade:
    verdict: str  # pass | fail
    score: int  # 1-10
    criteria: dict[str, int]
    rationale: str


@dataclass(frozen=True)
class Preference:
    winner: str  # A | B | tie
    rationale: str


def reference_prompt(instruction: str, reference: str, answer: str) -> str:
    return (f"## Task\n{instruction}\n\n## Reference answer\n{reference}\n\n"
            f"## Candidate answer\n{answer}\n")


def pairwise_prompt(instruction: str, answer_a: str, answer_b: str) -> str:
    return f"## Task\n{instruction}\n\n## Answer A\n{answer_a}\n\n## Answer B\n{answer_b}\n"


def extract_json(text: str) -> dict[str, Any]:
    """The first JSON object in `text` (judges like code fences and preambles)."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            obj, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        if isinstance(obj, dict):
            return obj
        start = text.find("{", start + 1)
    raise ParseError("it contains no JSON object")


def _points(obj: dict[str, Any], name: str, top: int) -> int:
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise ParseError(f"{name!r} must be an integer 0-{top}, got {value!r}")
    if not 0 <= int(value) <= top:
        raise ParseError(f"{name!r} must be between 0 and {top}, got {value}")
    return int(value)


def parse_grade(text: str) -> Grade:
    obj = extract_json(text)
    criteria = {name: _points(obj, name, top) for name, top in CRITERIA.items()}
    verdict = str(obj.get("verdict", "")).strip().lower()
    if verdict not in ("pass", "fail"):
        raise ParseError(f"'verdict' must be \"pass\" or \"fail\", got {obj.get('verdict')!r}")
    return Grade(verdict, max(1, sum(criteria.values())), criteria, str(obj.get("rationale") or ""))


def parse_preference(text: str) -> Preference:
    obj = extract_json(text)
    winner = str(obj.get("winner", "")).strip()
    normal = {"a": "A", "b": "B", "tie": "tie"}.get(winner.lower())
    if normal is None:
        raise ParseError(f"'winner' must be \"A\", \"B\" or \"tie\", got {obj.get('winner')!r}")
    return Preference(normal, str(obj.get("rationale") or ""))
