"""Attacks on the sandbox's fork server (one per worker slot, forks every job): a job must not
leave anything behind for the next job of the same fork server -- processes, files, IPC objects,
interpreter state -- nor reach the fork server itself. One slot, so that consecutive jobs share
one fork server."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from sandbox_testkit import processes_with, processes_with_uid_in

from kwaiformers.sandbox import Job, Sandbox, SandboxConfig

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux sandbox")


_PROBED: list[str] = []


def _require_root_bwrap():
    if os.geteuid() != 0:
        pytest.skip("the fork server runs where bubblewrap runs as root (as in CI)")
    if shutil.which("bwrap") is None:
        pytest.fail("bubblewrap is not installed: apt-get install -y bubblewrap (.ci/run does)")
    if not _PROBED:
        from kwaiformers.sandbox import SandboxUnavailableError

        sb = Sandbox(SandboxConfig(allow_code_execution=True, num_workers=1, zygote=True))
        try:
            sb.run_batch([])
            _PROBED.append("")
        except SandboxUnavailableError as exc:  # e.g. a seccomp profile without unshare/mount
            _PROBED.append(str(exc))
        finally:
            sb.close()
    if _PROBED[0]:
        pytest.skip(f"this machine cannot run the sandbox fork server: {_PROBED[0]}")


@pytest.fixture(scope="module")
def one_slot():
    _require_root_bwrap()
    sb = Sandbox(SandboxConfig(allow_code_execution=True, num_workers=1, zygote=True,
                               startup_grace=1.0, max_processes=16))
    sb.run_batch([])
    assert sb.uses_zygote
    yield sb
    sb.close()


def _zygote_pid(sb: Sandbox) -> int:
    return sb._zygotes[0].proc.pid


_LEAVE_BEHIND = textwrap.dedent("""
    import ctypes, ctypes.util, os, signal, sys, time
    libc = ctypes.CDLL(ctypes.util.find_library('c'), use_errno=True)
    for path in ('/tmp/left.txt', '/var/tmp/left.txt', '/dev/shm/left.txt'):
        with open(path, 'w') as f:
            f.write('SECRET-OF-JOB-1')
    print('shm', libc.shmget(KEY, 4096, 0o1000 | 0o666) >= 0)
    print('msg', libc.msgget(KEY, 0o1000 | 0o666) >= 0)
    if os.fork() == 0:  # a detached daemon that outlives the job, ignoring SIGTERM/SIGHUP
        os.setsid()
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        if os.fork() == 0:
            os.execv('/bin/sleep', ['sleep', MARKER])
        os._exit(0)
    time.sleep(0.2)
    # corrupt everything of the interpreter that a fork copies
    import json, random, builtins, collections
    sys.modules['json'] = None
    sys.modules['collections'].Counter = None
    builtins.print = None
    builtins.len = lambda x: 42
    os.environ['KWF_LEFT'] = 'yes'
    os.environ['PATH'] = '/nonexistent'
    os.chdir('/')
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGALRM, lambda *a: None)
    sys.setrecursionlimit(50)
    sys.path.insert(0, '/tmp/evil')
    random.seed(12345)
    r, w = os.pipe()
    os.dup2(w, 42)
    os.umask(0o000)
    import atexit
    atexit.register(os.write, 1, b'atexit-of-job-1')
    sys.stdout.write('corrupted\\n')
    sys.stdout.flush()
""")

_INSPECT = textwrap.dedent("""
    import ctypes, ctypes.util, glob, os, random, signal, sys
    libc = ctypes.CDLL(ctypes.util.find_library('c'), use_errno=True)
    out = {}
    out['files'] = sorted(glob.glob('/tmp/*') + glob.glob('/var/tmp/*') + glob.glob('/dev/shm/*'))
    seen = []
    for path in glob.glob('/proc/*/root/*/left.txt') + glob.glob('/proc/*/cwd/left.txt'):
        try:
            seen.append(open(path).read())
        except OSError:
            pass
    out['seen_via_proc'] = seen
    out['shm'] = libc.shmget(KEY, 0, 0) >= 0
    out['msg'] = libc.msgget(KEY, 0) >= 0
    procs = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                procs[entry] = open(f'/proc/{entry}/cmdline', 'rb').read().decode(errors='replace')
            except OSError:
                procs[entry] = '?'
    out['procs'] = procs
    import json, collections, builtins
    out['json_ok'] = sys.modules.get('json') is not None and json.dumps([1]) == '[1]'
    out['counter_ok'] = collections.Counter is not None
    out['print_ok'] = builtins.print is not None and len([1, 2]) == 2
    out['env'] = ['KWF_LEFT' in os.environ, os.environ.get('PATH')]
    out['cwd'] = os.getcwd()
    out['sigterm_default'] = signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    out['sigalrm_default'] = signal.getsignal(signal.SIGALRM) == signal.SIG_DFL
    out['recursionlimit'] = sys.getrecursionlimit()
    out['evil_path'] = '/tmp/evil' in sys.path
    out['random'] = random.random()
    out['fds'] = sorted(int(fd) for fd in os.listdir('/proc/self/fd'))
    old = os.umask(0o022)
    out['umask'] = old
    out['uid'] = os.getuid()
    out['pid'] = os.getpid()
    sys.stdout.write(json.dumps(out))
