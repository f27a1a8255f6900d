"""Trusted launcher executed as ``python -I _prelude.py SPEC_JSON`` by :class:`Sandbox` (stdlib only).

Process tree in ``namespaces`` mode (the parent is the supervisor; every arrow is a fork)::

    launcher (root, host pid ns; new net + mount ns)  --waits-->  init (pid 1 of a new pid ns)
        init: private mounts, fresh /proc, everything read-only, masked secrets, tmpfs workdir
        init --forks--> program: rlimits, unprivileged real/effective uid, no capabilities,
                        no_new_privs, then runs ``main.py`` in-process (``exec``)

The supervisor kills the launcher's process group on timeout; init has ``PR_SET_PDEATHSIG =
SIGKILL`` so it dies with the launcher, and the kernel then kills every process left in the pid
namespace (detached ``setsid`` grandchildren included). ``process`` mode (no namespaces) keeps
rlimits + a child-subreaper that kills all leftover descendants.

The program keeps file-system uid 0 (so it can read the interpreter even when it lives under a
0700 ``/root``), but without capabilities and on read-only mounts; its real uid is an unused
per-slot uid so ``RLIMIT_NPROC`` applies (root's real uid is exempt from it).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import resource
import signal
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME, MS_STRICTATIME = 1024, 2048, 1 << 21, 1 << 24
_FLAG_BY_OPTION = {
    "nosuid": MS_NOSUID,
    "nodev": MS_NODEV,
    "noexec": MS_NOEXEC,
    "noatime": MS_NOATIME,
    "nodiratime": MS_NODIRATIME,
    "relatime": MS_RELATIME,
    "strictatime": MS_STRICTATIME,
}
PR_SET_PDEATHSIG, PR_SET_KEEPCAPS, PR_CAPBSET_DROP = 1, 8, 24
PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 36, 38, 47
CAP_SETUID = 7
SETUP_FAILED = 97

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None):
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    _check(_libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           f"mount {target}")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _capset(effective: int, permitted: int) -> None:
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    data[0].effective, data[0].permitted = effective, permitted
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def _unescape(path: str) -> str:
    return path.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace(
        "\\134", "\\")


def _mounts() -> list[tuple[str, int]]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            flags = 0
            for option in fields[5].split(","):
                flags |= _FLAG_BY_OPTION.get(option, 0)
            out.append((_unescape(fields[4]), flags))
    return out


def _setup_filesystem(spec: dict, files: dict[str, bytes]) -> None:
    workdir = spec["workdir"]
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for target, flags in _mounts():  # everything read-only (bind remount is per mount point)
        try:
            _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)
        except OSError:
            if target == "/":
                raise
    for path in spec.get("masked_paths", []):
        if os.path.isdir(path):
            _mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=0555")
        elif os.path.exists(path):
            _mount("/dev/null", path, None, MS_BIND)
    _mount("tmpfs", workdir, "tmpfs", MS_NOSUID | MS_NODEV,
           f"size={spec['disk_mb']}m,nr_inodes={spec['max_files']},mode=0700")
    for name, data in files.items():
        with open(os.path.join(workdir, name), "wb") as f:
            f.write(data)


def _read_files(workdir: str) -> dict[str, bytes]:
    files = {}
    for name in os.listdir(workdir):
        path = os.path.join(workdir, name)
        if os.path.isfile(path) and name != "stdin.txt":
            with open(path, "rb") as f:
                files[name] = f.read()
    return files


def _set_rlimits(spec: dict) -> None:
    mib = 1024 * 1024
    limits = [
        (resource.RLIMIT_AS, spec["memory_mb"] * mib),
        (resource.RLIMIT_CPU, spec["cpu_seconds"]),
        (resource.RLIMIT_FSIZE, spec["file_size_mb"] * mib),
        (resource.RLIMIT_NOFILE, spec["max_open_files"]),
        (resource.RLIMIT_CORE, 0),
    ]
    if spec.get("max_processes"):
        limits.append((resource.RLIMIT_NPROC, spec["max_processes"]))
    for kind, value in limits:
        resource.setrlimit(kind, (value, value))


def _drop_privileges(uid: int) -> None:
    """Root only: empty bounding set, real/effective/saved uid ``uid``, fs uid 0, no capabilities."""
    for cap in range(64):
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            break  # past the last capability the kernel knows
    _libc.prctl(PR_CAP_AMBIENT, 4, 0, 0, 0)  # PR_CAP_AMBIENT_CLEAR_ALL
    _check(_libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0), "keepcaps")
    os.setgroups([])
    os.setresuid(uid, uid, uid)
    _capset(1 << CAP_SETUID, 1 << CAP_SETUID)
    _libc.setfsuid(0)
    _capset(0, 0)
    if _libc.setfsuid(-1) != 0:  # -1 only queries
        raise OSError("could not keep file-system uid 0")


def _run_program(spec: dict, stdin_fd: int, keep_fds: tuple[int, ...]) -> None:
    """Runs in the program process: limits, privileges, then ``main.py`` as ``__main__``."""
    os.dup2(stdin_fd, 0)
    for fd in {stdin_fd, *keep_fds}:
        if fd > 2:
            os.close(fd)
    os.chdir(spec["workdir"])
    if "env" in spec:  # the same scrubbed environment in both launch modes
        os.environ.clear()
        os.environ.update(spec["env"])
    _set_rlimits(spec)
    if spec["drop_uid"] is not None:
        _drop_privileges(spec["drop_uid"])
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    path = os.path.join(spec["workdir"], "main.py")
    with open(path, "rb") as f:
        source = f.read()
    sys.argv = ["main.py"]
    sys.path.insert(0, spec["workdir"])
    namespace = {"__name__": "__main__", "__file__": path, "__builtins__": __builtins__}
    exec(compile(source, path, "exec"), namespace)


def _report(status_fd: int, pid: int, code: int | None = None, error: str | None = None) -> None:
    if error is not None:
        payload = {"setup_error": error}
    else:
        _, status, usage = os.wait4(pid, 0)
        payload = {
            "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            "cpu_time": usage.ru_utime + usage.ru_stime,
            "max_rss_kb": usage.ru_maxrss,
        }
    os.write(status_fd, (json.dumps(payload) + "\n").encode())


def _fork_program(spec: dict, stdin_fd: int, status_fd: int, extra_fds: tuple[int, ...]) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        _run_program(spec, stdin_fd, (status_fd, *extra_fds))
        if "threading" in sys.modules:  # join non-daemon threads like a normal interpreter exit
            sys.modules["threading"]._shutdown()
    except SystemExit as exc:
        if isinstance(exc.code, int):
            code = exc.code
        elif exc.code is not None:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        code = 1
    try:
        import atexit

        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001
        code = code or 1
    os._exit(code & 0xFF)


def _kill_descendants() -> None:
    """As child subreaper: kill and reap every process re-parented to us until none is left."""
    me = os.getpid()
    while True:
        found = False
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == me:
                found = True
                try:
                    os.kill(int(entry), signal.SIGKILL)
                except OSError:
                    pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            if not found:
                return


def _launch(spec: dict) -> int:
    """Run one job (the launcher role); returns the launcher's exit code."""
    status_fd = spec["status_fd"]
    workdir = spec["workdir"]
    stdin_fd = os.open(os.path.join(workdir, "stdin.txt"), os.O_RDONLY)
    if spec["mode"] == "process":
        _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        pid = _fork_program(spec, stdin_fd, status_fd, ())
        _report(status_fd, pid)
        _kill_descendants()
        return 0
    try:
        _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID), "unshare")
    except OSError as exc:
        _report(status_fd, 0, error=f"cannot create namespaces ({exc}); run as root or use "
                                    "SandboxConfig(isolation='process')")
        return SETUP_FAILED
    alive_r, alive_w = os.pipe()
    init = os.fork()
    if init:  # launcher: wait for init, which reports the program's status itself
        os.close(alive_r)
        os.waitpid(init, 0)
        return 0
    # init (pid 1 of the new pid namespace)
    os.close(alive_w)
    try:
        _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "pdeathsig")
        import select

        if select.select([alive_r], [], [], 0)[0]:  # EOF: the launcher already died
            os._exit(SETUP_FAILED)
        files = _read_files(workdir)
        _setup_filesystem(spec, files)
    except BaseException as exc:  # noqa: BLE001
        _report(status_fd, 0, error=f"sandbox setup failed: {exc!r}")
        os._exit(SETUP_FAILED)
    pid = _fork_program(spec, stdin_fd, status_fd, (alive_r,))
    _report(status_fd, pid)
    os._exit(0)  # the kernel kills whatever is left in the pid namespace


