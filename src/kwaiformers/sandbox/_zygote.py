"""Fork server ("zygote") of one sandbox worker slot (stdlib; trusted code, never runs a job).

Runs *inside* a long-lived bubblewrap sandbox (root without a user namespace, capabilities
``CAP_SETUID``, ``CAP_SETGID``, ``CAP_SETPCAP``, ``CAP_SYS_ADMIN`` only, ``no_new_privs``) as
``python -I -S -B /.kwf/zygote.py SPEC_JSON``. It imports the ``preload`` modules once and then
serves jobs sent by :class:`kwaiformers.sandbox.executor.Sandbox` over the control socket
(``control_fd``). For each job it forks; the job never runs in the zygote itself, so nothing a
job does (``sys.modules``, builtins, fds, signal handlers, environment, cwd, memory) can reach the
zygote or a later job -- each job gets a fresh copy-on-write image of the pristine zygote::

    zygote ── unshare(pid) + fork ─> init = pid 1 of the job's new pid namespace (root, dies
          (then back to its own      with the zygote): unshare(mount, IPC, UTS); fresh private
           pid namespace)            tmpfs on /tmp (the job's files), /var/tmp, /run, /dev/shm;
                                     fresh /proc; waits for the program, writes its status; when
                                     it exits the kernel kills every process left in the namespace
                                     └─ fork ─> program: stdin/stdout/stderr of the job, every
                                                other fd closed, capability bounding set
                                                emptied, rlimits, the job's own unprivileged uid
                                                (no capabilities), then ``main.py`` as
                                                ``__main__`` (``_prelude``)

Protocol (stream socket, frames of a 4-byte big-endian length + JSON): ``{"ready"}`` once; per
job the host sends a header (with the job's stdin, stdout and stderr fds as ``SCM_RIGHTS``)
followed by the raw bytes of its files; the zygote answers ``{"forked"}`` right after the fork
and ``{"done", report}`` when the job's init has been reaped. ``{"kill"}`` while a job runs kills it; end of file on the socket kills the job
and ends the zygote.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import json
import os
import select
import signal
import socket
import struct
import sys

_CLONE_NEWNS, _CLONE_NEWUTS, _CLONE_NEWIPC, _CLONE_NEWPID = 0x20000, 0x4000000, 0x8000000, \
    0x20000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = \
    1, 2, 4, 8, 32, 4096, 16384, 1 << 18
_TMPFS = (("/tmp", "1777"), ("/var/tmp", "1777"), ("/run", "755"), ("/dev/shm", "1777"))
_REBIND: list[str] = []  # read-only binds below those paths (e.g. a venv in /tmp), from the spec
_OWN_PID_NS: list[int] = []  # fd of the fork server's own pid namespace
_PR_SET_PDEATHSIG, _PR_CAPBSET_DROP, _PR_SET_DUMPABLE = 1, 24, 4
_LIBC = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount_tmpfs(path: str, size: int, mode: str) -> None:
    opts = f"size={size},mode={mode}".encode()
    _check(_LIBC.mount(b"tmpfs", path.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, opts),
           f"mount tmpfs {path}")


def _die_with_parent(lifeline: int) -> None:
    """SIGKILL when the parent dies; ``lifeline``: read end of a pipe whose write end only the
    parent holds (end of file: the parent died before the prctl; ``getppid`` cannot tell in a
    new pid namespace)."""
    _check(_LIBC.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0), "PR_SET_PDEATHSIG")
    poller = select.poll()
    poller.register(lifeline, select.POLLIN)
    if poller.poll(0):
        os._exit(1)
    os.close(lifeline)


def _drop_bounding_set() -> None:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last = int(f.read())
    for cap in range(last + 1):
        _check(_LIBC.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0), f"PR_CAPBSET_DROP {cap}")


def _send(sock: socket.socket, message: dict) -> None:
    data = json.dumps(message).encode()
    sock.sendall(struct.pack(">I", len(data)) + data)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            raise EOFError("control socket closed")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _recv_header(sock: socket.socket) -> tuple[dict, list[int]]:
    head, fds, _, _ = socket.recv_fds(sock, 4, 8)
    if not head:
        raise EOFError("control socket closed")
    if len(head) < 4:
        head += _recv_exact(sock, 4 - len(head))
    (size,) = struct.unpack(">I", head)
    return json.loads(_recv_exact(sock, size)), list(fds)


_COMPILED: dict[bytes, object] = {}  # trusted programs (e.g. a grading harness), by content


def _trusted_code(job: dict, blobs: list[tuple[str, bytes]]):
    """The compiled ``main.py`` when the host marked it trusted (``Job.trusted_program``):
    compiled once here, outside every job, and inherited by the forks."""
    if not job.get("trusted"):
        return None
    source = dict(blobs)["main.py"]
    code = _COMPILED.get(source)
    if code is None:
        code = compile(source, os.path.join(job["spec"]["workdir"], "main.py"), "exec")
        if len(_COMPILED) >= 8:
            _COMPILED.clear()
        _COMPILED[source] = code
        gc.freeze()
    return code


def _program(job: dict, fds: list[int], status_w: int) -> None:
    """The job's program process, forked by its init (never returns)."""
    import atexit

    os.close(status_w)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    os.closerange(3, 1 << 16)
    atexit._clear()  # the zygote's exit functions are not the job's
    _drop_bounding_set()
    os.umask(0o022)
    import prelude

    prelude._program_main(job["spec"], job.get("code"))  # rlimits, uid, main.py; os._exit