""")


def test_nothing_survives_into_the_next_job_of_the_same_fork_server(one_slot):
    marker = f"{random.randint(10**6, 10**7)}.{random.randint(100, 999)}"
    key = random.randint(10**8, 2 * 10**9)
    zygote = _zygote_pid(one_slot)
    first = one_slot.run(Job(f"KEY = {key}\nMARKER = {marker!r}\n" + _LEAVE_BEHIND, timeout=5))
    assert first.status == "passed", first.stderr[-1000:]
    assert "shm True" in first.stdout and "msg True" in first.stdout
    assert "corrupted" in first.stdout and "atexit-of-job-1" in first.stdout
    # the daemon is gone on the host too (its pid namespace ended with the job)
    deadline = time.monotonic() + 5
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_with(marker) == []
    second, third = (one_slot.run(Job(f"KEY = {key}\n" + _INSPECT, timeout=5)) for _ in range(2))
    assert _zygote_pid(one_slot) == zygote  # the same fork server served all three jobs
    for result in (second, third):
        assert result.status == "passed", result.stderr[-1000:]
    assert "atexit-of-job-1" not in second.stdout + third.stdout
    got, again = json.loads(second.stdout), json.loads(third.stdout)
    print(got)
    # fresh tmpfs: job 1's files are gone; only this job's program and the mount points of the
    # host directories re-bound read-only under /tmp (e.g. a CI venv in /tmp/tmp.XXXX/venv) remain
    mount_points = {os.path.join(root, os.path.relpath(path, root).split(os.sep)[0])
                    for path in one_slot._rebind for root in ("/tmp", "/var/tmp", "/dev/shm")
                    if path.startswith(root + os.sep)}
    assert sorted(set(got["files"]) - mount_points) == ["/tmp/main.py"], (got["files"], mount_points)
    assert got["seen_via_proc"] == []
    assert not got["shm"] and not got["msg"]  # a fresh IPC namespace per job
    # only this job's processes: its init (pid 1) and itself, no daemon, no fork server
    assert set(got["procs"]) == {"1", str(got["pid"])}, got["procs"]
    assert marker not in json.dumps(got["procs"])
    assert got["json_ok"] and got["counter_ok"] and got["print_ok"]
    assert got["env"] == [False, "/usr/local/bin:/usr/bin:/bin"]
    assert got["cwd"] == "/tmp" and got["sigterm_default"] and got["sigalrm_default"]
    assert got["recursionlimit"] == 1000 and not got["evil_path"]
    assert got["fds"] == [0, 1, 2, 3], got["fds"]  # (3: listdir's own fd)
    assert got["umask"] == 0o022
    assert got["random"] != again["random"]  # reseeded per job, not the zygote's state
    assert got["uid"] != again["uid"] and got["uid"] in one_slot.uid_range  # a uid per job


_ATTACK_ZYGOTE = textwrap.dedent("""
    import os, signal, sys
    out = []
    out.append(('ppid', os.getppid()))
    for pid in (1, os.getppid()):
        for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGSTOP):
            try:
                os.kill(pid, sig)
                out.append(('signalled', pid, int(sig)))
            except OSError as e:
                out.append(('denied', pid, e.errno))
    for fd in range(3, 64):
        try:
            os.fstat(fd)
            out.append(('open fd', fd))
        except OSError:
            pass
    for path in ('/proc/1/mem', '/proc/1/environ', '/proc/1/cwd/x'):
        try:
            open(path, 'rb').read(1)
            out.append(('read', path))
        except OSError as e:
            out.append(('denied', path, e.errno))
    try:
        os.kill(-1, signal.SIGKILL)
    except OSError as e:
        out.append(('kill -1', e.errno))
    print(out)
