"""The sandbox runs code in a limited subprocess: limits must really stop runaway code."""

from __future__ import annotations

from cogumi_ray.sandbox import run_python


def test_passing_code_captures_stdout():
    r = run_python("def f(x):\n    return x * 2\nassert f(3) == 6\nprint('ok', f(21))")
    assert r.passed and r.returncode == 0 and not r.timed_out
    assert r.stdout.strip() == "ok 42"
    assert r.error is None


def test_failing_assert_reports_exception_and_user_line():
    r = run_python("x = 1\nassert x == 2, 'x is wrong'\n")
    assert not r.passed and r.returncode == 1
    assert r.error == "AssertionError: x is wrong"
    assert 'File "main.py", line 2' in r.stderr


def test_syntax_error_fails():
    r = run_python("def f(:\n  pass")
    assert not r.passed
    assert "SyntaxError" in r.error


def test_infinite_loop_times_out():
    r = run_python("while True:\n    pass", timeout_s=1.0)
    assert r.timed_out and not r.passed and r.returncode is None
    assert "timed out" in r.error


def test_sleeping_child_process_is_killed_with_the_group():
    code = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "time.sleep(60)"
    )
    r = run_python(code, timeout_s=1.0)
    assert r.timed_out


def test_memory_bomb_is_stopped():
    r = run_python("x = bytearray(2 * 1024 ** 3)\nprint('allocated')", memory_mb=256)
    assert not r.passed
    assert "allocated" not in r.stdout
    assert "MemoryError" in r.stderr


def test_huge_output_is_truncated():
    r = run_python("import sys\nfor _ in range(2000):\n    sys.stdout.write('x' * 1000)\n",
                   max_output_bytes=4096)
    assert r.passed
    assert r.stdout.startswith("x" * 4096)
    assert len(r.stdout) < 4096 + 100
    assert "truncated" in r.stdout


def test_network_is_blocked():
    code = (
        "import socket\n"
        "socket.create_connection(('127.0.0.1', 80), timeout=1)\n"
    )
    r = run_python(code)
    assert not r.passed and "network access is disabled" in r.error
    r = run_python("import _socket\n_socket.socket()")
    assert not r.passed and ("ImportError" in r.error or "ModuleNotFoundError" in r.error)
    r = run_python("import urllib.request\nurllib.request.urlopen('http://example.com', timeout=1)")
    assert not r.passed


def test_runs_in_fresh_temp_dir_and_isolated_mode():
    r = run_python("import os, sys\nprint(os.listdir('.'))\nprint(sys.flags.isolated)")
    assert r.passed
    lines = r.stdout.strip().splitlines()
    assert sorted(eval(lines[0])) == ["_run.py", "main.py"]
    assert lines[1] == "1"


def test_concurrent_calls_from_threads():
    # The eval scorer verifies from a thread pool; limits are set in the child, not via preexec_fn.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda i: run_python(f"print({i} * 2)"), range(8)))
    assert [r.stdout.strip() for r in results] == [str(i * 2) for i in range(8)]
    assert all(r.passed for r in results)
