"""Per-domain verifiers: `verify(example, answer) -> Verdict(passed, reason)`.

What each checks (using what the generator stored in example.metadata):
- math        numeric match: the number after the last "Answer:", else the last number in the text
- code        the answer's code (fences stripped) plus metadata["tests"], run in the sandbox
- automation  the first JSON object in the answer vs metadata["call"], field by field; the reason
              names the first wrong field ("args.time: expected '19:30', got '7:30'")
- reasoning   metadata["order"]: the listed items in the same order; metadata["expected"]: exact
- general     exact match after normalising case (unless metadata["case_sensitive"]), whitespace,
              surrounding quotes and a trailing period
`verify_many` does the same for many pairs; each code answer runs in a jail of its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cogumi_ray.data.schema import Example
from cogumi_ray.errors import DataError


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str


# Numbers --------------------------------------------------------------------------------------
_NUM = r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?"
_ANSWER_NUM = re.compile(rf"answer\s*(?:is)?\s*[:=]?\s*\**\s*({_NUM})", re.IGNORECASE)


def extract_number(text: str) -> float | None:
    hits = _ANSWER_NUM.findall(text) or re.findall(_NUM, text)
    return float(hits[-1].replace(",", "")) if hits else None


def _numeric(ex: Example, answer: str) -> Verdict:
    expected = float(ex.metadata["answer"])
    got = extract_number(answer)
    if got is None:
        return Verdict(False, "no number in answer")
    if abs(got - expected) > 1e-6 * max(1.0, abs(expected)):
        return Verdict(False, f"expected {_fmt_num(expected)}, got {_fmt_num(got)}")
    return Verdict(True, "ok")


def _fmt_num(x: float) -> str:
    return str(int(x)) if x == int(x) else str(x)


# Text -----------------------------------------------------------------------------------------
def normalise_text(text: str, case_sensitive: bool = False) -> str:
    t = text.strip()
    t = re.sub(r"^(final\s+)?answer\s*:\s*", "", t, flags=re.IGNORECASE)
    t = t.strip().strip("`\"'").strip().rstrip(".!").strip().strip("`\"'")
    t = " ".join(t.split())
    return t if case_sensitive else t.casefold()


def _exact(ex: Example, answer: str) -> Verdict:
    cs = bool(ex.metadata.get("case_sensitive", False))
    expected = normalise_text(str(ex.metadata["expected"]), cs)
    got = normalise_text(answer, cs)
    if got != expected:
        return Verdict(False, f"expected {expected!r}, got {got[:80]!r}")
    return Verdict(True, "ok")


def _items(text: str) -> list[str]:
    body = normalise_text(text.strip().splitlines()[0] if text.strip() else "")
    sep = r"\s*(?:,|>|<|;|\band\b|->)\s*" if re.search(r",|>|<|;|->", body) else r"\s+"
    return [i.strip(" .") for i in re.split(sep, body) if i.strip(" .")]


def _ordering(ex: Example, answer: str) -> Verdict:
    expected = [normalise_text(str(i)) for i in ex.metadata["order"]]
    got = _items(answer)
    for pos, (e, g) in enumerate(zip(expected, got, strict=False), start=1):
        if e != g:
            return Verdict(False, f"position {pos}: expected {e!r}, got {g[:40]!r}")
    if len(got) != len(expected):
        return Verdict(False, f"expected {len(expected)} items, got {len(got)}")
    return Verdict(True, "ok")


# Tool calls -----------------------------------------------------------------------------------
def extract_json_object(text: str) -> Any:
    """The first decodable JSON value starting at a '{' in `text` (prose around it is fine)."""
    decoder = json.JSONDecoder()
    for m in re.finditer(r"\{", text):
        try:
            return decoder.raw_decode(text, m.start())[0]
        except json.JSONDecodeError:
            continue
    raise ValueError("no JSON object in answer")


def _same(expected: Any, got: Any) -> bool:
    if isinstance(expected, bool) or isinstance(got, bool):
        return type(expected) is type(got) and expected == got
    if isinstance(expected, int | float):
        return isinstance(got, int | float) and abs(got - expected) < 1e-9
    if isinstance(expected, str):
        return isinstance(got, str) and " ".join(got.split()).casefold() == \
            " ".join(expected.split()).casefold()
    return expected == got


def _tool_call(ex: Example, answer: str) -> Verdict:
    expected = ex.metadata["call"]
    try:
        got = extract_json_object(answer)
    except ValueError as e:
        return Verdict(False, str(e))
    if not isinstance(got, dict):
        return Verdict(False, f"answer JSON is a {type(got).__name__}, not an object")
    if "tool" not in got:
        return Verdict(False, "tool: missing")
    if not _same(expected["tool"], got["tool"]):
        return Verdict(False, f"tool: expected {expected['tool']!r}, got {got['tool']!r}")
    args = got.get("args")
    if not isinstance(args, dict):
        return Verdict(False, "args: missing" if args is None else "args: not an object")
    for key, value in expected["args"].items():
        if key not in args:
            return Verdict(False, f"args.{key}: missing")
        if not _same(value, args[key]):
            return Verdict(False, f"args.{key}: expected {value!r}, got {args[key]!r}")
    extra = sorted(set(args) - set(expected["args"]))
    if extra:
        return Verdict(False, f"args.{extra[0]}: unexpected argument")
    return Verdict(True, "ok")


# Code -----------------------------------------------------------------------------------------
_FENCE = re.compile(r"```[ \t]*(?:python|py)?[ \t]*\n(.*?)(?:```|$)", re.DOTALL | re.IGNORECASE)


def extract_code(answer: str) -> str:
    m = _FENCE.search(answer)
    return m.group(1) if m else answer


def _code(ex: Example, answer: str, per_item_s: float = 3.0) -> Verdict:
    # One jail per answer (answers never share an interpreter, so one that patches a module
    # cannot make another pass); the verdict comes from run_tests, which an answer that exits
    # early or prints a forged verdict line cannot fake (see cogumi_ray/sandbox/verdict.py).
    from cogumi_ray.sandbox.verdict import run_tests

    tests = str(ex.metadata["tests"])
    v = run_tests(extract_code(answer), tests, timeout_s=per_item_s)
    if v.passed:
        return Verdict(True, f"all {len(tests.splitlines())} tests passed")
    return Verdict(False, v.reason)


# Dispatch -------------------------------------------------------------------------------------
_NEEDS = {"math": "answer", "code": "tests", "automation": "call"}


def can_verify(ex: Example) -> bool:
    """True when the example carries the verifier data its domain needs."""
    if ex.domain in _NEEDS:
        return _NEEDS[ex.domain] in ex.metadata
    if ex.domain in ("reasoning", "general"):
        return "order" in ex.metadata or "expected" in ex.metadata
    return False


def verify(example: Example, answer: str) -> Verdict:
    """Check `answer` (model output text) against the verifier data of `example`."""
    if not can_verify(example):
        raise DataError(
            f"example {example.id!r} (domain {example.domain!r}) has no verifier data; "
            "suite examples store it in metadata (math: 'answer', code: 'tests', automation: "
            "'call', reasoning/general: 'expected' or 'order'); filter with can_verify()"
        )
    if example.domain == "math":
        return _numeric(example, answer)
    if example.domain == "code":
        return _code(example, answer)
    if example.domain == "automation":
        return _tool_call(example, answer)
    if "order" in example.metadata:
        return _ordering(example, answer)
    return _exact(example, answer)


def verify_many(
    examples: Sequence[Example], answers: Sequence[str], per_item_s: float = 3.0,
) -> list[Verdict]:
    """verify() for many pairs; every code answer runs in its own sandbox."""
    if len(examples) != len(answers):
        raise DataError(f"verify_many: {len(examples)} examples but {len(answers)} answers")
    out = []
    for ex, ans in zip(examples, answers, strict=True):
        out.append(_code(ex, ans, per_item_s) if ex.domain == "code" and can_verify(ex)
                   else verify(ex, ans))
    return out
