"""Batch executor for untrusted Python programs (model generations), stdlib only.

Every :class:`Job` runs in a fresh child process (``python -I``, own session and process group,
scrubbed environment, private temporary working directory removed afterwards) under rlimits
(CPU seconds, address space, processes, file size, open files) and a wall-clock timeout that kills
the whole process tree. Captured stdout/stderr are capped.

Isolation modes (``SandboxConfig.isolation``):

- ``"namespaces"`` (default; Linux as root): new network namespace (no interface is up, so every
  connection fails with ``ENETUNREACH``), new pid namespace (the kernel kills every leftover
  process, ``setsid`` daemons included, when the job ends), new mount namespace with the whole
  file system remounted read-only, a fresh ``/proc``, secret paths masked and a size-limited
  tmpfs as working directory. The program runs with an unused real uid (so ``RLIMIT_NPROC``
  bounds fork bombs), no capabilities and ``no_new_privs``. If namespaces cannot be created the
  sandbox **refuses** (:class:`SandboxUnavailableError`): it never silently runs unisolated.
- ``"process"`` (explicit opt-in, e.g. non-root machines): rlimits, process group, scrubbed env,
  temporary cwd and a child-subreaper that kills leftover descendants; **no network or
  file-system isolation**. Select it with ``SandboxConfig(isolation="process")`` or
  ``KWAIFORMERS_SANDBOX_ISOLATION=process``.

Executing anything requires opting in, like ``evaluate``'s ``code_eval``:
``KWAIFORMERS_ALLOW_CODE_EXECUTION=1`` or ``SandboxConfig(allow_code_execution=True)``.
"""

from __future__ import annotations

import json
import math
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Literal

ALLOW_ENV_VAR = "KWAIFORMERS_ALLOW_CODE_EXECUTION"
ISOLATION_ENV_VAR = "KWAIFORMERS_SANDBOX_ISOLATION"
STATUSES = ("passed", "wrong_answer", "timeout", "runtime_error", "memory", "killed")
_PRELUDE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_prelude.py")
_SETUP_FAILED = 97

Status = Literal["passed", "wrong_answer", "timeout", "runtime_error", "memory", "killed"]


class CodeExecutionNotAllowedError(RuntimeError):
    """Raised when code execution was not explicitly allowed."""


class SandboxUnavailableError(RuntimeError):
    """Raised when the requested isolation cannot be set up on this machine."""


def _default_masked_paths() -> tuple[str, ...]:
    home = os.path.expanduser("~")
    names = (".ssh", ".aws", ".netrc", ".git-credentials", ".config", ".docker", ".huggingface",
             ".cache/huggingface", ".kube", ".gnupg", ".pypirc")
    return (*(os.path.join(home, n) for n in names), "/etc/shadow", "/etc/gshadow", "/etc/ssh")