def _setup_job(job: dict, blobs: list[tuple[str, bytes]]) -> None:
    """In the job's init: its own mount, IPC and UTS namespaces, fresh tmpfs, files, /proc."""
    with open("/proc/self/oom_score_adj", "w") as f:  # the OOM killer's first choice, before
        f.write("1000")  # the fork server that shares the slot's memory cgroup
    _check(_LIBC.unshare(_CLONE_NEWNS | _CLONE_NEWIPC | _CLONE_NEWUTS), "unshare")
    _check(_LIBC.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None), "make / private")
    kept = [(path, os.open(path, os.O_PATH)) for path in _REBIND]
    for path, mode in _TMPFS:
        _mount_tmpfs(path, job["tmpfs"][path], mode)
    for path, fd in kept:  # the read-only binds the fresh tmpfs covered, again
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            os.mkdir(path, 0o755)
        else:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))
        _check(_LIBC.mount(f"/proc/self/fd/{fd}".encode(), path.encode(), None,
                           _MS_BIND | _MS_REC, None), f"bind {path}")
        _check(_LIBC.mount(None, path.encode(), None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY
                           | _MS_NOSUID | _MS_NODEV, None), f"read-only {path}")
        os.close(fd)
    workdir = job["spec"]["workdir"]
    for name, data in blobs:
        fd = os.open(os.path.join(workdir, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
    _check(_LIBC.mount(b"proc", b"/proc", b"proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None),
           "mount /proc")


def _init(job: dict, blobs: list[tuple[str, bytes]], fds: list[int], status_w: int,
          lifeline: int) -> None:
    """Pid 1 of the job's pid namespace, forked by the fork server (never returns)."""
    try:
        _die_with_parent(lifeline)
        _LIBC.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
        _setup_job(job, blobs)
        pid = os.fork()
        if pid == 0:
            try:
                _program(job, fds, status_w)
            finally:
                os._exit(127)
    except BaseException as exc:  # noqa: BLE001
        os.write(status_w, json.dumps({"setup_error": f"sandbox job setup: {exc!r}"}).encode())
        os._exit(1)
    for fd in fds:
        os.close(fd)
    report: dict = {}
    while True:  # reap everything re-parented to us until the program itself is done
        try:
            done, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if done == pid:
            if os.WIFEXITED(status):
                report["exit_code"] = os.WEXITSTATUS(status)
            else:
                report["signal"] = os.WTERMSIG(status)
            break
    os.write(status_w, json.dumps(report).encode())
    os._exit(0)  # the kernel kills whatever is left in the namespace


def _serve_job(sock: socket.socket, job: dict, fds: list[int]) -> bool:
    """Run one job; False when the host went away."""
    blobs = [(name, _recv_exact(sock, size) if size else b"") for name, size in job["files"]]
    try:
        job["code"] = _trusted_code(job, blobs)
    except Exception as exc:  # noqa: BLE001 - the job reports it as its own error
        job["code"], job["trusted"] = None, False
        del exc
    status_r, status_w = os.pipe()
    life_r, life_w = os.pipe()
    _check(_LIBC.unshare(_CLONE_NEWPID), "unshare pid")  # the next child is pid 1 of a new one
    try:
        pid = os.fork()
        if pid == 0:
            try:
                sock.close()
                os.close(status_r)
                os.close(life_w)
                _init(job, blobs, fds, status_w, life_r)
            finally:
                os._exit(127)
    finally:  # later children in our own pid namespace again (else: end the fork server)
        _check(_LIBC.setns(_OWN_PID_NS[0], _CLONE_NEWPID), "setns pid")
    os.close(life_r)
    os.close(status_w)
    for fd in fds:
        os.close(fd)
    del blobs
    _send(sock, {"forked": True})
    alive = True
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # old kernel or seccomp profile: poll for the exit
        pidfd = -1
    try:
        while True:
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            if pidfd >= 0:
                poller.register(pidfd, select.POLLIN)
                ready = [fd for fd, _ in poller.poll()]
                if pidfd in ready:
                    break
            else:
                ready = [fd for fd, _ in poller.poll(2)]
                if not ready and os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
                    break
                if not ready:
                    continue
            try:
                message, extra = _recv_header(sock)
                for fd in extra:
                    os.close(fd)
            except (EOFError, OSError, ValueError):
                message, alive = {}, False
            if not alive or message.get("kill"):
                os.kill(pid, signal.SIGKILL)
                if not alive:
                    break
    finally:
        if pidfd >= 0:
            os.close(pidfd)
        os.close(life_w)
    while True:
        try:
            _, status, usage = os.wait4(pid, 0)
            break
        except InterruptedError:
            continue
    with os.fdopen(status_r, "rb") as f:
        raw = f.read()
    try:
        report = json.loads(raw) if raw else {}
    except ValueError:
        report = {"setup_error": "sandbox job: unreadable status"}
    report["cpu_time"] = usage.ru_utime + usage.ru_stime
    if alive:
        _send(sock, {"done": report})
    return alive


def main() -> None:
    spec = json.loads(sys.argv[1])
    _REBIND[:] = sorted(spec.get("rebind", []))
    _OWN_PID_NS[:] = [os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)]
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import prelude  # noqa: F401 - imported before any fork

    for name in spec.get("preload", []):
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a missing optional module only costs speed
            pass
    gc.collect()
    gc.freeze()  # the forks' garbage collector leaves the preloaded objects (and pages) alone
    control = os.dup(spec["control_fd"])  # the lowest free fd (the host's may be > 1024)
    os.close(spec["control_fd"])
    sock = socket.socket(fileno=control)
    sock.setblocking(True)
    os.set_inheritable(sock.fileno(), False)
    _LIBC.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    sys.stdout.flush()
    _send(sock, {"ready": True})
    while True:
        try:
            job, fds = _recv_header(sock)
        except (EOFError, OSError):
            return
        if job.get("kill"):  # for a job that had ended already
            for fd in fds:
                os.close(fd)
            continue
        if not _serve_job(sock, job, fds):
            return


if __name__ == "__main__":
    main()
