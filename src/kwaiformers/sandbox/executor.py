"""Batch executor for untrusted Python programs (model generations), stdlib + bubblewrap.

Every :class:`Job` runs in a fresh process tree under rlimits (CPU seconds, address space,
processes, file size, open files), a per-job memory cgroup where the machine allows one, a
wall-clock timeout that kills the whole tree, and capped stdout/stderr.

Isolation modes (``SandboxConfig.isolation``):

- ``"bwrap"`` (default): every job runs in its own `bubblewrap <https://github.com/containers/
  bubblewrap>`_ sandbox (Debian package ``bubblewrap``; the sandbox behind Flatpak): new pid,
  network, IPC, UTS (and cgroup) namespaces, a new mount namespace whose root is an empty tmpfs
  holding only read-only binds of ``/usr`` and the Python interpreter (plus its site-packages),
  a fresh ``/proc``, a minimal ``/dev`` (null, zero, full, random, urandom, tty), private
  size-limited tmpfs on ``/tmp`` (the working directory), ``/var/tmp``, ``/run`` and
  ``/dev/shm``, ``--die-with-parent`` and ``--new-session``. The job's files are copied into its
  tmpfs from memory (``--file``): they never exist on the host file system, so no job can see
  another's. Run as root, bubblewrap sets the sandbox up with root's rights (so a 0700 ``/root``
  interpreter can be bound) and the program then runs under an unused unprivileged uid (one per
  worker slot) with no capabilities and ``no_new_privs``; root-only files, sockets and devices
  stay closed. Run as another user, bubblewrap adds a user namespace (``--unshare-user
  --disable-userns``) and the program keeps that user's uid. If ``bwrap`` is missing or cannot
  create the namespaces, the sandbox **refuses** (:class:`SandboxUnavailableError`).

  Fork server (``SandboxConfig.zygote``, default on where bubblewrap runs as root): instead of
  one bubblewrap sandbox and one fresh interpreter per job, each worker slot keeps one
  long-lived sandbox of the same kind whose only process, ``_zygote.py`` (trusted code that
  never runs a job), has the ``preload`` modules imported and forks every job. A forked job
  gets its own mount, pid, IPC and UTS namespaces, fresh private tmpfs on ``/tmp`` (its files),
  ``/var/tmp``, ``/run`` and ``/dev/shm``, a fresh ``/proc``, an emptied capability bounding
  set and a fresh unprivileged uid, then runs as above; its pid namespace ends with it, which
  kills every process it left. Jobs of one slot run one after another and share the slot's
  network namespace (no interface but loopback; nothing of a job survives it) and its memory
  cgroup (limit set per job). Anything a job changes in its interpreter is in its own
  copy-on-write image only. ``zygote=False`` gives one bubblewrap per job; where the fork server
  cannot start (not root) the sandbox falls back to that with a warning.
- ``"process"`` (explicit opt-in only): rlimits, process group, scrubbed environment, temporary
  working directory on the host, and a child-subreaper that kills leftover descendants; **no
  network, file-system or IPC isolation**. Select it with ``SandboxConfig(isolation="process")``
  or ``KWAIFORMERS_SANDBOX_ISOLATION=process``.

Memory per job: all processes of a job share one memory cgroup (cgroup v2 memory controller when
it is delegated to this process's cgroup, else the cgroup v1 memory hierarchy) limited to
``memory_mb + disk_mb``. Without a writable memory cgroup only the per-process address-space
limit applies; then ``max_processes`` is lowered (with a warning) until ``num_workers x
max_processes x memory_mb`` fits in the machine's RAM.

Executing anything requires opting in, like ``evaluate``'s ``code_eval``:
``KWAIFORMERS_ALLOW_CODE_EXECUTION=1`` or ``SandboxConfig(allow_code_execution=True)``.
"""

from __future__ import annotations

import errno
import json
import math
import os
import select
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Literal

ALLOW_ENV_VAR = "KWAIFORMERS_ALLOW_CODE_EXECUTION"
ISOLATION_ENV_VAR = "KWAIFORMERS_SANDBOX_ISOLATION"
ISOLATIONS = ("bwrap", "process")
STATUSES = ("passed", "wrong_answer", "timeout", "runtime_error", "memory", "killed")
_PRELUDE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_prelude.py")
_PRELUDE_IN_SANDBOX = "/.kwf/prelude.py"
_ZYGOTE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_zygote.py")
_ZYGOTE_IN_SANDBOX = "/.kwf/zygote.py"
# stdlib modules the fork server imports once (what graded programs and the LiveCodeBench harness
# import); a job sees them already imported, like a program forked by the official grader
DEFAULT_PRELOAD = (
    "ast", "bisect", "collections", "copy", "datetime", "decimal", "faulthandler", "fractions",
    "functools", "heapq", "io", "itertools", "json", "math", "operator", "random", "re",
    "shutil", "statistics", "string", "subprocess", "typing", "traceback", "_sitebuiltins")
_UIDS_PER_PROCESS = 1 << 16
_WORKDIR = "/tmp"
INSTALL_HINT = ("install bubblewrap (Debian/Ubuntu: apt-get install -y bubblewrap; Fedora: dnf "
                "install bubblewrap)")

Status = Literal["passed", "wrong_answer", "timeout", "runtime_error", "memory", "killed"]


class CodeExecutionNotAllowedError(RuntimeError):
    """Raised when code execution was not explicitly allowed."""


class SandboxUnavailableError(RuntimeError):
    """Raised when the requested isolation cannot be set up on this machine."""


