"""`cogumi demo`'s last act: ask the served run a few questions with the official `openai` SDK.

One held-out suite task per domain (the first easy one by id: nothing is picked for looking
good), each sent to `model="cogumi"` so the router decides, then a dissatisfied follow-up to the
first wrong answer (from the escalation detector's shipped hard cases) to show escalation. Each
answer is checked with the suite's own verifier, and the table says which option answered.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from cogumi_ray import storage
from cogumi_ray.serve.policy import ROUTED

if TYPE_CHECKING:
    from cogumi_ray.data.schema import Example
    from cogumi_ray.serve.client import ChatClient

ESCALATION_KIND = "plain_dissatisfied"  # a follow-up every detector should flag


@dataclass(frozen=True)
class DemoAnswer:
    label: str  # "math", or "math follow-up" for the escalation turn
    question: str
    answer: str
    option: str  # what answered: "base" or a modifier's name
    confidence: float | None
    passed: bool | None  # the suite verifier's verdict (None: nothing to verify)
    seconds: float  # request sent to last streamed chunk, as the client saw it
    first_token_seconds: float | None = None  # request sent to first answer text (None: no text)


def answers_path(run_dir: str) -> str:
    """Where the demo writes its answers; the run report's Serving section reads this file."""
    return storage.join(run_dir, "serve", "demo_answers.json")


def pick_examples(examples: list[Example]) -> list[Example]:
    """The first verifiable held-out task of each domain by id, easy ones first."""
    from cogumi_ray.data.suite.verify import can_verify

    order = {"easy": 0, "medium": 1, "hard": 2}
    best: dict[str, Example] = {}
    kept = [ex for ex in examples if can_verify(ex)]  # planted junk that curation let through
    for ex in sorted(kept, key=lambda e: (order.get(e.difficulty, 3), e.id)):
        best.setdefault(ex.domain, ex)
    return [best[d] for d in sorted(best)]


def escalation_message() -> str:
    """A dissatisfied follow-up from the escalation detector's shipped hard cases."""
    from cogumi_ray.route.escalation import HARD_CASES

    with open(HARD_CASES, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row.get("label") == 1 and row.get("kind") == ESCALATION_KIND:
                return str(row["text"])
    raise LookupError(f"{HARD_CASES} holds no {ESCALATION_KIND!r} case")


def _ask(client: ChatClient, label: str, messages: list[dict[str, str]],
         max_tokens: int) -> tuple[DemoAnswer, str]:
    start = time.perf_counter()
    text, routing = "", None
    first: float | None = None
    for so_far, got, _finish in client.stream(ROUTED, messages, temperature=0.0,
                                              max_tokens=max_tokens):
        if so_far and first is None:
            first = time.perf_counter() - start
        text, routing = so_far, got or routing
    answer = DemoAnswer(label, messages[-1]["content"], text,
                        routing.option if routing else "?",
                        routing.confidence if routing else None, None,
                        time.perf_counter() - start, first)
    return answer, text


def ask_demo_queries(client: ChatClient, examples: list[Example],
                     max_tokens: int = 128) -> list[DemoAnswer]:
    """Ask each example routed, then follow the first failed answer up with a complaint."""
    from dataclasses import replace

    from cogumi_ray.data.suite.verify import verify_many

    asked = [_ask(client, ex.domain, [{"role": "user", "content": ex.instruction}], max_tokens)
             for ex in examples]
    verdicts = verify_many(examples, [text for _, text in asked])
    answers = [replace(a, passed=v.passed) for (a, _), v in zip(asked, verdicts, strict=True)]
    if not answers:
        return answers
    # The first answer that failed (a base answer if any): that is where a user complains.
    failed = [i for i, a in enumerate(answers) if a.passed is False]
    target = next((i for i in failed if answers[i].option == "base"), failed[0] if failed else 0)
    ex = examples[target]
    followup = [{"role": "user", "content": ex.instruction},
                {"role": "assistant", "content": answers[target].answer},
                {"role": "user", "content": escalation_message()}]
    again, text = _ask(client, f"{ex.domain} follow-up", followup, max_tokens)
    answers.append(replace(again, passed=verify_many([ex], [text])[0].passed))
    return answers


def table(answers: list[DemoAnswer], width: int = 48) -> list[str]:
    """A terminal table: what was asked, who answered, how sure the router was, the verdict."""
    def short(s: str) -> str:
        s = " ".join(s.split())
        return s if len(s) <= width else s[: width - 1] + "…"

    rows = [("query", "answered by", "conf", "verdict", "secs", "answer")]
    for a in answers:
        conf = "-" if a.confidence is None else f"{a.confidence:.2f}"
        verdict = {True: "pass", False: "fail", None: "-"}[a.passed]
        rows.append((a.label, a.option, conf, verdict, f"{a.seconds:.1f}", short(a.answer)))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return ["  ".join(c.ljust(w) for c, w in zip(r[:5], widths, strict=True)) + "  " + r[5]
            for r in rows]


def write_answers(answers: list[DemoAnswer], path: str) -> None:
    """The demo's answers as JSON beside the run (the report and people can read them)."""
    storage.atomic_write_json(path, [asdict(a) for a in answers])


def load_answers(path: str) -> list[dict[str, Any]]:
    return storage.read_json(path) if storage.exists(path) else []
