"""The sandbox launcher: run as `python -I -S -B launch.py SPEC_JSON STATUS_FD`; on stdin the code
(spec["code_bytes"] long), then the bytes the code reads from its own stdin.

Self-contained (standard library only, ctypes for the syscalls Python 3.11 lacks) because it runs
with `-I -S`, outside the package's import path. It builds the jail in three processes:

launcher  (host pid ns)  unshare(user, mount, net, pid, ipc, uts, cgroup); a helper left outside
                         maps uid 0 inside to a throw-away uid when run as root (RLIMIT_NPROC is
                         never enforced for the global root user, so the process cap would not
                         hold otherwise), to the caller's own uid otherwise. Waits for pid 1 and
                         forwards its report on STATUS_FD.
pid 1     (new pid ns)   mounts the view (read-only binds of the interpreter and system libraries,
                         /dev nodes, a fresh /proc, a size-capped tmpfs /tmp as the only writable
                         place), pivot_root + detach of the old root, then forks the code process
                         and reports its wait status. When pid 1 exits the kernel kills every
                         process left in the namespace, however it detached itself.
code      (nested userns) rlimits, a nested user namespace as uid 1000 (no capabilities over the
                         mounts above, so nothing can be remounted writable), no_new_privs, a
                         seccomp filter (no sockets but AF_UNIX, no ptrace/io_uring/bpf/...), then
                         execve of the interpreter on /tmp/main.py with a minimal environment;
                         its stdin is a pipe pid 1 filled (never a file the code could reread).

A failure while building the jail is reported as {"setup_error": "..."} on STATUS_FD, never as an
exit code the untrusted code could imitate.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import resource
import select
import signal
import struct
import sys

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS = 0x00020000, 0x02000000, 0x04000000
CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x08000000, 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_SECCOMP, PR_SET_NO_NEW_PRIVS = 1, 4, 22, 38
SECCOMP_MODE_FILTER = 2
INNER_UID = 1000  # the code's uid inside its own user namespace

# Per architecture: audit arch, pivot_root, socket, and the syscalls denied outright (EPERM).
_ARCH = {
    "x86_64": (0xC000003E, 155, 41, {
        "ptrace": 101, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323, "keyctl": 250,
        "add_key": 248, "request_key": 249, "process_vm_readv": 310, "process_vm_writev": 311,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    }),
    "aarch64": (0xC00000B7, 41, 198, {
        "ptrace": 117, "bpf": 280, "perf_event_open": 241, "userfaultfd": 282, "keyctl": 219,
        "add_key": 217, "request_key": 218, "process_vm_readv": 270, "process_vm_writev": 271,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    }),
}

_libc = ctypes.CDLL(None, use_errno=True)


class SetupError(Exception):
    pass


def _ok(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(err)} (errno {err})")


def _mount(src: str | None, dst: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def enc(s: str | None) -> bytes | None:
        return s.encode() if s is not None else None

    _ok(_libc.mount(enc(src), enc(dst), enc(fstype), ctypes.c_ulong(flags), enc(data)),
        f"mount {src or fstype} on {dst}")


def _write(path: str, text: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError as e:
        raise SetupError(f"write {path}: {e.strerror}") from None


def _map_ids(proc: str, inner: int, outer_uid: int, outer_gid: int) -> None:
    """Map one id into the user namespace of process `proc` (a /proc/<pid> or /proc/self)."""
    _write(f"{proc}/setgroups", "deny")
    _write(f"{proc}/uid_map", f"{inner} {outer_uid} 1")
    _write(f"{proc}/gid_map", f"{inner} {outer_gid} 1")


# Launcher --------------------------------------------------------------------------------------
def _enter_namespaces(spec: dict) -> list[tuple[int, str, str | None]]:
    """unshare, have a helper left outside write our id map, become the mapped uid 0; returns
    the bind sources, opened in the new mount namespace (binds must come from one's own)."""
    if os.geteuid() == 0:
        outer_uid = outer_gid = int(spec["uid"])
    else:
        outer_uid, outer_gid = os.geteuid(), os.getegid()
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    helper = os.fork()
    if helper == 0:  # stays in the parent namespaces: only from there may root map another uid
        os.close(ready_w)
        os.close(done_r)
        reply = b""
        if os.read(ready_r, 1) == b"1":
            try:
                _map_ids(f"/proc/{os.getppid()}", 0, outer_uid, outer_gid)
                reply = b"ok"
            except SetupError as e:
                reply = str(e).encode()
        os.write(done_w, reply)
        os._exit(0)
    os.close(ready_r)
    os.close(done_w)
    flags = (CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC
             | CLONE_NEWUTS | CLONE_NEWCGROUP)
    try:
        _ok(_libc.unshare(flags), "unshare(user, mount, net, pid, ipc, uts, cgroup namespaces)")
        os.write(ready_w, b"1")
    finally:
        os.close(ready_w)
        reply = os.read(done_r, 4096)
        os.waitpid(helper, 0)
    if reply != b"ok":
        raise SetupError(reply.decode() or "the uid-map helper died")
    # Still the caller's own fs uid here, so 0700 parents it owns (like /root) can be traversed.
    sources = [(-1, p, os.readlink(p)) if os.path.islink(p) else
               (os.open(p, os.O_PATH | os.O_CLOEXEC), p, None) for p in spec["ro_binds"]]
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)  # the throw-away uid outside: its processes are capped by RLIMIT_NPROC
    return sources