@dataclass
class SandboxConfig:
    """Limits and policy of a :class:`Sandbox` (all sizes in MiB, times in seconds)."""

    isolation: Literal["namespaces", "process"] | None = None  # None: env var, else namespaces
    allow_code_execution: bool | None = None  # None: read KWAIFORMERS_ALLOW_CODE_EXECUTION
    num_workers: int | None = None  # None: number of usable CPUs
    default_timeout: float = 6.0
    startup_grace: float = 2.0  # extra wall time for interpreter start-up, not given to CPU
    memory_mb: int = 1024
    max_processes: int = 32
    file_size_mb: int = 16
    max_open_files: int = 64
    disk_mb: int = 64
    max_files: int = 1024
    max_output_bytes: int = 16 * 1024 * 1024
    max_stderr_bytes: int = 64 * 1024
    python: str = sys.executable
    tmp_dir: str | None = None
    uid_base: int = 2_000_000_000
    masked_paths: tuple[str, ...] = field(default_factory=_default_masked_paths)
    fork_server: bool = True  # fork jobs from a pre-started launcher (no interpreter start-up)

    def __post_init__(self) -> None:
        if self.isolation is None:
            self.isolation = os.environ.get(ISOLATION_ENV_VAR, "namespaces")  # type: ignore[assignment]
        if self.isolation not in ("namespaces", "process"):
            raise ValueError(
                f"isolation must be 'namespaces' or 'process', got {self.isolation!r}")
        for name in ("memory_mb", "max_processes", "file_size_mb", "max_open_files", "disk_mb",
                     "max_files", "max_output_bytes", "max_stderr_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"SandboxConfig.{name} must be a positive int, got {value!r}")
        if not self.default_timeout > 0 or self.startup_grace < 0:
            raise ValueError("SandboxConfig.default_timeout must be > 0 and startup_grace >= 0")
        if self.num_workers is not None and self.num_workers < 1:
            raise ValueError(f"SandboxConfig.num_workers must be >= 1, got {self.num_workers}")


@dataclass
class Job:
    """One program run: Python ``program`` source, its ``stdin``, a wall ``timeout`` (seconds).

    ``expected_output`` (optional) turns a clean exit into ``passed``/``wrong_answer`` using
    ``compare`` (default :func:`outputs_match`, LiveCodeBench's stdin/stdout rule). ``files``
    are extra files (name -> text/bytes) placed next to ``main.py`` (the private tmpfs grows by
    their size). ``cpu_seconds`` defaults to ``ceil(timeout) + 1``.
    """

    program: str
    stdin: str | bytes = ""
    timeout: float | None = None
    expected_output: str | None = None
    files: Mapping[str, str | bytes] = field(default_factory=dict)
    cpu_seconds: int | None = None
    compare: Callable[[str, str], bool] | None = None
    extra_memory_mb: int = 0  # added to SandboxConfig.memory_mb (e.g. for large test data)

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
    """Outcome of a :class:`Job`. ``status`` is one of :data:`STATUSES`; ``time`` is wall seconds."""

    status: Status
    stdout: str
    stderr: str
    time: float
    exit_code: int | None = None
    signal: int | None = None
    cpu_time: float | None = None
    reason: str = ""
    truncated: bool = False

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
        g_tokens, w_tokens = g.split(), w.split()
        if len(g_tokens) != len(w_tokens):
            return False
        try:
            if any(Decimal(a) != Decimal(b) for a, b in zip(g_tokens, w_tokens)):
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


class _ServerDown(RuntimeError):
    """The fork server could not take a job."""


class _ForkServer:
    """A pre-started ``_prelude.py --serve`` process that forks one launcher per job.

    Jobs then skip the interpreter start-up and the imports (the fork server preloads the
    modules of the LiveCodeBench harness); isolation is unchanged, every launcher still creates
    its own namespaces, limits and privileges."""

    def __init__(self, python: str) -> None:
        import socket

        self._lock = threading.Lock()
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock = parent
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
               "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"}
        self.proc = subprocess.Popen(
            [python, "-I", "-B", _PRELUDE, "--serve", str(child.fileno())],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=env, cwd="/", start_new_session=True, pass_fds=(child.fileno(),), close_fds=True)
        child.close()

    def launch(self, spec: dict, fds: Sequence[int]) -> int:
        import socket

        with self._lock:
            socket.send_fds(self.sock, [json.dumps(spec).encode()], list(fds))
            reply = self.sock.recv(64)
        if not reply:
            raise RuntimeError("sandbox fork server exited")
        return int(reply)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        try:
            self.sock.close()
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()


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
        self._uid_offset = (os.getpid() % 100_000) * 256
        self._probed = False
        self._server: _ForkServer | None = None
        self._server_lock = threading.Lock()
        if config.isolation == "namespaces":
            if not sys.platform.startswith("linux"):
                raise SandboxUnavailableError(self._unavailable_message("not Linux"))
        elif config.isolation == "process":
            warnings.warn(
                "kwaiformers sandbox in 'process' mode: rlimits and process-tree cleanup only, "
                "NO network or file-system isolation", RuntimeWarning, stacklevel=2)

    @staticmethod
    def _unavailable_message(why: str) -> str:
        return (
            f"the kwaiformers sandbox needs Linux namespaces (network, pid, mount) and could not "
            f"create them: {why}. Run as root (as in CI), or explicitly accept the weaker "
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
        self._probe()
        if not jobs:
            return []
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(jobs), desc=desc)
        with ThreadPoolExecutor(max_workers=min(self.config.num_workers, len(jobs))) as pool:
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

    def close(self) -> None:
        """Stop the fork server (also done at interpreter exit)."""
        if self._server is not None:
            self._server.close()
            self._server = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    # -- internals ---------------------------------------------------------------------------
    def _get_server(self) -> _ForkServer | None:
        if not self.config.fork_server:
            return None
        with self._server_lock:
            if self._server is None or not self._server.alive():
                self._server = _ForkServer(self.config.python)
            return self._server
    def _probe(self) -> None:
        if self._probed:
            return
        if self.config.isolation == "namespaces":
            result = self._execute(Job("print('ok')", timeout=10.0), slot=0)
            if result.status != "passed" or result.stdout.strip() != "ok":
                raise SandboxUnavailableError(self._unavailable_message(
                    result.reason or result.stderr.strip()[-500:] or result.status))
        self._probed = True

    def _run_in_slot(self, job: Job) -> Result:
        with self._slot_lock:
            slot = self._slots.pop()
        try:
            return self._execute(job, slot)
        finally:
            with self._slot_lock:
                self._slots.append(slot)

    def _spec(self, workdir: str, status_fd: int, job: Job, timeout: float, slot: int) -> dict:
        c = self.config
        drop_uid = None
        if c.isolation == "namespaces" and os.geteuid() == 0:
            drop_uid = c.uid_base + self._uid_offset + slot
        return {
            "mode": c.isolation,
            "workdir": workdir,
            "status_fd": status_fd,
            "memory_mb": c.memory_mb + job.extra_memory_mb,
            "cpu_seconds": job.cpu_seconds or int(math.ceil(timeout)) + 1,
            "file_size_mb": c.file_size_mb,
            "max_open_files": c.max_open_files,
            "max_processes": c.max_processes if drop_uid is not None or os.geteuid() else None,
            "disk_mb": c.disk_mb + sum(len(d) for d in job.files.values()) // (1 << 20) + 1,
            "max_files": c.max_files,
            "masked_paths": [p for p in c.masked_paths if os.path.exists(p)],
            "drop_uid": drop_uid,
        }

    def _execute(self, job: Job, slot: int) -> Result:
        c = self.config
        timeout = job.timeout if job.timeout is not None else c.default_timeout
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
            spec = self._spec(workdir, -1, job, timeout, slot)
            env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
                   "HOME": workdir, "TMPDIR": workdir, "OMP_NUM_THREADS": "1",
                   "PYTHONIOENCODING": "utf-8"}
            spec["env"] = env
            server = self._get_server()
            if server is not None:
                try:
                    return self._execute_forked(server, job, spec, timeout)
                except _ServerDown:  # restart it for the next job; run this one directly
                    self._drop_server(server)
            status_r, status_w = os.pipe()
            spec["status_fd"] = status_w
            start = time.monotonic()
            proc = subprocess.Popen(
                [c.python, "-I", "-B", _PRELUDE, json.dumps(spec)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                cwd=workdir, env=env, start_new_session=True, pass_fds=(status_w,),
                close_fds=True)
            os.close(status_w)
            status_w = -1
            out, err, overflow, timed_out = self._collect(proc, start + timeout + c.startup_grace)
            elapsed = time.monotonic() - start
            with os.fdopen(status_r, "rb") as f:
                status_r = -1
                raw = f.read().decode(errors="replace").strip().splitlines()
            report = json.loads(raw[-1]) if raw else {}
            return self._classify(job, timeout, report, proc.returncode, out, err, overflow,
                                  timed_out, elapsed)
        finally:
            for fd in (status_r, status_w):
                if fd >= 0:
                    os.close(fd)
            shutil.rmtree(workdir, ignore_errors=True)

    def _execute_forked(self, server: _ForkServer, job: Job, spec: dict, timeout: float) -> Result:
        """Run through the fork server; the job ends when stdout, stderr and the status pipe
        are all closed (every process of the job is gone)."""
        c = self.config
        status_r, status_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        start = time.monotonic()
        try:
            pid = server.launch(dict(spec, status_fd=-1), [out_w, err_w, status_w])
        except BaseException as exc:
            for fd in (out_r, err_r, status_r):
                os.close(fd)
            if isinstance(exc, (OSError, RuntimeError, ValueError)):
                raise _ServerDown(str(exc)) from exc
            raise
        finally:
            for fd in (out_w, err_w, status_w):
                os.close(fd)
        deadline = start + timeout + c.startup_grace
        bufs = {out_r: bytearray(), err_r: bytearray(), status_r: bytearray()}
        caps = {out_r: c.max_output_bytes, err_r: c.max_stderr_bytes, status_r: 1 << 16}
        overflow = timed_out = False
        try:
            with selectors.DefaultSelector() as sel:
                for fd in bufs:
                    sel.register(fd, selectors.EVENT_READ)
                killed_at = None
                while sel.get_map():
                    now = time.monotonic()
                    if killed_at is None and (now >= deadline or overflow):
                        timed_out = not overflow
                        self._killpg(pid)
                        killed_at = now
                    if killed_at is not None and now - killed_at > 5:
                        break  # the pipes should have closed by now; give up on them
                    wait = 0.5 if killed_at is not None else min(deadline - now, 0.5)
                    for key, _ in sel.select(timeout=max(wait, 0.01)):
                        chunk = os.read(key.fd, 65536)
                        if not chunk:
                            sel.unregister(key.fd)
                            continue
                        buf = bufs[key.fd]
                        room = caps[key.fd] - len(buf)
                        buf.extend(chunk[:max(room, 0)])
                        if len(chunk) > room and key.fd == out_r:
                            overflow = True
        finally:
            for fd in (out_r, err_r, status_r):
                os.close(fd)
        elapsed = time.monotonic() - start
        decode = lambda b: bytes(b).decode("utf-8", errors="replace")  # noqa: E731
        raw = decode(bufs[status_r]).strip().splitlines()
        try:
            report = json.loads(raw[-1]) if raw else {}
        except json.JSONDecodeError:
            report = {}
        return self._classify(job, timeout, report, None, decode(bufs[out_r]),
                              decode(bufs[err_r]), overflow, timed_out, elapsed)

    @staticmethod
    def _killpg(pid: int) -> None:
        for kill in (os.killpg, os.kill):  # the group, and the launcher itself in case it has
            try:                            # not reached setsid() yet
                kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def _drop_server(self, server: _ForkServer) -> None:
        with self._server_lock:
            if self._server is server:
                self._server = None
        server.close()

    def _collect(self, proc: subprocess.Popen, deadline: float):
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
        try:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:  # e.g. it closed its pipes but kept running
            timed_out = True
            self._kill(proc)
            proc.wait()
        for stream in buffers:
            stream.close()
        decode = lambda b: bytes(b).decode("utf-8", errors="replace")  # noqa: E731
        return decode(buffers[proc.stdout]), decode(buffers[proc.stderr]), overflow, timed_out

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.kill()
        except ProcessLookupError:
            pass

    def _classify(self, job: Job, timeout: float, report: dict, returncode: int | None, out: str,
                  err: str,
                  overflow: bool, timed_out: bool, elapsed: float) -> Result:
        def result(status: Status, reason: str = "") -> Result:
            return Result(status, out, err, elapsed, report.get("exit_code"), report.get("signal"),
                          report.get("cpu_time"), reason, overflow)

        if "setup_error" in report:
            return result("killed", report["setup_error"])
        if overflow:
            return result("killed", f"output exceeded {self.config.max_output_bytes} bytes")
        if timed_out:
            return result("timeout", "wall-clock timeout")
        if not report:
            return result("killed", f"sandbox launcher exited with {returncode} without a report")
        sig = report.get("signal")
        cpu_limit = job.cpu_seconds or int(math.ceil(timeout)) + 1
        if sig == getattr(signal, "SIGXFSZ", -1):
            return result("runtime_error", "file size limit exceeded")
        if sig == signal.SIGXCPU or (
                sig == signal.SIGKILL and (report.get("cpu_time") or 0) >= cpu_limit - 0.05):
            return result("timeout", "CPU time limit")
        failed = sig is not None or report.get("exit_code") != 0
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