""")


def test_a_job_cannot_reach_or_break_the_fork_server(one_slot):
    zygote = _zygote_pid(one_slot)
    result = one_slot.run(Job(_ATTACK_ZYGOTE, timeout=5))
    print(result)
    assert "signalled" not in result.stdout
    assert "open fd" not in result.stdout
    assert "('read'" not in result.stdout
    # a memory bomb, a fork bomb and a timeout in the fork server's memory cgroup / namespaces
    bombs = one_slot.run_batch([
        Job("block = bytearray(3 << 30)\n", timeout=3),
        Job("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n"
            "        pass\n", timeout=1),
        Job("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "time.sleep(30)\n", timeout=1),
    ])
    assert [b.status for b in bombs] == ["memory", "timeout", "timeout"], bombs
    assert _zygote_pid(one_slot) == zygote  # survived all of it
    ok = one_slot.run(Job("print(sum(range(10)))", expected_output="45"))
    assert ok.status == "passed"
    assert [p for p in processes_with_uid_in(one_slot.uid_range)] == []


def test_fork_servers_die_with_their_process():
    """A process that never closes its sandbox (crash) takes its fork servers with it."""
    _require_root_bwrap()
    script = textwrap.dedent("""
        import os, sys
        from kwaiformers.sandbox import Job, Sandbox, SandboxConfig
        sb = Sandbox(SandboxConfig(allow_code_execution=True, num_workers=2))
        sb.run_batch([Job('pass'), Job('pass')])
        print(' '.join(str(z.proc.pid) for z in sb._zygotes.values()), flush=True)
        os._exit(0)  # no close(), no atexit
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                              p for p in sys.path if p)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    pids = [int(p) for p in proc.stdout.split()]
    assert pids
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{p}") for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(os.path.exists(f"/proc/{p}") for p in pids)


def test_close_stops_the_fork_servers_and_fresh_mode_still_works():
    _require_root_bwrap()
    sb = Sandbox(SandboxConfig(allow_code_execution=True, num_workers=2))
    assert sb.run(Job("print('z')")).stdout == "z\n" and sb.uses_zygote
    pids = [z.proc.pid for z in sb._zygotes.values()]
    sb.close()
    assert sb._zygotes == {}
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    fresh = Sandbox(SandboxConfig(allow_code_execution=True, num_workers=1, zygote=False))
    assert fresh.run(Job("print('f')")).stdout == "f\n" and not fresh.uses_zygote
    fresh.close()
    with pytest.raises(ValueError, match="zygote"):
        SandboxConfig(zygote="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="preload"):
        SandboxConfig(preload=("os; import evil",))


def test_a_forked_copy_of_the_host_process_gets_its_own_fork_servers(one_slot):
    """A DataLoader-style fork of the process must not talk to the parent's fork servers."""
    zygote = _zygote_pid(one_slot)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        code = 1
        signal.alarm(60)  # never outlive a stuck run
        try:
            result = one_slot.run(Job("print(6 * 7)", timeout=5))
            mine = _zygote_pid(one_slot)
            os.write(write, json.dumps([result.stdout, mine]).encode())
            one_slot.close()
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    deadline = time.monotonic() + 90
    while not os.waitpid(pid, os.WNOHANG)[0]:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked copy did not finish in 90 s")
        time.sleep(0.05)
    with os.fdopen(read) as f:
        out, child_zygote = json.loads(f.read() or '["", 0]')
    assert out == "42\n" and child_zygote != zygote
    assert _zygote_pid(one_slot) == zygote  # the parent's fork server is untouched
    assert one_slot.run(Job("print(1)")).stdout == "1\n"


def test_a_host_process_with_more_than_1024_open_fds():
    """The control socket and the job's pipes get fd numbers above select()'s limit."""
    import resource

    _require_root_bwrap()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1300:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < 1300")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1300), hard))
    fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(1100)]
    try:
        sb = Sandbox(SandboxConfig(allow_code_execution=True, num_workers=1, zygote=True))
        results = sb.run_batch([Job("print(1)"), Job("while True: pass", timeout=1)])
        sb.close()
        assert [r.status for r in results] == ["passed", "timeout"]
    finally:
        for fd in fds:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_an_interpreter_under_tmp_stays_visible_to_jobs(tmp_path):
    """CI runs from a venv in /tmp: every job's fresh /tmp tmpfs must show it again, read-only."""
    _require_root_bwrap()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    site = subprocess.run([str(venv / "bin" / "python"), "-c",
                           "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    os.makedirs(site, exist_ok=True)
    with open(os.path.join(site, "kwf_probe_module.py"), "w") as f:
        f.write("VALUE = 42\n")
    os.chmod(os.path.join(site, "kwf_probe_module.py"), 0o666)  # only the read-only bind stops it
    script = textwrap.dedent("""
        from kwaiformers.sandbox import Job, Sandbox, SandboxConfig
        for zygote in (True, False):
            sb = Sandbox(SandboxConfig(allow_code_execution=True, num_workers=1, zygote=zygote))
            ok = sb.run(Job("import kwf_probe_module; print(kwf_probe_module.VALUE)"))
            ro = sb.run(Job("import kwf_probe_module; open(kwf_probe_module.__file__, 'a')"))
            print(zygote, sb.uses_zygote, ok.stdout.strip(), ro.status, 'Read-only' in ro.stderr)
            sb.close()
    """)
    src = os.path.dirname(os.path.dirname(os.path.abspath(
        __import__("kwaiformers").__file__)))
    proc = subprocess.run([str(venv / "bin" / "python"), "-c", script], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": src})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split("\n")[:2] == ["True True 42 runtime_error True",
                                           "False False 42 runtime_error True"], proc.stdout