def _report(fd: int, payload: dict) -> None:
    os.write(fd, (json.dumps(payload) + "\n").encode())


def main() -> int:
    spec = json.loads(sys.argv[1])
    status_fd = int(sys.argv[2])
    os.set_inheritable(status_fd, False)  # the code must never see the report channel
    data = sys.stdin.buffer.read()
    code, stdin = data[:int(spec["code_bytes"])], data[int(spec["code_bytes"]):]
    try:
        sources = _enter_namespaces(spec)
    except (SetupError, OSError) as e:
        _report(status_fd, {"setup_error": str(e)})
        return 0
    alive_r, alive_w = os.pipe()  # pid 1 sees EOF here if the launcher is gone before it starts
    report_r, report_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(alive_w)
        os.close(report_r)
        try:
            _pid1(spec, code, stdin, sources, alive_r, report_w)
        finally:
            os._exit(0)
    os.close(alive_r)
    os.close(report_w)
    with os.fdopen(report_r, "rb") as f:
        reply = f.read()
    os.waitpid(pid, 0)
    os.write(status_fd, reply or b'{"setup_error": "the sandbox init process died"}\n')
    return 0


# pid 1 -----------------------------------------------------------------------------------------
def _statvfs_flags(path: str) -> int:
    """Mount flags a read-only remount of a bind must keep (the kernel refuses to drop locked ones)."""
    f = os.statvfs(path).f_flag
    pairs = ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
             (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME),
             (os.ST_RELATIME, MS_RELATIME))
    return sum(ms for st, ms in pairs if f & st)


def _bind_ro(src: str, dst: str) -> None:
    _mount(src, dst, None, MS_BIND)
    _mount(None, dst, None, MS_REMOUNT | MS_BIND | MS_RDONLY | _statvfs_flags(src))


def _build_root(spec: dict, code: bytes, sources: list[tuple[int, str, str | None]]) -> None:
    root = "/tmp"  # mounting over it is private to this mount namespace
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    for fd, path, link in sources:
        target = root + path
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if link is not None:  # merged-/usr symlinks such as /bin -> usr/bin
            os.symlink(link, target)
            continue
        os.makedirs(target, exist_ok=True)
        _bind_ro(f"/proc/self/fd/{fd}", target)
    os.mkdir(root + "/dev")
    _mount("tmpfs", root + "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=0755")
    for node in ("null", "zero", "full", "random", "urandom"):
        open(f"{root}/dev/{node}", "w").close()
        _bind_ro(f"/dev/{node}", f"{root}/dev/{node}")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{root}/dev/{name}")
    os.mkdir(root + "/proc")
    _mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.mkdir(root + "/tmp")
    _mount("tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
           f"size={int(spec['scratch_bytes'])},mode=1777")
    with open(root + "/tmp/main.py", "wb") as f:
        f.write(code)
    os.chmod(root + "/tmp/main.py", 0o644)
    os.chdir(root)
    _ok(_libc.syscall(_ARCH[platform.machine()][1], b".", b"."), "pivot_root")
    _ok(_libc.umount2(b".", MNT_DETACH), "detach the old root")
    os.chdir("/")
    _mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    _mount(None, "/dev", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC)


Sources = list[tuple[int, str, str | None]]  # (O_PATH fd or -1, path, symlink target or None)


