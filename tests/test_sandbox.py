"""The sandbox: limits stop runaway code, and every escape attempt fails while correct code passes.

These run the real jail (namespaces, mounts, rlimits, seccomp) — nothing is patched. Each escape
test prints a line only the escape could produce, and asserts it is absent.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cogumi_ray.errors import SandboxUnavailable
from cogumi_ray.sandbox import ISOLATION_ENV, run_python

REPO = Path(__file__).resolve().parents[1]


def run(code: str, **kw):
    return run_python(textwrap.dedent(code), **kw)


def test_passing_code_captures_stdout():
    r = run_python("def f(x):\n    return x * 2\nassert f(3) == 6\nprint('ok', f(21))")
    assert r.passed and r.returncode == 0 and not r.timed_out
    assert r.stdout.strip() == "ok 42"
    assert r.error is None


def test_failing_assert_reports_exception_and_user_line():
    r = run_python("x = 1\nassert x == 2, 'x is wrong'\n")
    assert not r.passed and r.returncode == 1
    assert r.error == "AssertionError: x is wrong"
    assert 'File "/tmp/main.py", line 2' in r.stderr


def test_syntax_error_fails():
    r = run_python("def f(:\n  pass")
    assert not r.passed
    assert "SyntaxError" in r.error


def test_infinite_loop_times_out():
    r = run_python("while True:\n    pass", timeout_s=1.0)
    assert r.timed_out and not r.passed and r.returncode is None
    assert "timed out" in r.error


def test_memory_bomb_is_stopped():
    r = run_python("x = bytearray(2 * 1024 ** 3)\nprint('allocated')", memory_mb=256)
    assert not r.passed
    assert "allocated" not in r.stdout
    assert "MemoryError" in r.stderr


def test_huge_output_is_truncated():
    r = run_python("import sys\nfor _ in range(20000):\n    sys.stdout.write('x' * 1000)\n",
                   max_output_bytes=4096)
    assert r.passed
    assert r.stdout.startswith("x" * 4096)
    assert len(r.stdout) < 4096 + 100
    assert "truncated" in r.stdout


def test_a_fresh_scratch_dir_and_isolated_interpreter():
    r = run("""
        import os, sys
        print(sorted(os.listdir('.')), os.getcwd(), sys.flags.isolated, sys.flags.no_site)
        open('scratch.txt', 'w').write('fine')
        print(open('scratch.txt').read())
    """)
    assert r.passed, r.stderr
    assert r.stdout.split("\n")[:2] == ["['main.py'] /tmp 1 1", "fine"]


# Network ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("code", [
    "import socket\nsocket.create_connection(('127.0.0.1', 80), timeout=1)",
    "import socket\nsocket._socket.socket(socket.AF_INET, socket.SOCK_STREAM)",
    "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)",
    "import socket\nsocket.socket(socket.AF_PACKET, socket.SOCK_RAW)",
    "import socket\nsocket.getaddrinfo('example.com', 80)",
    "import urllib.request\nurllib.request.urlopen('http://1.1.1.1', timeout=1)",
    # a listening socket on every interface
    "import socket\ns = socket.socket(socket.AF_INET6)\ns.bind(('::', 8765))\ns.listen()",
    # the raw syscall through ctypes: socket(AF_INET, SOCK_STREAM, 0)
    "import ctypes, os\nfd = ctypes.CDLL(None, use_errno=True).socket(2, 1, 0)\n"
    "assert fd < 0, fd\nraise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))",
])
def test_no_network_at_all(code):
    r = run_python(code + "\nprint('NETWORK-REACHED')")
    assert not r.passed
    assert "NETWORK-REACHED" not in r.stdout
    assert "Error" in r.error or "error" in r.error, r.error


def test_child_processes_have_no_network_either():
    r = run("""
        import subprocess, sys
        child = "import socket; socket.create_connection(('1.1.1.1', 53), timeout=1); print('CHILD-NET')"
        p = subprocess.run([sys.executable, '-c', child], capture_output=True, text=True)
        print(p.stdout, p.returncode)
    """)
    assert r.passed, r.stderr
    assert "CHILD-NET" not in r.stdout


def test_unix_socketpair_still_works():  # multiprocessing-style IPC inside the jail is fine
    r = run("import socket\na, b = socket.socketpair()\na.send(b'hi')\nprint(b.recv(2))")
    assert r.passed and "b'hi'" in r.stdout, r.stderr


# Filesystem ------------------------------------------------------------------------------------
def test_cannot_read_the_project_the_home_or_the_run_dir(tmp_path):
    secret_file = tmp_path / "checkpoint.txt"
    secret_file.write_text("WEIGHTS")
    paths = [str(REPO / "README.md"), str(REPO / "cogumi_ray" / "__init__.py"),
             str(Path.home() / ".bashrc"), str(secret_file), "/etc/passwd", "/etc/hostname"]
    r = run(f"""
        import os
        for p in {paths!r}:
            try:
                print('LEAKED', p, open(p).read()[:20])
            except OSError as e:
                print('denied', p, type(e).__name__)
        print('home listing', os.path.exists({str(Path.home())!r}) and os.listdir({str(Path.home())!r}))
    """)
    assert r.passed, r.stderr
    assert "LEAKED" not in r.stdout and "WEIGHTS" not in r.stdout
    # At most the empty mount-point dirs on the way to a bound interpreter (/root/.pyenv/...).
    listing = eval(r.stdout.split("home listing", 1)[1]) or []
    assert set(listing) <= {".pyenv", ".local"}, listing


@pytest.mark.parametrize("target", ["home", "project", "host_tmp", "/dev/shm", "/usr", "/"])
def test_cannot_write_outside_its_scratch_dir(target, tmp_path):
    token = uuid.uuid4().hex
    where = {"home": str(Path.home()), "project": str(REPO), "host_tmp": str(tmp_path)}.get(target, target)
    r = run(f"""
        import os
        p = os.path.join({where!r}, 'escape-{token}.txt')
        try:
            os.makedirs({where!r}, exist_ok=True)
            open(p, 'w').write('x')
            print('WROTE', p)
        except OSError as e:
            print('denied', type(e).__name__, e.errno)
    """)
    assert r.passed, r.stderr
    # Inside the jail a write may land only in its own tmpfs; on the host nothing appears.
    host = Path(where) / f"escape-{token}.txt"
    assert not host.exists()
    if target in ("/usr", "/", "home", "project"):
        assert "WROTE" not in r.stdout


def test_scratch_and_file_sizes_are_capped():
    r = run("""
        big = b'x' * (1 << 20)
        with open('one.bin', 'wb') as f:
            for _ in range(40):
                f.write(big)
    """)
    assert not r.passed and ("SIGXFSZ" in r.error or "File too large" in r.stderr)
    r = run("""
        big = b'x' * (1 << 20)
        for i in range(10):
            with open(f'part{i}.bin', 'wb') as f:
                for _ in range(15):
                    f.write(big)
    """, memory_mb=256)
    assert not r.passed and "No space left" in r.stderr


# Secrets and the host's processes --------------------------------------------------------------
def test_no_environment_secrets_reach_the_code(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-SECRET-123")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-SECRET-456")
    r = run(f"""
        import glob, os
        print(dict(os.environ))
        for p in ['/proc/self/environ', '/proc/1/environ', '/proc/{os.getpid()}/environ',
                  *glob.glob('/proc/*/environ')]:
            try:
                print(p, open(p, 'rb').read())
            except OSError as e:
                print(p, 'denied', type(e).__name__)
    """)
    assert r.passed, r.stderr
    assert "SECRET" not in r.stdout


def test_host_processes_are_invisible_and_unsignalable():
    r = run(f"""
        import os, signal
        try:
            os.kill({os.getpid()}, signal.SIGKILL)
            print('KILLED-HOST')
        except ProcessLookupError:
            print('no such process')
        os.kill(os.getppid(), signal.SIGKILL)  # pid 1 of the jail: ignored from inside
        try:
            os.kill(-1, signal.SIGTERM)
        except OSError:
            pass
        print('pids', sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))
    """)
    assert "KILLED-HOST" not in r.stdout and "no such process" in r.stdout
    pids = eval(r.stdout.split("pids", 1)[1])
    assert max(pids) < 100, pids  # only the jail's own, renumbered processes


def test_ptrace_and_io_uring_are_refused():
    r = run("""
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        print('ptrace', libc.ptrace(0, 0, 0, 0), ctypes.get_errno())  # PTRACE_TRACEME
        print('io_uring', libc.syscall(425, 8, ctypes.create_string_buffer(120)), ctypes.get_errno())
        print('mount', libc.mount(b'tmpfs', b'/tmp', b'tmpfs', 0, None), ctypes.get_errno())
    """)
    assert r.passed, r.stderr
    assert "ptrace -1 1" in r.stdout and "io_uring -1 1" in r.stdout
    assert "mount -1" in r.stdout


# Processes -------------------------------------------------------------------------------------
def test_fork_bomb_is_capped_as_root_too():
    r = run("""
        import os, time
        kids = 0
        try:
            for _ in range(500):
                pid = os.fork()
                if pid == 0:
                    time.sleep(30)
                    os._exit(0)
                kids += 1
        except OSError as e:
            print('capped', type(e).__name__)
        print('kids', kids)
    """, timeout_s=10)
    assert "capped" in r.stdout, r.stdout + r.stderr
    kids = int(r.stdout.split("kids")[1])
    assert kids < 40


def test_threads_count_against_the_cap():
    r = run("""
        import threading, time
        n = 0
        try:
            for _ in range(500):
                threading.Thread(target=time.sleep, args=(5,), daemon=True).start()
                n += 1
        except RuntimeError as e:
            print('capped', e)
        print('threads', n)
    """, timeout_s=10)
    assert "capped" in r.stdout, r.stdout + r.stderr
    assert int(r.stdout.split("threads")[1]) < 40


def _alive_with(marker: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            pass
    return found


def test_detached_grandchildren_die_with_the_run():
    marker = f"escapee-{uuid.uuid4().hex}"
    r = run(f"""
        import os, subprocess, sys
        late = "import time; time.sleep(1.5); print('STILL-ALIVE', flush=True); time.sleep(60)  # {marker}"
        subprocess.Popen([sys.executable, '-c', late], start_new_session=True)
        if os.fork() == 0:  # a classic double-fork daemon
            os.setsid()
            if os.fork() == 0:
                os.execv(sys.executable, [sys.executable, '-c', late])
            os._exit(0)
        print('parent done')
    """)
    assert r.passed and "parent done" in r.stdout
    assert "STILL-ALIVE" not in r.stdout
    assert _alive_with(marker) == []


def test_sleeping_past_the_deadline_in_a_detached_grandchild_is_killed():
    marker = f"sleeper-{uuid.uuid4().hex}"
    r = run(f"""
        import subprocess, sys, time
        subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)  # {marker}'],
                         start_new_session=True)
        time.sleep(120)
    """, timeout_s=1.0)
    assert r.timed_out
    assert _alive_with(marker) == []


def test_every_run_is_isolated_and_runs_in_parallel():
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda i: run_python(
            f"import os\nopen('mark', 'a').write('{i}')\nprint(open('mark').read())"), range(8)))
    assert [r.stdout.strip() for r in results] == [str(i) for i in range(8)]


# Refusal instead of silent weakening -----------------------------------------------------------
def _python_in_a_userns_without_namespaces(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run `code` where creating user namespaces is forbidden (max_user_namespaces=0 inside a
    namespace of our own), as on a kernel or container that does not allow them."""
    script = ("echo 0 > /proc/sys/user/max_user_namespaces && "
              f"exec {sys.executable} -c \"$COGUMI_CODE\"")
    return subprocess.run(["unshare", "--user", "--map-root-user", "sh", "-c", script],
                          env={**os.environ, **env, "COGUMI_CODE": code}, cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_refuses_with_a_clear_error_when_namespaces_are_missing():
    code = ("from cogumi_ray.sandbox import run_python\n"
            "try:\n    run_python('print(1)')\nexcept Exception as e:\n"
            "    print(type(e).__name__, e)\nelse:\n    print('RAN')\n")
    p = _python_in_a_userns_without_namespaces(code, {})
    if p.returncode != 0 and "unshare" in p.stderr:
        pytest.skip(f"cannot build the test's own namespace here: {p.stderr.strip()}")
    assert "RAN" not in p.stdout
    assert p.stdout.startswith("SandboxUnavailable"), p.stdout + p.stderr
    assert "user namespaces" in p.stdout and "sandbox.isolation: weak" in p.stdout
    weak = _python_in_a_userns_without_namespaces(code, {ISOLATION_ENV: "weak"})
    assert weak.stdout.strip() == "RAN", weak.stdout + weak.stderr


def test_unknown_isolation_mode_is_an_error(monkeypatch):
    monkeypatch.setenv(ISOLATION_ENV, "none")
    with pytest.raises(SandboxUnavailable, match="strict, weak"):
        run_python("print(1)")


def test_weak_guard_still_limits_time_and_memory(monkeypatch):
    monkeypatch.setenv(ISOLATION_ENV, "weak")
    assert run_python("print(6 * 7)").stdout.strip() == "42"
    assert run_python("while True:\n    pass", timeout_s=1.0).timed_out
    r = run_python("x = bytearray(2 * 1024 ** 3)", memory_mb=256)
    assert not r.passed and "MemoryError" in r.stderr


# Stdin: how a verdict nonce reaches the code without any file or argument holding it ----------
@pytest.mark.parametrize("mode", ["strict", "weak"])
def test_stdin_reaches_the_code_through_a_pipe_only(monkeypatch, mode):
    monkeypatch.setenv(ISOLATION_ENV, mode)
    secret = f"nonce-{uuid.uuid4().hex}"
    r = run("""
        import os, stat, sys
        secret = sys.stdin.read()
        print(stat.S_ISFIFO(os.fstat(0).st_mode), secret)
        places = [open('main.py').read(), open('/proc/self/cmdline').read()]
        places += [open(f'/proc/{p}/cmdline').read() for p in os.listdir('/proc') if p.isdigit()]
        places += [open(os.path.join('.', f)).read() for f in os.listdir('.') if f.endswith('.py')]
        print('LEAKED' if any(secret in p for p in places) else 'private', sys.stdin.read() == '')
    """, stdin=secret.encode())
    assert r.passed, r.stderr
    assert r.stdout.split("\n")[:2] == [f"True {secret}", "private True"]
    assert run_python("import sys\nprint(repr(sys.stdin.read()))").stdout.strip() == "''"


def test_stdin_is_capped_at_one_page():
    with pytest.raises(ValueError, match="at most 4096"):
        run_python("pass", stdin=b"x" * 4097)
    assert run_python("import sys\nprint(len(sys.stdin.read()))", stdin=b"x" * 4096).stdout == "4096\n"
