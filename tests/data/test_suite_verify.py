"""Verifiers: every reference answer passes its own check; wrong answers fail with a reason."""

from __future__ import annotations

import json
import random

import pytest

from cogumi_ray.data.config import SuiteConfig
from cogumi_ray.data.schema import Example
from cogumi_ray.data.suite import can_verify, generate_suite, verify, verify_many
from cogumi_ray.errors import DataError


@pytest.fixture(scope="module")
def suite():
    return generate_suite(SuiteConfig(examples_per_domain=400))


def test_every_non_code_reference_passes(suite):
    for e in suite:
        if e.domain != "code":
            v = verify(e, e.response)
            assert v.passed, (e.id, e.response, v.reason)


def test_sample_of_code_references_pass(suite):
    code = random.Random(0).sample([e for e in suite if e.domain == "code"], 40)
    verdicts = verify_many(code, [e.response for e in code])
    assert all(v.passed for v in verdicts), [(e.id, v.reason) for e, v in zip(code, verdicts, strict=True)]


@pytest.mark.slow
def test_every_code_reference_passes(suite):
    code = [e for e in suite if e.domain == "code"]
    verdicts = verify_many(code, [e.response for e in code])
    assert all(v.passed for v in verdicts), [(e.id, v.reason) for e, v in zip(code, verdicts, strict=True)]


def _wrong(e: Example) -> str:
    m = e.metadata
    if e.domain == "math":
        return e.response.replace(f"Answer: {m['answer']}", f"Answer: {m['answer'] + 1}")
    if e.domain == "code":
        return f"def {m['entry_point']}(*args):\n    return None"
    if e.domain == "automation":
        call = json.loads(e.response)
        key = next(iter(call["args"]))
        call["args"][key] = "WRONG" if not isinstance(call["args"][key], str) else "zzz"
        return json.dumps(call)
    if "order" in m:
        return ", ".join(reversed(m["order"]))
    return m["expected"] + "x"


def test_wrong_answers_fail_in_every_domain(suite):
    picks = [e for e in suite if e.id.endswith(("00001", "00002", "00003"))]  # one per difficulty
    answers = [_wrong(e) for e in picks]
    for e, v in zip(picks, verify_many(picks, answers), strict=True):
        assert not v.passed and v.reason, e.id


def _ex(domain: str, **meta) -> Example:
    return Example(id="t", instruction="q", response="", domain=domain, metadata=meta)


def test_numeric_extraction():
    e = _ex("math", answer=1234)
    assert verify(e, "12 * 100 = 1200\n1200 + 34 = 1234\nAnswer: 1234").passed
    assert verify(e, "The answer is 1,234.").passed
    assert verify(e, "Answer: 1234.0").passed
    assert verify(e, "so 1234 apples").passed  # free text: the last number
    v = verify(e, "Answer: 1233\nI think 1234?")  # "Answer:" wins over later numbers
    assert not v.passed and v.reason == "expected 1234, got 1233"
    assert verify(e, "no idea").reason == "no number in answer"
    assert verify(_ex("math", answer=-7), "Answer: -7").passed


def test_tool_call_field_by_field():
    e = _ex("automation", call={"tool": "book_table",
                                "args": {"restaurant": "Sakura", "people": 4, "time": "19:30"}})
    ok = '{"tool": "book_table", "args": {"restaurant": "sakura", "people": 4, "time": "19:30"}}'
    assert verify(e, ok).passed
    assert verify(e, f"Sure! ```json\n{ok}\n```").passed
    assert verify(e, ok.replace("19:30", "7:30")).reason == "args.time: expected '19:30', got '7:30'"
    assert verify(e, ok.replace('"people": 4', '"people": "4"')).reason.startswith("args.people")
    assert verify(e, ok.replace("book_table", "send_email")).reason.startswith("tool:")
    assert verify(e, ok.replace(', "time": "19:30"', "")).reason == "args.time: missing"
    extra = ok.replace('"time": "19:30"', '"time": "19:30", "vip": true')
    assert verify(e, extra).reason == "args.vip: unexpected argument"
    assert not verify(e, '{"tool": "book_table", "args": ').passed
    assert verify(e, "[1, 2]").reason == "no JSON object in answer"