def _pid1(spec: dict, code: bytes, stdin: bytes, sources: Sources, alive_r: int,
          report_w: int) -> None:
    _ok(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
    if select.select([alive_r], [], [], 0)[0]:  # the launcher died before the line above
        return
    try:
        if platform.machine() not in _ARCH:
            raise SetupError(f"unsupported architecture {platform.machine()!r} (x86_64, aarch64)")
        _build_root(spec, code, sources)
    except (SetupError, OSError) as e:
        _report(report_w, {"setup_error": str(e)})
        return
    _ok(_libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")  # no /proc/1/mem
    for fd, _, _ in sources:
        if fd >= 0:
            os.close(fd)
    stdin_r = -1
    if stdin:  # the host caps it at one page, which any pipe holds without a reader
        stdin_r, stdin_w = os.pipe()
        os.write(stdin_w, stdin)
        os.close(stdin_w)
    pid = os.fork()
    if pid == 0:
        try:
            _exec_code(spec, stdin_r)
        except BaseException as e:  # noqa: BLE001 - anything here is a setup failure
            _report(report_w, {"setup_error": f"{type(e).__name__}: {e}"})
        os._exit(127)
    if stdin_r >= 0:
        os.close(stdin_r)
    while True:  # reap orphans too, until the code process itself is done
        got, status = os.waitpid(-1, 0)
        if got == pid:
            break
    _report(report_w, {"status": status})


# The code process ------------------------------------------------------------------------------
def _limits(spec: dict) -> None:
    mem, cpu = int(spec["memory_bytes"]), int(spec["cpu_s"])
    for res, value in ((resource.RLIMIT_AS, (mem, mem)), (resource.RLIMIT_CPU, (cpu, cpu + 1)),
                       (resource.RLIMIT_FSIZE, (spec["file_bytes"],) * 2),
                       (resource.RLIMIT_CORE, (0, 0)), (resource.RLIMIT_NOFILE, (256, 256)),
                       (resource.RLIMIT_NPROC, (spec["max_procs"],) * 2),
                       (resource.RLIMIT_MSGQUEUE, (0, 0)), (resource.RLIMIT_MEMLOCK, (0, 0))):
        resource.setrlimit(res, value)


def _seccomp_filter() -> bytes:
    """A BPF program: kill on a foreign arch (x32 or 32-bit syscalls included), EACCES on any
    socket that is not AF_UNIX, EPERM on the syscalls of _ARCH, allow the rest."""
    arch, _, sock_nr, denied = _ARCH[platform.machine()]
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    allow, kill = 0x7FFF0000, 0x80000000
    eperm, eacces = 0x00050000 | 1, 0x00050000 | 13
    prog = [(ld, 0, 0, 4), (jeq, 1, 0, arch), (ret, 0, 0, kill), (ld, 0, 0, 0)]
    if platform.machine() == "x86_64":
        prog += [(jge, 0, 1, 0x40000000), (ret, 0, 0, kill)]
    for nr in denied.values():
        prog += [(jeq, 0, 1, nr), (ret, 0, 0, eperm)]
    prog += [(jeq, 0, 3, sock_nr), (ld, 0, 0, 16), (jeq, 1, 0, 1), (ret, 0, 0, eacces),
             (ret, 0, 0, allow)]
    return b"".join(struct.pack("HBBI", *ins) for ins in prog)


def _install_seccomp() -> None:
    _ok(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    code = _seccomp_filter()
    buf = ctypes.create_string_buffer(code, len(code))

    class Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = Fprog(len(code) // 8, ctypes.addressof(buf))
    _ok(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0), "seccomp")


def _exec_code(spec: dict, stdin_r: int) -> None:
    os.chdir("/tmp")
    source = stdin_r if stdin_r >= 0 else os.open("/dev/null", os.O_RDONLY)
    os.dup2(source, 0)
    os.close(source)
    _limits(spec)
    _ok(_libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")  # to write our map
    _ok(_libc.unshare(CLONE_NEWUSER), "unshare(nested user namespace)")
    _map_ids("/proc/self", INNER_UID, 0, 0)
    os.setresgid(INNER_UID, INNER_UID, INNER_UID)
    os.setresuid(INNER_UID, INNER_UID, INNER_UID)  # drops every capability
    _install_seccomp()
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp",
           "TMPDIR": "/tmp"}
    python = spec["python"]
    os.execve(python, [python, "-I", "-S", "-B", "main.py"], env)


if __name__ == "__main__":
    sys.exit(main())