#: Modules the fork server imports once so that every job starts with them loaded (the
#: LiveCodeBench harness and its import prelude).
PRELOAD = ("ast", "atexit", "bisect", "collections", "copy", "datetime", "decimal", "faulthandler",
           "fractions", "functools", "heapq", "io", "itertools", "math", "operator", "random",
           "re", "select", "statistics", "string", "threading", "time", "traceback", "types",
           "typing")


def serve(sock_fd: int) -> None:
    """Fork server: receive ``(spec JSON, [stdout, stderr, status] fds)`` messages on a
    SOCK_SEQPACKET socket, fork a launcher per job (new session) and reply with its pid. Saves
    the interpreter start-up and module imports of every job."""
    import importlib
    import socket

    for name in PRELOAD:
        importlib.import_module(name)
    sock = socket.socket(fileno=sock_fd)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # launchers are reaped automatically
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 1 << 20, 3)
        except OSError:
            return
        if not msg:
            return  # the supervisor went away
        spec = json.loads(msg)
        pid = os.fork()
        if pid == 0:
            code = SETUP_FAILED
            try:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                sock.close()
                os.setsid()
                os.dup2(fds[0], 1)
                os.dup2(fds[1], 2)
                spec["status_fd"] = fds[2]
                for fd in fds[:2]:
                    os.close(fd)
                code = _launch(spec)
            finally:
                os._exit(code)
        for fd in fds:
            os.close(fd)
        sock.send(str(pid).encode())


def main() -> None:
    if sys.argv[1] == "--serve":
        serve(int(sys.argv[2]))
        return
    sys.exit(_launch(json.loads(sys.argv[1])))


if __name__ == "__main__":
    main()
