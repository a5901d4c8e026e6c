"""HumanEval: pass@1 by executing prompt + completion + the problem's tests in the sandbox.

A chat model usually answers with the whole function in a fenced block rather than the bare body
HumanEval was designed around; both are accepted. A completion that (re)defines the entry point
is appended after the prompt, so helpers defined in the prompt stay available and the new
definition wins; a bare body continues the prompt's signature as in the original harness.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from cogumi_ray.errors import EvalError

_FIELDS = ("task_id", "prompt", "entry_point", "canonical_solution", "test")
_FENCE = re.compile(r"```[ \t]*(?:python|py|Python)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str
    entry_point: str
    canonical_solution: str
    test: str


@dataclass
class ExecResult:
    task_id: str
    passed: bool
    reason: str


def load_problems(path: str, limit: int | None = None) -> list[Problem]:
    problems: list[Problem] = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise EvalError(f"{path}:{n}: not valid JSON ({e.msg})") from None
            missing = [k for k in _FIELDS if not isinstance(row.get(k), str)]
            if missing:
                raise EvalError(f"{path}:{n}: HumanEval row lacks string fields {missing}")
            problems.append(Problem(**{k: row[k] for k in _FIELDS}))
            if limit and len(problems) >= limit:
                break
    if not problems:
        raise EvalError(f"{path} holds no HumanEval problems")
    return problems


def extract_code(answer: str) -> str:
    """The code in an answer: the first fenced block if there is one, else the answer as is."""
    m = _FENCE.search(answer)
    return m.group(1) if m else answer


def build_program(problem: Problem, completion: str) -> tuple[str, str]:
    """(the answer's code, the tests) for sandbox.verdict.run_tests: the tests run in the same
    namespace after the code, and only their reaching the end passes (an exit code would not do:
    `os._exit(0)` in a completion exits 0 before check() ran)."""
    code = extract_code(completion)
    defines_entry = re.search(rf"^def\s+{re.escape(problem.entry_point)}\s*\(", code, re.MULTILINE)
    body = f"{problem.prompt}\n{code}" if defines_entry else f"{problem.prompt}{code}"
    return body, f"{problem.test}\n\ncheck({problem.entry_point})\n"


def run_problem(problem: Problem, completion: str, *, timeout_s: float = 10.0,
                memory_mb: int = 1024) -> ExecResult:
    """One completion against its problem's tests, in a sandbox of its own."""
    from cogumi_ray.sandbox.verdict import run_tests

    v = run_tests(*build_program(problem, completion), timeout_s=timeout_s, memory_mb=memory_mb)
    return ExecResult(problem.task_id, v.passed, v.reason)


def execute(
    problems: list[Problem],
    completions: list[str],
    *,
    timeout_s: float = 10.0,
    memory_mb: int = 1024,
    workers: int = 2,
) -> list[ExecResult]:
    """Run every (problem, completion) program in its own sandbox, `workers` at a time."""
    if len(problems) != len(completions):
        raise EvalError(f"{len(problems)} problems but {len(completions)} completions")

    def one(pair: tuple[Problem, str]) -> ExecResult:
        return run_problem(*pair, timeout_s=timeout_s, memory_mb=memory_mb)

    # Threads suffice: each one only waits on its own subprocess.
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="humaneval-exec") as pool:
        return list(pool.map(one, zip(problems, completions, strict=True)))