def test_exact_and_ordering_normalisation():
    e = _ex("general", expected="KOALA", case_sensitive=True)
    assert verify(e, " KOALA. ").passed
    assert not verify(e, "koala").passed
    assert verify(_ex("general", expected="Paris", case_sensitive=False), "Answer: paris").passed
    o = _ex("reasoning", order=["Cara", "Ana", "Ben"])
    assert verify(o, "Cara, Ana, Ben").passed
    assert verify(o, "cara > ana > ben").passed
    assert verify(o, "Cara, Ben, Ana").reason == "position 2: expected 'ana', got 'ben'"
    assert verify(o, "Cara, Ana").reason == "expected 3 items, got 2"


def test_code_answers_run_in_the_sandbox():
    e = _ex("code", entry_point="add_bonus",
            tests="assert add_bonus(1) == 4\nassert add_bonus(-3) == 0")
    assert verify(e, "def add_bonus(x):\n    return x + 3").passed
    assert verify(e, "```python\ndef add_bonus(x):\n    return x + 3\n```\nDone.").passed
    v = verify(e, "def add_bonus(x):\n    return x + 2")
    assert v.reason == "failed: assert add_bonus(1) == 4"
    assert "SyntaxError" in verify(e, "def add_bonus(x) return").reason
    assert "timed out" in verify(e, "def add_bonus(x):\n    while True:\n        pass").reason


def test_answers_cannot_influence_each_other():
    """An answer that patches a module, a builtin or a file must not make a later wrong one pass."""
    e = _ex("code", entry_point="fact", tests="assert fact(5) == 120")
    patch = ("import math, builtins\nmath.factorial = lambda n: 120\nbuiltins.fact = lambda n: 120\n"
             "open('/tmp/shared', 'w').write('120')\n"
             "def fact(n):\n    return math.factorial(n)")
    relies = "import math\ndef fact(n):\n    return math.factorial(n) if n != 5 else 0"
    uses_builtin = "def helper():\n    pass"  # defines no fact: only a leaked builtin would pass
    uses_file = "def fact(n):\n    return int(open('/tmp/shared').read())"
    verdicts = verify_many([e] * 4, [patch, relies, uses_builtin, uses_file])
    assert [v.passed for v in verdicts] == [True, False, False, False], verdicts


def test_batch_survives_answers_that_kill_or_hang_it():
    e = _ex("code", entry_point="f", tests="assert f() == 1")
    answers = ["def f():\n    return 1", "import os\nos._exit(0)", "def f():\n    return 2",
               "def f():\n    while True:\n        try:\n            pass\n        except BaseException:"
               "\n            pass"]
    verdicts = verify_many([e] * 4, answers, per_item_s=1.0)
    assert [v.passed for v in verdicts] == [True, False, False, False]


def test_missing_verifier_data_is_an_error():
    bad = Example(id="x", instruction="q", response="r", domain="math", metadata={})
    assert not can_verify(bad)
    with pytest.raises(DataError, match="no verifier data"):
        verify(bad, "Answer: 1")
    with pytest.raises(DataError, match="2 examples but 1 answers"):
        verify_many([bad, bad], ["1"])


