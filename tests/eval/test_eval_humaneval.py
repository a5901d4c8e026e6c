"""HumanEval harness correctness: canonical solutions pass, bare prompts fail, answer formats."""

from __future__ import annotations

import json
import random

import pytest

from cogumi_ray.errors import EvalError
from cogumi_ray.eval.config import EvalConfig
from cogumi_ray.eval.harness import benchmark_file
from cogumi_ray.eval.humaneval import Problem, build_program, execute, extract_code, load_problems


@pytest.fixture(scope="module")
def problems() -> list[Problem]:
    cfg = EvalConfig()
    path = benchmark_file(cfg, cfg.humaneval_file)  # the default dir resolves from the repo root
    return load_problems(path)


@pytest.fixture(scope="module")
def sample(problems) -> list[Problem]:
    return random.Random(0).sample(problems, 20)


def test_all_164_problems_load(problems):
    assert len(problems) == 164
    assert len({p.task_id for p in problems}) == 164


def test_canonical_solutions_pass_sample(sample):
    results = execute(sample, [p.canonical_solution for p in sample])
    assert [r.reason for r in results if not r.passed] == []


def test_bare_prompts_fail_sample(sample):
    results = execute(sample, ["" for _ in sample])
    assert sum(r.passed for r in results) == 0
    assert all(r.reason for r in results)


@pytest.mark.slow
def test_canonical_164_of_164_and_bare_0(problems):
    good = execute(problems, [p.canonical_solution for p in problems], workers=2)
    assert sum(r.passed for r in good) == 164, [r for r in good if not r.passed]
    bare = execute(problems, ["" for _ in problems], workers=2)
    assert sum(r.passed for r in bare) == 0


def test_chat_style_answers_are_accepted(sample):
    p = sample[0]
    whole = f"Sure! Here it is:\n```python\n{p.prompt}{p.canonical_solution}```\nIt works because..."
    body_only = f"```python\n{p.canonical_solution}```"
    wrong = f"```python\ndef {p.entry_point}(*args, **kwargs):\n    return None\n```"
    results = execute([p, p, p], [whole, body_only, wrong])
    assert [r.passed for r in results] == [True, True, False]


def test_build_program_shape(sample):
    p = sample[0]
    code, tests = build_program(p, "    return 1\n")
    assert code == p.prompt + "    return 1\n"
    assert tests.startswith(p.test) and tests.rstrip().endswith(f"check({p.entry_point})")
    assert extract_code("no fences here") == "no fences here"
    assert extract_code("a\n```py\nx = 1\n```\nb\n```python\ny\n```") == "x = 1\n"
    assert extract_code("```python\nunterminated = True\n") == "unterminated = True\n"


EXITS = {  # each ends the script with status 0 (or a caught SystemExit) before check() runs
    "os._exit": "    import os\n    os._exit(0)\n",
    "sys.exit": "    import sys\n    sys.exit(0)\n",
    "SystemExit": "    raise SystemExit(0)\n",
    "module-level exit": "```python\nimport os\nos._exit(0)\n```",
    "exit in a finaliser": "```python\nimport atexit, os\natexit.register(os._exit, 0)\n"
                           "def {entry}(*a):\n    raise SystemExit(0)\n```",
}


@pytest.mark.parametrize("completion", EXITS.values(), ids=EXITS.keys())
def test_exiting_early_with_status_0_fails(sample, completion):
    p = sample[0]
    [r] = execute([p], [completion.replace("{entry}", p.entry_point)])
    assert not r.passed, r.reason
    assert "SystemExit" in r.reason or "exited before the tests finished" in r.reason


def test_a_printed_verdict_is_not_a_pass(sample):
    """Output is never a verdict: the answer's stdout is not the channel the verdict comes on."""
    p = sample[0]
    forged = ("```python\nimport re, sys, os\nsrc = open('/tmp/main.py').read()\n"
              "print(src)\nfor m in re.findall(r'@@[\\w-]+@@', src):\n"
              "    sys.__stdout__.write('\\n' + m + '[true, \"passed\"]\\n')\n"
              "sys.__stdout__.write('\\n@@cogumi-verdict-0@@[true, \"passed\"]\\n')\n"
              "sys.__stdout__.flush()\nos._exit(0)\n```")
    [r] = execute([p], [forged])
    assert not r.passed and "exited before the tests finished" in r.reason


def test_infinite_loop_times_out(sample):
    [r] = execute(sample[:1], ["    while True:\n        pass\n"], timeout_s=1.0)
    assert not r.passed and "timed out" in r.reason


def test_malformed_files(tmp_path):
    bad = tmp_path / "he.jsonl"
    bad.write_text('{"task_id": "x"}\n')
    with pytest.raises(EvalError, match=r"he.jsonl:1: HumanEval row lacks string fields"):
        load_problems(str(bad))
    bad.write_text("{not json\n")
    with pytest.raises(EvalError, match=r"he.jsonl:1: not valid JSON"):
        load_problems(str(bad))
    bad.write_text("\n")
    with pytest.raises(EvalError, match="no HumanEval problems"):
        load_problems(str(bad))
    row = {"task_id": "t", "prompt": "def f():\n", "entry_point": "f",
           "canonical_solution": "    return 1\n", "test": "def check(c):\n    assert c() == 1\n"}
    bad.write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n")
    assert len(load_problems(str(bad), limit=1)) == 1
    with pytest.raises(EvalError, match="2 problems but 1 completions"):
        execute(load_problems(str(bad)), ["x"])
