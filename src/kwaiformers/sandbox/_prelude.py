"""Trusted start of every sandbox job, run as ``python -I -S -B _prelude.py SPEC_JSON`` (stdlib).

``bwrap`` mode: runs *inside* the bubblewrap sandbox as the job's first process. It sets the
rlimits, then (when bubblewrap ran as root) switches to the job's unprivileged uid/gid with no
supplementary groups -- which clears every capability; bubblewrap already set ``no_new_privs``
and kept only ``CAP_SETUID``/``CAP_SETGID`` for this switch -- and finally runs ``main.py`` in
this very process as ``__main__``. Its exit status is the job's.

``process`` mode (no isolation): runs on the host as a launcher that becomes a child subreaper,
forks the program (same steps minus the uid switch), reports its status as JSON on
``status_fd`` and kills every leftover descendant.

``-S`` skips the ``site`` import (and ``.pth`` files) for start-up speed; the prelude adds the
interpreter's site-packages to ``sys.path`` itself (``site_dirs``) and the ``exit``/``quit``
builtins that ``site`` would define.
"""

from __future__ import annotations

import builtins
import json
import os
import resource
import signal
import sys
import types


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
    """Root (in the sandbox, with CAP_SETUID/CAP_SETGID only) -> ``uid``:``uid``, no groups."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)  # clears the permitted/effective/ambient capabilities
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (uid, uid, uid):
        raise OSError("could not switch to the sandbox uid")
    with open("/proc/self/status") as f:
        caps = {line.split(":")[0]: int(line.split()[1], 16) for line in f
                if line.startswith(("CapEff", "CapPrm", "CapAmb"))}
    if any(caps.values()):
        raise OSError(f"capabilities left after the uid switch: {caps}")


def _builtins_of_site() -> None:
    """``exit``/``quit`` as ``site`` defines them (we run with ``-S``)."""
    if not hasattr(builtins, "exit"):
        import _sitebuiltins

        eof = "Ctrl-D (i.e. EOF)"
        builtins.exit = _sitebuiltins.Quitter("exit", eof)
        builtins.quit = _sitebuiltins.Quitter("quit", eof)


def _run_program(spec: dict, code=None) -> None:
    """Limits, privileges, then ``main.py`` (or its precompiled ``code``, fork server only)
    as ``__main__`` in this process."""
    os.chdir(spec["workdir"])
    _set_rlimits(spec)
    if spec.get("drop_uid") is not None:
        _drop_privileges(spec["drop_uid"])
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    _builtins_of_site()
    path = os.path.join(spec["workdir"], "main.py")
    if code is None:
        with open(path, "rb") as f:
            code = compile(f.read(), path, "exec")
    sys.argv = ["main.py"]
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [spec["workdir"], *(p for p in sys.path if p and p != here),
                   *spec.get("site_dirs", [])]
    main = types.ModuleType("__main__")
    main.__file__ = path
    main.__builtins__ = builtins
    sys.modules["__main__"] = main  # a fresh __main__ (not the launcher's module)
    exec(code, main.__dict__)


def _finish(code: int) -> None:
    """Interpreter-exit duties (threads, atexit, flush), then ``_exit``."""
    try:
        if "threading" in sys.modules:  # join non-daemon threads like a normal interpreter exit
            sys.modules["threading"]._shutdown()
        import atexit

        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001
        code = code or 1
    os._exit(code & 0xFF)


def _program_main(spec: dict, program=None) -> None:
    code = 0
    try:
        _run_program(spec, program)
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
    _finish(code)


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


def _launch_process_mode(spec: dict) -> int:
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    status_fd = spec["status_fd"]
    stdin_fd = os.open(os.path.join(spec["workdir"], "stdin.txt"), os.O_RDONLY)
    pid = os.fork()
    if pid == 0:
        os.dup2(stdin_fd, 0)
        os.close(stdin_fd)
        os.close(status_fd)
        libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
        _program_main(spec)
    os.close(stdin_fd)
    _, status, usage = os.wait4(pid, 0)
    payload = {
        "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        "cpu_time": usage.ru_utime + usage.ru_stime,
    }
    os.write(status_fd, (json.dumps(payload) + "\n").encode())
    _kill_descendants()
    return 0


def main() -> None:
    spec = json.loads(sys.argv[1])
    if spec["mode"] == "process":
        sys.exit(_launch_process_mode(spec))
    _program_main(spec)


if __name__ == "__main__":
    main()