# Forgeries: each answer hunts for the verdict nonce the way a model could, prints every
# candidate as a passing verdict, then leaves before the tests run. None may pass. (Not covered,
# because no runner can stop it: code that shares the tests' interpreter can fake their outcome
# from inside it, see cogumi_ray/sandbox/verdict.py.)
_PRINT_AND_LEAVE = """
for m in set(found):
    for line in ('\\n' + m + '[true, "passed"]\\n', m + '[true, "all 1 tests passed"]\\n'):
        sys.stdout.write(line)
        sys.__stdout__.write(line)
        sys.stderr.write(line)
sys.stdout.flush()
sys.__stdout__.flush()
os._exit(0)
"""
FORGERIES = {
    "reads /tmp/main.py": """
import os, re, sys
found = re.findall(r"@@[\\w-]+@@", open('/tmp/main.py').read()) + ['@@cogumi-verdict-0@@']
""",
    "__main__ globals": """
import os, sys
g = vars(sys.modules['__main__'])
found = [v for v in list(g.values()) if isinstance(v, str) and '@@' in v]
found += [str(g.get('MARK')), str(g.get('mark'))]
""",
    "walks frames and gc": """
import gc, inspect, os, sys
found = []
frame = sys._getframe()
while frame is not None:
    for scope in (frame.f_locals, frame.f_globals):
        found += [v for v in list(scope.values()) if isinstance(v, str) and '@@cogumi' in v]
    frame = frame.f_back
found += [f.frame.f_locals.get('mark', '') for f in inspect.stack()]
found += [o for o in gc.get_objects() if isinstance(o, str) and o.startswith('@@cogumi-verdict-')]
found = [f for f in found if f and len(f) < 80]
""",
    "reads its stdin and the parent's": """
import os, sys
found = [sys.stdin.read()]
for path in ('/proc/%d/fd/0' % os.getppid(), '/proc/self/fd/0', '/dev/stdin'):
    try:
        found.append(open(path).read())
    except OSError:
        pass
""",
    "scans the parent's memory": """
import os, re, sys
found = []
try:
    maps = open('/proc/%d/maps' % os.getppid()).read().splitlines()
    mem = open('/proc/%d/mem' % os.getppid(), 'rb')
    for line in maps:
        lo, hi = (int(x, 16) for x in line.split()[0].split('-'))
        try:
            mem.seek(lo)
            found += [m.decode() for m in re.findall(rb'@@cogumi-verdict-[0-9a-f]+@@', mem.read(hi - lo))]
        except (OSError, OverflowError, ValueError):
            pass
    sys.__stdout__ = open('/proc/%d/fd/1' % os.getppid(), 'w')
except OSError:
    pass
""",
    "writes the parent's stdout": """
import os, sys
found = ['@@cogumi-verdict-0@@']
try:
    sys.stdout = sys.__stdout__ = open('/proc/%d/fd/1' % os.getppid(), 'w')
except OSError:
    pass
""",
}


@pytest.mark.parametrize("hunt", FORGERIES.values(), ids=FORGERIES.keys())
def test_a_forged_verdict_never_passes(hunt):
    e = _ex("code", entry_point="f", tests="assert f() == 1")
    v = verify(e, hunt + _PRINT_AND_LEAVE)
    assert not v.passed, v.reason
    assert v.reason.startswith("exited before the tests finished"), v.reason


@pytest.mark.parametrize("exit_", ["import os\nos._exit(0)", "import sys\nsys.exit(0)",
                                   "raise SystemExit", "import sys\nsys.exit()"])
def test_exiting_before_the_tests_fails(exit_):
    e = _ex("code", entry_point="f", tests="assert f() == 1")
    v = verify(e, f"def f():\n    return 1\n{exit_}\n")
    assert not v.passed and ("SystemExit" in v.reason or "exited before" in v.reason), v.reason
    assert verify(e, "import os, sys\ndef f():\n    print('chatty', file=sys.stderr)\n"
                     "    print('chatty')\n    return 1\n").passed  # output never hurts


def test_the_weak_guard_gives_the_same_verdicts(monkeypatch):
    monkeypatch.setenv("COGUMI_SANDBOX_ISOLATION", "weak")
    e = _ex("code", entry_point="f", tests="assert f() == 1")
    answers = ["def f():\n    return 1", "def f():\n    return 1\nimport os\nos._exit(0)",
               "def f():\n    return 2"]
    assert [v.passed for v in verify_many([e] * 3, answers)] == [True, False, False]