@dataclass
class SandboxConfig:
    """Limits and policy of a :class:`Sandbox` (all sizes in MiB, times in seconds).

    ``memory_mb`` bounds every process (address space) and, with a memory cgroup, all processes
    of a job together (plus the job's tmpfs, ``disk_mb``). ``zygote``: ``None`` (a fork server
    per worker slot where bubblewrap runs as root, else one bubblewrap per job), ``True``
    (require it) or ``False``; ``preload``: the modules it imports once (default
    :data:`DEFAULT_PRELOAD`). ``memory_cgroup``: ``"auto"`` (use one
    when writable, else lower ``max_processes`` to fit the RAM and warn), ``"require"`` (refuse
    without one) or ``"off"``. ``site_packages``: put the interpreter's site-packages (read-only)
    on the program's ``sys.path``.
    """

    isolation: Literal["bwrap", "process"] | None = None  # None: env var, else bwrap
    allow_code_execution: bool | None = None  # None: read KWAIFORMERS_ALLOW_CODE_EXECUTION
    num_workers: int | None = None  # None: number of usable CPUs
    default_timeout: float = 6.0
    startup_grace: float = 2.0  # extra wall time for sandbox + interpreter start-up
    memory_mb: int = 1024
    max_processes: int = 32
    file_size_mb: int = 16
    max_open_files: int = 64
    disk_mb: int = 64
    max_output_bytes: int = 16 * 1024 * 1024
    max_stderr_bytes: int = 64 * 1024
    python: str = sys.executable
    bwrap: str | None = None  # None: look ``bwrap`` up on PATH
    tmp_dir: str | None = None  # host temp dir, "process" mode only
    uid_base: int = 2_000_000_000
    zygote: bool | None = None  # None: a fork server per slot where possible (see Sandbox)
    preload: tuple[str, ...] = ()  # () : DEFAULT_PRELOAD; modules the fork server imports once
    memory_cgroup: Literal["auto", "require", "off"] = "auto"
    site_packages: bool = True
    ro_binds: tuple[str, ...] = ()  # extra host paths visible read-only (same path), bwrap mode

    def __post_init__(self) -> None:
        if self.isolation is None:
            self.isolation = os.environ.get(ISOLATION_ENV_VAR) or "bwrap"  # type: ignore[assignment]
        if self.isolation not in ISOLATIONS:
            raise ValueError(f"SandboxConfig.isolation must be one of {ISOLATIONS}, got "
                             f"{self.isolation!r} (from {ISOLATION_ENV_VAR} if not passed)")
        for name in ("memory_mb", "max_processes", "file_size_mb", "max_open_files", "disk_mb",
                     "max_output_bytes", "max_stderr_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"SandboxConfig.{name} must be a positive int, got {value!r}")
        if not self.default_timeout > 0 or self.startup_grace < 0:
            raise ValueError("SandboxConfig.default_timeout must be > 0 and startup_grace >= 0")
        if self.num_workers is not None and self.num_workers < 1:
            raise ValueError(f"SandboxConfig.num_workers must be >= 1, got {self.num_workers}")
        self.ro_binds = tuple(self.ro_binds)
        self.preload = tuple(self.preload) or DEFAULT_PRELOAD
        if not all(isinstance(m, str) and m.replace(".", "").replace("_", "").isalnum()
                   for m in self.preload):
            raise ValueError(f"SandboxConfig.preload must hold module names, got {self.preload!r}")
        if self.zygote not in (None, True, False):
            raise ValueError(f"SandboxConfig.zygote must be None, True or False, got {self.zygote!r}")
        for path in self.ro_binds:
            if not isinstance(path, str) or not os.path.isabs(path) or not os.path.exists(path):
                raise ValueError(f"SandboxConfig.ro_binds must hold existing absolute paths, "
                                 f"got {path!r}")
        if not 0 < self.uid_base <= 2**32 - 2 - _UID_BLOCKS * _UIDS_PER_PROCESS:
            raise ValueError(f"SandboxConfig.uid_base must be in (0, "
                             f"{2**32 - 2 - _UID_BLOCKS * _UIDS_PER_PROCESS}], got {self.uid_base}")
        if self.memory_cgroup not in ("auto", "require", "off"):
            raise ValueError("SandboxConfig.memory_cgroup must be 'auto', 'require' or 'off', "
                             f"got {self.memory_cgroup!r}")


@dataclass
class Job:
    """One program run: Python ``program`` source, its ``stdin``, a wall ``timeout`` (seconds).

    ``expected_output`` (optional) turns a clean exit into ``passed``/``wrong_answer`` using
    ``compare`` (default :func:`outputs_match`, LiveCodeBench's stdin/stdout rule). ``files``
    are extra files (name -> text/bytes) placed next to ``main.py`` (the private tmpfs grows by
    their size). ``cpu_seconds`` defaults to ``ceil(timeout) + 1``. ``trusted_program``: the
    program is trusted code (a grading harness that runs the untrusted code itself): the fork
    server compiles it once, outside the jobs, and reuses the compiled code.
    """

    program: str
    stdin: str | bytes = ""
    timeout: float | None = None
    expected_output: str | None = None
    files: Mapping[str, str | bytes] = field(default_factory=dict)
    cpu_seconds: int | None = None
    compare: Callable[[str, str], bool] | None = None
    extra_memory_mb: int = 0  # added to SandboxConfig.memory_mb (e.g. for large test data)
    trusted_program: bool = False  # the program is trusted (a grading harness, not model code)

    def __post_init__(self) -> None:
        if not isinstance(self.program, str):
            raise TypeError(f"Job.program must be a str of Python source, got {type(self.program)}")
        if not isinstance(self.stdin, (str, bytes)):
            raise TypeError(f"Job.stdin must be str or bytes, got {type(self.stdin)}")
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError(f"Job.timeout must be > 0 seconds, got {self.timeout!r}")
        if not isinstance(self.extra_memory_mb, int) or self.extra_memory_mb < 0:
            raise ValueError(f"Job.extra_memory_mb must be an int >= 0, got {self.extra_memory_mb!r}")
        for name in self.files:
            if not isinstance(name, str) or os.path.basename(name) != name or name in (
                    "main.py", "stdin.txt", "", ".", ".."):
                raise ValueError(f"Job.files names must be plain file names, got {name!r}")


@dataclass
class Result:
    """Outcome of a :class:`Job`. ``status`` is one of :data:`STATUSES`; ``time`` is wall seconds.

    ``exit_code``/``signal``: with one bubblewrap per job, bubblewrap reports a program killed by
    signal ``s`` as exit code ``128 + s``, so exit codes above 128 are reported as signals (the
    fork server reports both exactly). ``peak_memory_mb``: the job's peak memory (all processes
    and its tmpfs) when a memory cgroup was used (fork server: cgroup v1 only).
    """

    status: Status
    stdout: str
    stderr: str
    time: float
    exit_code: int | None = None
    signal: int | None = None
    cpu_time: float | None = None
    reason: str = ""
    truncated: bool = False
    peak_memory_mb: float | None = None

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def outputs_match(actual: str, expected: str) -> bool:
    """LiveCodeBench stdin/stdout rule: lines compared after ``strip()``; a differing line still
    matches if its whitespace-separated tokens are equal as ``Decimal`` numbers."""
    got = [line.strip() for line in actual.strip().split("\n")]
    want = [line.strip() for line in expected.strip().split("\n")]
    if len(got) != len(want):
        return False
    for g, w in zip(got, want):
        if g == w:
            continue
        try:
            if [Decimal(t) for t in g.split()] != [Decimal(t) for t in w.split()]:
                return False
        except (InvalidOperation, ValueError):
            return False
    return True


def code_execution_allowed(explicit: bool | None = None) -> bool:
    """Whether untrusted code may run: ``explicit`` if given, else the opt-in env var."""
    if explicit is not None:
        return bool(explicit)
    return os.environ.get(ALLOW_ENV_VAR, "") == "1"


def require_code_execution(explicit: bool | None = None) -> None:
    """Raise :class:`CodeExecutionNotAllowedError` with the reason unless execution is allowed."""
    if not code_execution_allowed(explicit):
        raise CodeExecutionNotAllowedError(
            "Refusing to execute model-generated code. It is untrusted: it may try to damage the "
            "machine, read secrets or reach the network. kwaiformers runs it in a sandbox (see "
            "docs/reasoning_evals.md) but you must opt in explicitly: set "
            f"{ALLOW_ENV_VAR}=1 in the environment, or pass allow_code_execution=True."
        )


# -- memory cgroups --------------------------------------------------------------------------------


class MemoryCgroups:
    """Per-job memory cgroups below this process's own cgroup (v2 with the memory controller
    enabled for it, or the v1 memory hierarchy). :meth:`detect` returns ``None`` when neither
    is writable."""

    def __init__(self, parent: str, version: int) -> None:
        self.parent, self.version = parent, version
        self._count = 0
        self._lock = threading.Lock()

    @classmethod
    def detect(cls) -> MemoryCgroups | None:
        try:
            with open("/proc/self/cgroup") as f:
                lines = [line.rstrip("\n").split(":", 2) for line in f]
        except OSError:
            return None
        global _CGROUP_COUNT
        with _CGROUP_LOCK:
            _CGROUP_COUNT += 1
            tag = f"kwf-sandbox-{os.getpid()}-{_CGROUP_COUNT}"
        for _, controllers, path in lines:  # v1 memory hierarchy
            if "memory" in controllers.split(","):
                base = "/sys/fs/cgroup/memory" + path
                found = cls._make(os.path.join(base, tag), 1)
                if found:
                    return found
        for hier, controllers, path in lines:  # v2 (unified) hierarchy
            if hier == "0" and controllers == "":
                for mount in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
                    base = mount + path
                    try:
                        with open(os.path.join(base, "cgroup.subtree_control")) as f:
                            if "memory" not in f.read().split():
                                continue
                    except OSError:
                        continue
                    found = cls._make(os.path.join(base, tag), 2)
                    if found:
                        return found
        return None

    @classmethod
    def _make(cls, parent: str, version: int) -> MemoryCgroups | None:
        cls._remove_stale(os.path.dirname(parent))
        try:
            os.mkdir(parent)
        except OSError:
            return None
        try:
            if version == 2:
                with open(os.path.join(parent, "cgroup.subtree_control"), "w") as f:
                    f.write("+memory")
            probe = cls(parent, version)
            path = probe.create(64 << 20)
            probe.remove(path)
            return probe
        except OSError:
            try:
                os.rmdir(parent)
            except OSError:
                pass
            return None

    @staticmethod
    def _remove_stale(base: str) -> None:
        """Remove the (empty) cgroups left by sandboxes of processes that no longer exist."""
        try:
            names = os.listdir(base)
        except OSError:
            return
        for name in names:
            parts = name.split("-")
            if len(parts) != 4 or parts[:2] != ["kwf", "sandbox"] or not parts[2].isdigit():
                continue
            if os.path.exists(f"/proc/{parts[2]}"):
                continue
            stale = os.path.join(base, name)
            try:
                for child in os.listdir(stale):  # (a zygote of a dead process is dead too)
                    if os.path.isdir(os.path.join(stale, child)):
                        os.rmdir(os.path.join(stale, child))
                os.rmdir(stale)
            except OSError:
                pass

    def create(self, limit_bytes: int) -> str:
        with self._lock:
            self._count += 1
            path = os.path.join(self.parent, f"job{self._count}")
        os.mkdir(path)
        try:
            if self.version == 2:
                self._write(path, "memory.max", limit_bytes)
                self._write(path, "memory.swap.max", 0, optional=True)
            else:
                self._write(path, "memory.limit_in_bytes", limit_bytes)
                self._write(path, "memory.memsw.limit_in_bytes", limit_bytes, optional=True)
        except OSError:
            os.rmdir(path)
            raise
        return path

    @staticmethod
    def _write(path: str, name: str, value: int, optional: bool = False) -> None:
        try:
            with open(os.path.join(path, name), "w") as f:
                f.write(str(value))
        except OSError:
            if not optional:
                raise

    @staticmethod
    def procs_file(path: str) -> str:
        return os.path.join(path, "cgroup.procs")

    def move(self, pid: int, path: str) -> None:
        """Move process ``pid`` (a host pid) into the cgroup ``path``; children it forks later
        are born there (its memory charged so far stays where it was)."""
        with open(self.procs_file(path), "w") as f:
            f.write(str(pid))

    def create_slot(self) -> str:
        """An (unlimited for now) cgroup for one fork server and the jobs it forks."""
        return self.create(1 << 40)  # the limit is set per job

    def oom_kills(self, path: str) -> int:
        """How many processes the kernel's OOM killer has killed in this cgroup so far."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            with open(os.path.join(path, name)) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def oom_killed(self, path: str) -> bool:
        return self.oom_kills(path) > 0

    def usage(self, path: str) -> int:
        name = "memory.current" if self.version == 2 else "memory.usage_in_bytes"
        with open(os.path.join(path, name)) as f:
            return int(f.read())

    def set_limit(self, path: str, limit_bytes: int) -> None:
        """Change a cgroup's memory limit (v1: memory and memory+swap, in a valid order)."""
        if self.version == 2:
            self._write(path, "memory.max", limit_bytes)
            return
        try:
            self._write(path, "memory.limit_in_bytes", limit_bytes)
        except OSError:  # above the memory+swap limit: raise that one first
            self._write(path, "memory.memsw.limit_in_bytes", limit_bytes, optional=True)
            self._write(path, "memory.limit_in_bytes", limit_bytes)
        self._write(path, "memory.memsw.limit_in_bytes", limit_bytes, optional=True)

    def reset_peak(self, path: str) -> bool:
        """Restart the peak-usage counter (v1 only; v2 resets it per open file only)."""
        if self.version == 2:
            return False
        try:
            self._write(path, "memory.max_usage_in_bytes", 0)
            return True
        except OSError:
            return False

    def _peak(self, path: str) -> int | None:
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        try:
            with open(os.path.join(path, name)) as f:
                return int(f.read())
        except (OSError, ValueError):
            return None

    def peak_mb(self, path: str) -> float | None:
        peak = self._peak(path)
        return None if peak is None else peak / (1 << 20)

    def remove(self, path: str) -> None:
        """Kill whatever is left in the cgroup and remove it."""
        for attempt in range(200):
            try:
                os.rmdir(path)
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise
            if self.version == 2:
                self._write(path, "cgroup.kill", 1, optional=True)
            try:
                with open(self.procs_file(path)) as f:
                    for pid in f.read().split():
                        try:
                            os.kill(int(pid), signal.SIGKILL)
                        except OSError:
                            pass
            except OSError:
                pass
            time.sleep(0.005 * min(attempt + 1, 20))

    def close(self) -> None:
        try:
            children = [os.path.join(self.parent, n) for n in os.listdir(self.parent)]
        except OSError:
            children = []
        for path in [*(p for p in children if os.path.isdir(p)), self.parent]:
            try:
                os.rmdir(path)
            except OSError:
                pass


_CGROUP_LOCK = threading.Lock()
_CGROUP_COUNT = 0


_UID_LOCK = threading.Lock()
_UID_SEQ = 0
_UID_BLOCKS = 30_000  # processes with distinct uid blocks (pid modulo this)


def _uid_block(base: int) -> range:
    """The uids this process gives its jobs: a block of :data:`_UIDS_PER_PROCESS` above ``base``."""
    first = base + (os.getpid() % _UID_BLOCKS) * _UIDS_PER_PROCESS
    return range(first, first + _UIDS_PER_PROCESS)


def _next_uid(base: int) -> int:
    """A fresh unprivileged uid for the next job (cycles through this process's block)."""
    global _UID_SEQ
    with _UID_LOCK:
        _UID_SEQ += 1
        seq = _UID_SEQ
    block = _uid_block(base)
    return block[seq % len(block)]


def _mem_total_mb() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return 8192


# -- fork servers -----------------------------------------------------------------------------------


class ZygoteError(RuntimeError):
    """The fork server of a slot failed (it is restarted for the next job)."""


def _frame(message: dict) -> bytes:
    data = json.dumps(message).encode()
    return struct.pack(">I", len(data)) + data


class _Zygote:
    """Host side of one slot's fork server (``_zygote.py`` in a long-lived bubblewrap sandbox)."""

    def __init__(self, cmd: list[str], control: socket.socket, child_end: socket.socket,
                 start_timeout: float) -> None:
        self.cgroups: MemoryCgroups | None = None
        self.cgroup: str | None = None  # the slot's memory cgroup (fork server + its jobs)
        self.sock = control
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd="/", env={}, start_new_session=True, pass_fds=(child_end.fileno(),),
            close_fds=True)
        child_end.close()
        self._buf = b""
        try:
            message, creds = self.recv(time.monotonic() + start_timeout, want_creds=True)
        except BaseException:
            self.kill()
            raise
        if not message.get("ready") or creds is None:
            self.kill()
            raise ZygoteError(f"fork server did not start: {message!r}")
        self.host_pid = creds  # its pid in this process's pid namespace (SCM_CREDENTIALS)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, message: dict, fds: Sequence[int] = (), payload: Sequence[bytes] = ()) -> None:
        data = _frame(message)
        if fds:
            sent = socket.send_fds(self.sock, [data], list(fds))
            data = data[sent:]
        if data:
            self.sock.sendall(data)
        for blob in payload:
            if blob:
                self.sock.sendall(blob)

    def recv(self, deadline: float, want_creds: bool = False):
        """The next frame (and the sender's pid with ``want_creds``); ZygoteError on EOF or at
        the deadline."""
        creds = None
        while True:
            if len(self._buf) >= 4:
                (size,) = struct.unpack(">I", self._buf[:4])
                if len(self._buf) >= 4 + size:
                    message = json.loads(self._buf[4:4 + size])
                    self._buf = self._buf[4 + size:]
                    return (message, creds) if want_creds else message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ZygoteError("fork server did not answer in time")
            poller = select.poll()  # not select(): fds above 1024 in a busy host process
            poller.register(self.sock, select.POLLIN)
            if not poller.poll(max(1, int(remaining * 1000))):
                continue
            data, ancillary, _, _ = self.sock.recvmsg(65536, socket.CMSG_SPACE(12))
            if not data:
                err = b""
                if self.proc.poll() is not None and self.proc.stderr is not None:
                    os.set_blocking(self.proc.stderr.fileno(), False)
                    err = (self.proc.stderr.read() or b"")[-1000:]
                raise ZygoteError("fork server exited" + (
                    f": {err.decode(errors='replace').strip()}" if err else ""))
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    creds = struct.unpack("3i", value[:12])[0]
            self._buf += data

    def kill(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
        for kill in (os.killpg, os.kill):
            try:
                kill(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not ignorable
            pass
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        if self.cgroup is not None:
            self.cgroups.remove(self.cgroup)  # type: ignore[union-attr]
            self.cgroup = None


_LIVE: weakref.WeakSet = weakref.WeakSet()  # every Sandbox of this process


def _close_all_sandboxes() -> None:
    """Close every live :class:`Sandbox` of this process (test sessions check for leftovers)."""
    for sandbox in list(_LIVE):
        sandbox.close()


def _close_zygotes(zygotes: dict, owner: int) -> None:
    """Kill the fork servers (only in the process that started them, not in a forked copy)."""
    if os.getpid() != owner:
        return
    for zygote in list(zygotes.values()):
        zygote.kill()
    zygotes.clear()


# -- the sandbox ------------------------------------------------------------------------------------


class Sandbox:
    """Run batches of :class:`Job` in parallel (worker pool sized to the CPUs).

    >>> sb = Sandbox(SandboxConfig(allow_code_execution=True))
    >>> sb.run_batch([Job("print(input()[::-1])", stdin="abc\\n", expected_output="cba")])[0].status
    'passed'
    """

    def __init__(self, config: SandboxConfig | None = None, **overrides) -> None:
        if config is None:
            config = SandboxConfig(**overrides)
        elif overrides:
            raise TypeError("pass either a SandboxConfig or keyword overrides, not both")
        self.config = config
        require_code_execution(config.allow_code_execution)
        if config.num_workers is None:
            try:
                config.num_workers = max(1, len(os.sched_getaffinity(0)))
            except AttributeError:  # pragma: no cover - non-Linux
                config.num_workers = max(1, os.cpu_count() or 1)
        self._slots: list[int] = list(range(config.num_workers))
        self._slot_lock = threading.Lock()
        self._probed = False
        self._probe_lock = threading.Lock()
        self._zygotes: dict[int, _Zygote] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        # fork servers die with this object, at exit, and with this process (--die-with-parent)
        self._owner = os.getpid()
        self._finalizer = weakref.finalize(self, _close_zygotes, self._zygotes, os.getpid())
        self._use_zygote = False
        _LIVE.add(self)
        self._bwrap: str | None = None
        self._bwrap_base: tuple[list[str], list[str]] = ([], [])
        self._rebind: list[str] = []  # binds that a job's fresh tmpfs covers (fork server)
        if config.isolation == "bwrap":
            if not sys.platform.startswith("linux"):
                raise SandboxUnavailableError(self._unavailable_message("not Linux"))
            self._bwrap = config.bwrap or shutil.which("bwrap")
            if self._bwrap is None or not os.access(self._bwrap, os.X_OK):
                raise SandboxUnavailableError(self._unavailable_message(
                    f"no bwrap executable ({config.bwrap or 'bwrap not on PATH'})"))
            self._bwrap_base = self._bwrap_args()
        else:
            warnings.warn(
                "kwaiformers sandbox in 'process' mode: rlimits and process-tree cleanup only, "
                "NO network, file-system or IPC isolation", RuntimeWarning, stacklevel=2)
        if config.isolation == "bwrap" and config.zygote is not False:
            self._use_zygote = os.geteuid() == 0
            if config.zygote and not self._use_zygote:
                raise SandboxUnavailableError(
                    "SandboxConfig(zygote=True) needs bubblewrap run as root (the fork server "
                    "sets up each job's namespaces and then switches it to its own uid); use "
                    "zygote=None or False to run one bubblewrap sandbox per job")
        self.cgroups: MemoryCgroups | None = None
        if config.memory_cgroup != "off":
            self.cgroups = MemoryCgroups.detect()
        if self.cgroups is None:
            if config.memory_cgroup == "require":
                raise SandboxUnavailableError(
                    "SandboxConfig(memory_cgroup='require') but no writable memory cgroup (v2 "
                    "memory controller delegated to this process, or the v1 memory hierarchy)")
            self._fit_memory_to_ram()

    def _fit_memory_to_ram(self) -> None:
        c = self.config
        budget = int(_mem_total_mb() * 0.8)
        need = c.num_workers * c.max_processes * c.memory_mb
        if need <= budget:
            return
        fitted = max(1, budget // (c.num_workers * c.memory_mb))
        warnings.warn(
            f"kwaiformers sandbox: no memory cgroup, so memory is bounded per process only; "
            f"num_workers x max_processes x memory_mb = {c.num_workers} x {c.max_processes} x "
            f"{c.memory_mb} MiB exceeds 80% of RAM ({budget} MiB): max_processes lowered to "
            f"{fitted}", RuntimeWarning, stacklevel=3)
        c.max_processes = fitted

    @staticmethod
    def _unavailable_message(why: str) -> str:
        return (
            f"the kwaiformers sandbox needs bubblewrap (bwrap) and Linux namespaces and could not "
            f"use them: {why}. Fix: {INSTALL_HINT}; bwrap must be able to create namespaces "
            f"(root, or unprivileged user namespaces enabled). Or explicitly accept the weaker "
            f"'process' isolation (rlimits + process-tree kill, no network/file-system isolation) "
            f"with SandboxConfig(isolation='process') or {ISOLATION_ENV_VAR}=process."
        )

    # -- public API --------------------------------------------------------------------------
    def run(self, job: Job) -> Result:
        """Run one job (blocking)."""
        return self.run_batch([job])[0]

    def run_batch(self, jobs: Iterable[Job], progress: bool = False,
                  desc: str = "sandbox") -> list[Result]:
        """Run ``jobs`` in parallel; results come back in the same order."""
        jobs = list(jobs)
        for i, job in enumerate(jobs):
            if not isinstance(job, Job):
                raise TypeError(f"jobs[{i}] must be a kwaiformers.sandbox.Job, got {type(job)}")
        self._after_fork()
        self._probe()
        if not jobs:
            return []
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(jobs), desc=desc)
        pool = self._worker_pool()
        futures = [pool.submit(self._run_in_slot, job) for job in jobs]
        results = []
        for fut in futures:
            results.append(fut.result())
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        return results

    @property
    def isolation(self) -> str:
        return str(self.config.isolation)

    @property
    def memory_limit_scope(self) -> str:
        """``"job (cgroup vN)"`` or ``"process (rlimit)"``."""
        if self.cgroups is None:
            return "process (rlimit)"
        return f"job (cgroup v{self.cgroups.version})"

    @property
    def uses_zygote(self) -> bool:
        """Whether jobs are forked by a fork server per slot (else one bubblewrap per job)."""
        return self._use_zygote

    @property
    def uid_range(self) -> range:
        """The unprivileged uids this process's jobs run under (one fresh uid per job)."""
        return _uid_block(self.config.uid_base)

    def close(self) -> None:
        """Stop the fork servers and the worker threads and remove this sandbox's cgroup
        directory (also done at garbage collection and at exit)."""
        self._finalizer()
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)
        if self.cgroups is not None:
            self.cgroups.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    # -- internals ---------------------------------------------------------------------------
    def _worker_pool(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:  # long-lived threads: a fork server dies with the thread
                # that started it (bubblewrap's --die-with-parent is a per-thread death signal)
                self._pool = ThreadPoolExecutor(max_workers=self.config.num_workers,
                                                thread_name_prefix="kwf-sandbox")
            return self._pool

    def _probe(self) -> None:
        with self._probe_lock:  # concurrent first batches probe once
            if not self._probed:
                self._probe_locked()

    def _probe_locked(self) -> None:
        if self.config.isolation == "bwrap":
            probe = Job("print('ok')", timeout=10.0)
            if self._use_zygote:  # in a worker thread and a slot, like every job
                result = self._worker_pool().submit(self._run_in_slot, probe).result()
                if result.status != "passed" or result.stdout.strip() != "ok":
                    why = result.reason or result.stderr.strip()[-500:] or result.status
                    if self.config.zygote:
                        raise SandboxUnavailableError(f"the sandbox fork server failed: {why}")
                    warnings.warn(f"kwaiformers sandbox: the fork server failed ({why}); "
                                  f"running one bubblewrap sandbox per job (slower)",
                                  RuntimeWarning, stacklevel=3)
                    _close_zygotes(self._zygotes, os.getpid())
                    self._use_zygote = False
            if not self._use_zygote:
                result = self._worker_pool().submit(self._run_in_slot, probe).result()
                if result.status != "passed" or result.stdout.strip() != "ok":
                    raise SandboxUnavailableError(self._unavailable_message(
                        result.reason or result.stderr.strip()[-500:] or result.status))
        self._probed = True

    def _after_fork(self) -> None:
        """In a forked copy of the process that made this sandbox: own fork servers and worker
        threads (the parent's belong to the parent; threads do not survive a fork)."""
        if os.getpid() == self._owner:
            return
        self._owner = os.getpid()
        self._zygotes = {}
        self._finalizer = weakref.finalize(self, _close_zygotes, self._zygotes, self._owner)
        self._pool, self._pool_lock, self._probe_lock = None, threading.Lock(), threading.Lock()
        self._slots, self._slot_lock = list(range(self.config.num_workers)), threading.Lock()

    def _run_in_slot(self, job: Job) -> Result:
        with self._slot_lock:
            slot = self._slots.pop()
        try:
            return self._execute(job, slot)
        finally:
            with self._slot_lock:
                self._slots.append(slot)

    def _site_dirs(self) -> list[str]:
        if not self.config.site_packages:
            return []
        paths = sysconfig.get_paths()
        if os.path.realpath(self.config.python) != os.path.realpath(sys.executable):
            return []  # another interpreter: its own layout is unknown here
        dirs = []
        for key in ("purelib", "platlib"):
            if os.path.isdir(paths[key]) and paths[key] not in dirs:
                dirs.append(paths[key])
        return dirs

    def _bwrap_args(self) -> tuple[list[str], list[str]]:
        """The job-independent parts of the bwrap command line: before and after the job's
        ``/tmp`` tmpfs (binds below ``/tmp``, e.g. a CI venv, must come after it)."""
        c = self.config
        python = os.path.abspath(c.python)
        # the interpreter: its (venv) prefix and the base installation, read-only
        roots = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)} if \
            os.path.realpath(python) == os.path.realpath(sys.executable) else set()
        roots.add(os.path.dirname(os.path.dirname(os.path.realpath(python))))
        if python != os.path.realpath(python):
            roots.add(os.path.dirname(os.path.dirname(python)))
        roots.update(self._site_dirs())
        roots.update(os.path.realpath(p) for p in c.ro_binds)
        roots = {r for r in roots if not any(r != o and r.startswith(o.rstrip("/") + "/")
                                             for o in roots)}  # inside another bind already
        args = [self._bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
                "--unshare-cgroup-try", "--die-with-parent", "--new-session"]
        if os.geteuid() == 0:
            # no user namespace: bwrap mounts with root's rights, then the prelude switches to
            # an unprivileged uid; keep only the capabilities that switch needs
            args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        else:
            args += ["--unshare-user", "--disable-userns"]
        args += ["--ro-bind", "/usr", "/usr"]
        for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            if os.path.islink(top):
                args += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                args += ["--ro-bind", top, top]
        for etc in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime"):
            args += ["--ro-bind-try", etc, etc]
        args += ["--proc", "/proc", "--dev", "/dev",
                 "--perms", "01777", "--size", str(4 << 20), "--tmpfs", "/dev/shm",
                 "--perms", "0755", "--size", str(1 << 20), "--tmpfs", "/run",
                 "--perms", "01777", "--size", str(1 << 20), "--tmpfs", "/var/tmp"]
        self._rebind = [r for r in roots if r != "/tmp" and any(
            r.startswith(top + "/") for top in ("/tmp", "/var/tmp", "/run", "/dev/shm"))]
        tail: list[str] = []
        made: set[str] = {"/", "/usr", "/tmp", "/dev", "/proc", "/etc", "/run", "/var"}
        for root in sorted(r for r in roots if r not in ("/", "/usr", "/tmp")
                           and not r.startswith(("/usr/", "/proc/", "/dev/"))):
            parts = root.strip("/").split("/")
            for i in range(1, len(parts)):
                parent = "/" + "/".join(parts[:i])
                if parent not in made:
                    tail += ["--perms", "0755", "--dir", parent]
                    made.add(parent)
            tail += ["--ro-bind", root, root]
            made.add(root)
        tail += ["--ro-bind", _PRELUDE, _PRELUDE_IN_SANDBOX]
        return args, tail

    def _env(self, home: str) -> dict[str, str]:
        return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
                "HOME": home, "TMPDIR": home, "OMP_NUM_THREADS": "1",
                "PYTHONIOENCODING": "utf-8"}

    def _spec(self, job: Job, timeout: float, slot: int, workdir: str) -> dict:
        c = self.config
        drop_uid = None
        if c.isolation == "bwrap" and os.geteuid() == 0:
            drop_uid = _next_uid(c.uid_base)
        return {
            "mode": c.isolation,
            "workdir": workdir,
            "memory_mb": c.memory_mb + job.extra_memory_mb,
            "cpu_seconds": job.cpu_seconds or int(math.ceil(timeout)) + 1,
            "file_size_mb": c.file_size_mb,
            "max_open_files": c.max_open_files,
            "max_processes": c.max_processes if drop_uid is not None or os.geteuid() else None,
            "drop_uid": drop_uid,
            "site_dirs": self._site_dirs(),
        }

    def _disk_bytes(self, job: Job) -> int:
        data = sum(len(d) for d in job.files.values()) + len(job.program)
        return (self.config.disk_mb << 20) + data + (1 << 20)

    def _execute(self, job: Job, slot: int) -> Result:
        c = self.config
        timeout = job.timeout if job.timeout is not None else c.default_timeout
        if self._use_zygote:
            return self._execute_zygote(job, slot, timeout)
        cgroup = None
        if self.cgroups is not None:
            cgroup = self.cgroups.create(self._memory_limit(job))
        try:
            if c.isolation == "bwrap":
                return self._execute_bwrap(job, slot, timeout, cgroup)
            return self._execute_process(job, slot, timeout, cgroup)
        finally:
            if cgroup is not None:
                self.cgroups.remove(cgroup)  # type: ignore[union-attr]

    @staticmethod
    def _memfd(name: str, data: bytes) -> int:
        fd = os.memfd_create(name, 0)  # no MFD_CLOEXEC: only pass_fds reach the child
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.lseek(fd, 0, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _with_cgroup(self, cmd: list[str], cgroup: str | None) -> list[str]:
        if cgroup is None:
            return cmd
        # the launcher joins the job's cgroup before exec, so every process of the job is in it
        return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"',
                MemoryCgroups.procs_file(cgroup), *cmd]

    def _execute_bwrap(self, job: Job, slot: int, timeout: float, cgroup: str | None) -> Result:
        c = self.config
        stdin = job.stdin.encode() if isinstance(job.stdin, str) else job.stdin
        files = {"main.py": job.program.encode(), **{
            name: data.encode() if isinstance(data, str) else data
            for name, data in job.files.items()}}
        fds: list[int] = []
        try:
            head, tail = self._bwrap_base
            args = [*head, "--perms", "01777", "--size", str(self._disk_bytes(job)), "--tmpfs",
                    _WORKDIR, *tail]
            for name, data in files.items():
                fds.append(self._memfd(name, data))
                args += ["--file", str(fds[-1]), f"{_WORKDIR}/{name}"]
            args += ["--chdir", _WORKDIR, "--clearenv"]
            for key, value in self._env(_WORKDIR).items():
                args += ["--setenv", key, value]
            spec = self._spec(job, timeout, slot, _WORKDIR)
            args += ["--", os.path.abspath(c.python), "-I", "-S", "-B", _PRELUDE_IN_SANDBOX,
                     json.dumps(spec)]
            stdin_fd = self._memfd("stdin", stdin)
            fds.append(stdin_fd)
            start = time.monotonic()
            proc = subprocess.Popen(
                self._with_cgroup(args, cgroup), stdin=stdin_fd, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, cwd="/", env={}, start_new_session=True,
                pass_fds=fds[:-1], close_fds=True)
        finally:
            for fd in fds:
                os.close(fd)
        out, err, overflow, timed_out, status, usage = self._collect(
            proc, start + timeout + c.startup_grace)
        elapsed = time.monotonic() - start
        report: dict = {"cpu_time": usage.ru_utime + usage.ru_stime if usage else None}
        if os.WIFSIGNALED(status):  # bwrap itself was killed (timeout, output cap)
            report["signal"] = os.WTERMSIG(status)
        else:
            code = os.WEXITSTATUS(status)
            if 128 < code <= 128 + 64:  # bwrap reports "killed by signal s" as 128 + s
                report["signal"] = code - 128
            else:
                report["exit_code"] = code
            if code == 1 and err.startswith("bwrap: "):
                report = {"setup_error": err.strip()[:500]}
        oom = cgroup is not None and self.cgroups.oom_killed(cgroup)  # type: ignore[union-attr]
        peak = self.cgroups.peak_mb(cgroup) if cgroup is not None else None  # type: ignore[union-attr]
        return self._classify(job, timeout, report, out, err, overflow, timed_out, elapsed,
                              oom, peak)

    def _zygote_for(self, slot: int) -> _Zygote:
        """The slot's fork server, started (again) when missing or dead."""
        zygote = self._zygotes.get(slot)
        if zygote is not None and zygote.alive():
            return zygote
        if zygote is not None:
            zygote.kill()
            del self._zygotes[slot]
        c = self.config
        control, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        control.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        spec = {"control_fd": child_end.fileno(), "preload": list(c.preload),
                "rebind": self._rebind}
        head, tail = self._bwrap_base
        args = [*head, "--cap-add", "CAP_SYS_ADMIN", "--cap-add", "CAP_SETPCAP",
                "--perms", "0755", "--size", str(1 << 20), "--tmpfs", _WORKDIR, *tail,
                "--ro-bind", _ZYGOTE, _ZYGOTE_IN_SANDBOX, "--chdir", _WORKDIR, "--clearenv"]
        for key, value in self._env(_WORKDIR).items():
            args += ["--setenv", key, value]
        args += ["--", os.path.abspath(c.python), "-I", "-S", "-B", _ZYGOTE_IN_SANDBOX,
                 json.dumps(spec)]
        try:
            zygote = _Zygote(args, control, child_end, start_timeout=60.0)
        except BaseException:
            control.close()
            child_end.close()
            raise
        try:
            if self.cgroups is not None:  # its jobs are born in the slot's memory cgroup
                zygote.cgroups, zygote.cgroup = self.cgroups, self.cgroups.create_slot()
                self.cgroups.move(zygote.host_pid, zygote.cgroup)
        except OSError:
            zygote.kill()
            raise
        self._zygotes[slot] = zygote
        return zygote

    def _memory_limit(self, job: Job) -> int:
        """Bytes for all processes of a job and its tmpfs together (memory cgroup limit)."""
        c = self.config
        return (c.memory_mb + job.extra_memory_mb + 32) * (1 << 20) + self._disk_bytes(job)

    def _tmpfs_sizes(self, job: Job) -> dict[str, int]:
        return {"/tmp": self._disk_bytes(job), "/var/tmp": 1 << 20, "/run": 1 << 20,
                "/dev/shm": 4 << 20}

    def _execute_zygote(self, job: Job, slot: int, timeout: float) -> Result:
        """The job forked by the slot's fork server (see ``_zygote.py``); a fork server that
        fails before the job started is replaced and the job sent again, once.

        Memory: the fork server and its jobs share the slot's memory cgroup; before each job its
        limit becomes the job's limit plus what the cgroup holds at that moment (the idle fork
        server), the OOM counter and the peak are read relative to that start."""
        c = self.config
        stdin = job.stdin.encode() if isinstance(job.stdin, str) else job.stdin
        files = {"main.py": job.program.encode(), **{
            name: data.encode() if isinstance(data, str) else data
            for name, data in job.files.items()}}
        header = {"spec": self._spec(job, timeout, slot, _WORKDIR), "tmpfs": self._tmpfs_sizes(job),
                  "files": [[name, len(data)] for name, data in files.items()],
                  "trusted": job.trusted_program}
        for attempt in range(2):
            start = time.monotonic()
            out_r = err_r = -1
            zygote = None
            try:
                zygote = self._zygote_for(slot)
                cgroup, base, ooms, peak_reset = zygote.cgroup, 0, 0, False
                if cgroup is not None:
                    cgroups = self.cgroups
                    base = cgroups.usage(cgroup)  # type: ignore[union-attr]
                    cgroups.set_limit(cgroup, base + self._memory_limit(job))  # type: ignore[union-attr]
                    ooms = cgroups.oom_kills(cgroup)  # type: ignore[union-attr]
                    peak_reset = cgroups.reset_peak(cgroup)  # type: ignore[union-attr]
                stdin_fd = self._memfd("stdin", stdin)
                out_r, out_w = os.pipe2(os.O_CLOEXEC)
                err_r, err_w = os.pipe2(os.O_CLOEXEC)
                try:
                    zygote.send(header, (stdin_fd, out_w, err_w), list(files.values()))
                finally:
                    for fd in (stdin_fd, out_w, err_w):
                        os.close(fd)
                reply = zygote.recv(time.monotonic() + 60.0)
                if not reply.get("forked"):
                    raise ZygoteError(f"unexpected answer {reply!r}")
            except (OSError, ZygoteError, ValueError) as exc:
                for fd in (out_r, err_r):
                    if fd >= 0:
                        os.close(fd)
                if zygote is not None:
                    zygote.kill()
                self._zygotes.pop(slot, None)
                if attempt == 0:
                    continue
                return self._classify(job, timeout, {"setup_error": f"sandbox fork server: {exc}"},
                                      "", "", False, False, time.monotonic() - start)
            break
        out, err, overflow, timed_out, report = self._collect_zygote(
            zygote, out_r, err_r, start + timeout + c.startup_grace, slot)
        elapsed = time.monotonic() - start
        if report is None:
            report = {}
        oom, peak = False, None
        if cgroup is not None:
            cgroups = self.cgroups
            oom = cgroups.oom_kills(cgroup) > ooms  # type: ignore[union-attr]
            top = cgroups._peak(cgroup) if peak_reset else None  # type: ignore[union-attr]
            peak = None if top is None else max(0, top - base) / (1 << 20)
        return self._classify(job, timeout, report, out, err, overflow, timed_out, elapsed,
                              oom, peak)

    def _collect_zygote(self, zygote: _Zygote, out_r: int, err_r: int, deadline: float,
                        slot: int):
        """Capped stdout/stderr of a forked job and its report; past the deadline or the output
        cap the fork server kills the job (all its processes: its pid namespace ends)."""
        c = self.config
        buffers = {out_r: bytearray(), err_r: bytearray()}
        caps = {out_r: c.max_output_bytes, err_r: c.max_stderr_bytes}
        open_fds = [out_r, err_r]
        report = None
        overflow = timed_out = kill_sent = False
        hard_deadline = None
        try:
            while open_fds or report is None:
                now = time.monotonic()
                if (overflow or now >= deadline) and not kill_sent and report is None:
                    timed_out = timed_out or not overflow
                    zygote.send({"kill": True})
                    kill_sent = True
                if kill_sent or report is not None:
                    if hard_deadline is None:
                        hard_deadline = now + 10.0
                    if now >= hard_deadline:
                        if report is None:
                            raise ZygoteError("the job did not end after being killed")
                        break  # a descendant holds the pipes open past the end: stop reading
                    limit = hard_deadline
                else:
                    limit = deadline
                poller = select.poll()
                for fd in open_fds:
                    poller.register(fd, select.POLLIN)
                if report is None:
                    poller.register(zygote.sock, select.POLLIN)
                wait_ms = max(1, int(min(limit - now, 0.5) * 1000))
                for fd, _ in poller.poll(wait_ms):
                    if fd == zygote.sock.fileno():
                        message = zygote.recv(time.monotonic() + 10.0)
                        report = message.get("done")
                        if report is None:
                            raise ZygoteError(f"unexpected answer {message!r}")
                        continue
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        open_fds.remove(fd)
                        continue
                    buf = buffers[fd]
                    room = caps[fd] - len(buf)
                    if room > 0:
                        buf.extend(chunk[:room])
                    if len(chunk) > room and fd == out_r:
                        overflow = True
        except (OSError, ZygoteError, ValueError):
            zygote.kill()  # the job dies with it (its processes have it as death signal)
            self._zygotes.pop(slot, None)
        finally:
            os.close(out_r)
            os.close(err_r)
        decode = lambda b: bytes(b).decode("utf-8", errors="replace")  # noqa: E731
        return decode(buffers[out_r]), decode(buffers[err_r]), overflow, timed_out, report

    def _execute_process(self, job: Job, slot: int, timeout: float, cgroup: str | None) -> Result:
        c = self.config
        workdir = tempfile.mkdtemp(prefix="kwf-sandbox-", dir=c.tmp_dir)
        status_r = status_w = -1
        try:
            with open(os.path.join(workdir, "main.py"), "w", encoding="utf-8") as f:
                f.write(job.program)
            stdin = job.stdin.encode() if isinstance(job.stdin, str) else job.stdin
            with open(os.path.join(workdir, "stdin.txt"), "wb") as f:
                f.write(stdin)
            for name, data in job.files.items():
                with open(os.path.join(workdir, name), "wb") as f:
                    f.write(data.encode() if isinstance(data, str) else data)
            spec = self._spec(job, timeout, slot, workdir)
            status_r, status_w = os.pipe()
            spec["status_fd"] = status_w
            start = time.monotonic()
            proc = subprocess.Popen(
                self._with_cgroup([c.python, "-I", "-S", "-B", _PRELUDE, json.dumps(spec)],
                                  cgroup),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                cwd=workdir, env=self._env(workdir), start_new_session=True,
                pass_fds=(status_w,), close_fds=True)
            os.close(status_w)
            status_w = -1
            out, err, overflow, timed_out, _, _ = self._collect(
                proc, start + timeout + c.startup_grace)
            elapsed = time.monotonic() - start
            with os.fdopen(status_r, "rb") as f:
                status_r = -1
                raw = f.read().decode(errors="replace").strip().splitlines()
            try:
                report = json.loads(raw[-1]) if raw else {}
            except json.JSONDecodeError:
                report = {}
            oom = cgroup is not None and self.cgroups.oom_killed(cgroup)  # type: ignore[union-attr]
            peak = self.cgroups.peak_mb(cgroup) if cgroup is not None else None  # type: ignore[union-attr]
            return self._classify(job, timeout, report, out, err, overflow, timed_out, elapsed,
                                  oom, peak)
        finally:
            for fd in (status_r, status_w):
                if fd >= 0:
                    os.close(fd)
            shutil.rmtree(workdir, ignore_errors=True)

    def _collect(self, proc: subprocess.Popen, deadline: float):
        """Read capped stdout/stderr until both close or the deadline; kill the process group
        on timeout or output overflow; reap with ``wait4`` (CPU time of the reaped tree)."""
        c = self.config
        buffers = {proc.stdout: bytearray(), proc.stderr: bytearray()}
        caps = {proc.stdout: c.max_output_bytes, proc.stderr: c.max_stderr_bytes}
        overflow = timed_out = False
        with selectors.DefaultSelector() as sel:
            for stream in buffers:
                os.set_blocking(stream.fileno(), False)
                sel.register(stream, selectors.EVENT_READ)
            while sel.get_map():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    timed_out = True
                    break
                for key, _ in sel.select(timeout=min(remaining, 0.5)):
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        sel.unregister(key.fileobj)
                        continue
                    buf = buffers[key.fileobj]
                    room = caps[key.fileobj] - len(buf)
                    buf.extend(chunk[:max(room, 0)])
                    if len(chunk) > room and key.fileobj is proc.stdout:
                        overflow = True
                if overflow:
                    break
        if timed_out or overflow:
            self._kill(proc)
        status, usage = self._wait(proc, max(1.0, deadline - time.monotonic()))
        if status is None:  # it closed its pipes but kept running
            timed_out = True
            self._kill(proc)
            status, usage = self._wait(proc, None)
        for stream in buffers:
            stream.close()
        decode = lambda b: bytes(b).decode("utf-8", errors="replace")  # noqa: E731
        return (decode(buffers[proc.stdout]), decode(buffers[proc.stderr]), overflow, timed_out,
                status, usage)

    @staticmethod
    def _wait(proc: subprocess.Popen, timeout: float | None):
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.0005
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG if deadline else 0)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                return status, usage
            if time.monotonic() >= deadline:  # type: ignore[operator]
                return None, None
            time.sleep(delay)
            delay = min(delay * 2, 0.02)

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        for kill in (os.killpg, os.kill):
            try:
                kill(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def _classify(self, job: Job, timeout: float, report: dict, out: str, err: str,
                  overflow: bool, timed_out: bool, elapsed: float, oom: bool = False,
                  peak: float | None = None) -> Result:
        def result(status: Status, reason: str = "") -> Result:
            return Result(status, out, err, elapsed, report.get("exit_code"), report.get("signal"),
                          report.get("cpu_time"), reason, overflow, peak)

        if "setup_error" in report:
            return result("killed", report["setup_error"])
        if overflow:
            return result("killed", f"output exceeded {self.config.max_output_bytes} bytes")
        if timed_out:
            return result("timeout", "wall-clock timeout")
        if not report or ("exit_code" not in report and "signal" not in report):
            return result("killed", "sandbox launcher exited without a report")
        sig = report.get("signal")
        cpu_limit = job.cpu_seconds or int(math.ceil(timeout)) + 1
        failed = sig is not None or report.get("exit_code") != 0
        if oom and failed:
            return result("memory", "job memory limit (cgroup) exceeded")
        if sig == getattr(signal, "SIGXFSZ", -1):
            return result("runtime_error", "file size limit exceeded")
        if sig == signal.SIGXCPU or (
                sig == signal.SIGKILL and (report.get("cpu_time") or 0) >= cpu_limit - 0.05):
            return result("timeout", "CPU time limit")
        if failed and ("MemoryError" in err[-2000:] or "Cannot allocate memory" in err[-2000:]):
            return result("memory", "memory limit")
        if sig is not None:
            return result("killed", f"terminated by signal {sig}")
        if report.get("exit_code") != 0:
            tail = err.strip().splitlines()[-1] if err.strip() else ""
            return result("runtime_error", tail[-500:])
        if job.expected_output is not None:
            compare = job.compare or outputs_match
            if not compare(out, job.expected_output):
                return result("wrong_answer")
        return result("passed")


_DEFAULT: dict[tuple, Sandbox] = {}


def run_batch(jobs: Sequence[Job], config: SandboxConfig | None = None,
              progress: bool = False) -> list[Result]:
    """Module-level convenience: run ``jobs`` with a (cached) default :class:`Sandbox`."""
    if config is not None:
        return Sandbox(config).run_batch(jobs, progress=progress)
    key = (os.environ.get(ALLOW_ENV_VAR), os.environ.get(ISOLATION_ENV_VAR))
    if key not in _DEFAULT:
        _DEFAULT[key] = Sandbox()
    return _DEFAULT[key].run_batch(jobs, progress=progress)
