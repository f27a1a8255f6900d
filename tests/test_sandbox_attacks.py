"""Attack suite for kwaiformers.sandbox: every hostile program is contained, gets the right
verdict, leaves no process behind, and the host / test harness keep working."""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import sys
import tempfile
import textwrap
import time

import pytest
from sandbox_testkit import processes_with, processes_with_uid_in

from kwaiformers.sandbox import (
    CodeExecutionNotAllowedError,
    Job,
    Sandbox,
    SandboxConfig,
    outputs_match,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux sandbox")


def _require_bwrap():
    if os.geteuid() != 0:
        pytest.skip("the attack suite runs as root, like CI (bwrap drops to an unprivileged uid)")
    if shutil.which("bwrap") is None:
        pytest.fail("bubblewrap is not installed: apt-get install -y bubblewrap (.ci/run does)")


@pytest.fixture(scope="module")
def sandbox():
    _require_bwrap()
    sb = Sandbox(SandboxConfig(allow_code_execution=True, startup_grace=1.0, num_workers=12,
                               max_output_bytes=64 * 1024, max_processes=16))
    yield sb
    sb.close()


def test_refuses_without_opt_in(monkeypatch):
    monkeypatch.delenv("KWAIFORMERS_ALLOW_CODE_EXECUTION", raising=False)
    with pytest.raises(CodeExecutionNotAllowedError, match="KWAIFORMERS_ALLOW_CODE_EXECUTION=1"):
        Sandbox()
    monkeypatch.setenv("KWAIFORMERS_ALLOW_CODE_EXECUTION", "1")
    assert Sandbox().config.allow_code_execution is None  # env opt-in accepted


def test_bad_input_is_rejected():
    with pytest.raises(TypeError, match="Job.program"):
        Job(b"print(1)")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Job.timeout"):
        Job("pass", timeout=0)
    with pytest.raises(ValueError, match="plain file names"):
        Job("pass", files={"../x": "y"})
    with pytest.raises(ValueError, match="isolation"):
        SandboxConfig(isolation="none")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="isolation"):
        SandboxConfig(isolation="namespaces")  # type: ignore[arg-type]  # removed mode
    with pytest.raises(ValueError, match="ro_binds"):
        SandboxConfig(ro_binds=("relative/path",))
    with pytest.raises(ValueError, match="memory_cgroup"):
        SandboxConfig(memory_cgroup="maybe")  # type: ignore[arg-type]


def test_refuses_without_bwrap_and_names_the_fix(monkeypatch):
    from kwaiformers.sandbox import SandboxUnavailableError

    with pytest.raises(SandboxUnavailableError, match="apt-get install -y bubblewrap"):
        Sandbox(SandboxConfig(allow_code_execution=True, bwrap="/nonexistent/bwrap"))
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SandboxUnavailableError, match="isolation='process'"):
        Sandbox(SandboxConfig(allow_code_execution=True))


def test_outputs_match_rule():
    assert outputs_match("1 2\n3\n", " 1 2 \n3")
    assert outputs_match("0.50\n", "0.5")
    assert not outputs_match("1 2\n", "1 2\n3")
    assert not outputs_match("abc\n", "abd\n")


def test_attack_suite(sandbox, tmp_path, monkeypatch):
    monkeypatch.setenv("KWF_TEST_SECRET", "s3cr3t-token-42")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    outside = tmp_path / "pwned.txt"
    marker = f"{random.randint(10**6, 10**7)}.{random.randint(100, 999)}"
    harness_pid = os.getpid()
    attacks = {
        "fork_bomb": (textwrap.dedent("""
            import os
            while True:
                try:
                    os.fork()
                except OSError:
                    pass
        """), 1.0),
        "memory_bomb": ("blocks = []\nwhile True:\n    blocks.append(bytes(200 * 1024 * 1024))\n",
                        2.0),
        "infinite_loop": ("while True:\n    pass\n", 1.0),
        "huge_output": ("while True:\n    print('x' * 10000)\n", 2.0),
        "write_outside": (f"open({str(outside)!r}, 'w').write('pwned')\n", 2.0),
        "delete_files": (f"import os\nos.remove({str(victim)!r})\n", 2.0),
        "read_environment": (textwrap.dedent(f"""
            import os
            print(dict(os.environ))
            for pid in ({harness_pid}, os.getppid(), 1, 'self'):
                try:
                    print(open(f'/proc/{{pid}}/environ').read())
                except OSError as e:
                    print('denied', pid, e.errno)
            for entry in os.listdir('/proc'):
                if entry.isdigit():
                    try:
                        print(open(f'/proc/{{entry}}/environ').read())
                    except OSError:
                        pass
        """), 2.0),
        "socket": (textwrap.dedent("""
            import socket
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(1.0)
            try:
                s.connect(('192.0.2.1', 80))
                print('CONNECTED')
            except OSError as e:
                print('blocked', e.errno)
        """), 2.0),
        "kill_parent": (textwrap.dedent(f"""
            import os, signal
            for pid in ({harness_pid}, os.getppid()):
                try:
                    os.kill(pid, signal.SIGKILL)
                    print('killed', pid)
                except OSError as e:
                    print('denied', pid, e.errno)
            os.kill(-1, signal.SIGKILL)
        """), 2.0),
        "sleep_past_timeout": ("import time\ntime.sleep(30)\n", 1.0),
        "detached_child": (textwrap.dedent(f"""
            import os
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    os.execv('/bin/sleep', ['sleep', '{marker}'])
                os._exit(0)
            import time
            time.sleep(0.5)
            print('parent done')
        """), 3.0),
    }
    start = time.monotonic()
    results = dict(zip(attacks, sandbox.run_batch([Job(p, timeout=t) for p, t in attacks.values()])))
    wall = time.monotonic() - start
    summary = {k: (r.status, r.reason, round(r.time, 2)) for k, r in results.items()}
    print(summary)

    assert results["fork_bomb"].status == "timeout"
    assert results["memory_bomb"].status == "memory"
    assert results["infinite_loop"].status == "timeout"
    assert results["huge_output"].status == "killed" and results["huge_output"].truncated
    assert len(results["huge_output"].stdout) <= 64 * 1024
    assert results["write_outside"].status == "runtime_error" and not outside.exists()
    assert results["delete_files"].status == "runtime_error" and victim.read_text() == "keep me"
    env_out = results["read_environment"]
    assert env_out.status == "passed" and "s3cr3t-token-42" not in env_out.stdout
    assert "denied" in env_out.stdout
    sock = results["socket"]
    assert sock.status == "passed" and "CONNECTED" not in sock.stdout
    assert "blocked 101" in sock.stdout  # ENETUNREACH: the namespace has no interface up
    assert "killed" not in results["kill_parent"].stdout.replace("killed by", "")
    assert results["sleep_past_timeout"].status == "timeout"
    assert results["detached_child"].status == "passed"
    assert "parent done" in results["detached_child"].stdout
    assert wall < 30, wall  # everything ran in parallel and was cut off at its timeout

    # nothing survives: no detached sleeper, no process with a sandbox uid
    deadline = time.monotonic() + 5
    uids = sandbox.uid_range
    while (processes_with(marker) or processes_with_uid_in(uids)) and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_with(marker) == []
    assert processes_with_uid_in(uids) == []
    # the harness and the sandbox still work
    assert sandbox.run(Job("print(sum(range(10)))", expected_output="45")).status == "passed"


def test_job_files_stdin_and_verdicts(sandbox):
    jobs = [
        Job("print(open('data.txt').read().upper())", files={"data.txt": "abc"},
            expected_output="ABC"),
        Job("print(int(input()) * 2)", stdin="21\n", expected_output="43"),
        Job("raise ValueError('boom')"),
        Job("import sys\nsys.exit(3)"),
        Job("import sys\nsys.exit(0)"),
    ]
    statuses = [r.status for r in sandbox.run_batch(jobs)]
    assert statuses == ["passed", "wrong_answer", "runtime_error", "runtime_error", "passed"]
    env = sandbox.run(Job("import os\nprint(sorted(os.environ), os.environ['HOME'] == os.getcwd())"))
    assert env.stdout.split("]")[0] + "]" == str(sorted(
        ["HOME", "LANG", "LC_ALL", "OMP_NUM_THREADS", "PATH", "PWD", "PYTHONIOENCODING",
         "TMPDIR"]))
    assert env.stdout.strip().endswith("True")  # scrubbed env, HOME = the private working dir


def test_process_mode_kills_leftovers(tmp_path):
    marker = f"{random.randint(10**6, 10**7)}.{random.randint(100, 999)}"
    with pytest.warns(RuntimeWarning, match="NO network"):
        sb = Sandbox(SandboxConfig(allow_code_execution=True, isolation="process"))
    program = textwrap.dedent(f"""
        import os
        if os.fork() == 0:
            os.setsid()
            os.execv('/bin/sleep', ['sleep', '{marker}'])
        print('ok')
    """)
    assert sb.run(Job(program, timeout=3)).stdout.strip() == "ok"
    deadline = time.monotonic() + 5
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_with(marker) == []


# -- issue 16: host files, sockets, devices, IPC, siblings, memory per job ----------------------

_CRED_PROBE = textwrap.dedent("""
    import json, os, socket, stat, sys, ctypes, ctypes.util
    host = HOST
    out = {}
    def attempt(name, fn):
        try:
            out[name] = ['ok', repr(fn())[:80]]
        except Exception as exc:
            out[name] = ['denied', type(exc).__name__]
    attempt('world_readable', lambda: open(host + '/world.txt').read())
    attempt('root_only_file', lambda: open(host + '/root_only.txt').read())
    attempt('root_only_dir', lambda: os.listdir(host + '/root_dir'))
    def unix(path):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(1)
        s.connect(path)
        return s.recv(16)
    attempt('root_only_socket', lambda: unix(host + '/agent.sock'))
    attempt('abstract_socket', lambda: unix(ABSTRACT))
    for dev in ('/dev/kvm', '/dev/loop-control', '/dev/fuse', '/dev/mem', '/dev/sda', '/dev/vda',
                '/dev/nvme0n1', '/dev/net/tun', '/dev/nvidia0', '/dev/tty0'):
        attempt('dev:' + dev, lambda dev=dev: os.close(os.open(dev, os.O_RDWR)))
    attempt('mknod', lambda: os.mknod('/tmp/mem', stat.S_IFCHR | 0o600, os.makedev(1, 1)))
    out['dev_listing'] = sorted(os.listdir('/dev'))
    libc = ctypes.CDLL(ctypes.util.find_library('c'), use_errno=True)
    out['host_shm_visible'] = libc.shmget(HOST_SHM_KEY, 0, 0) >= 0
    out['created_shm'] = libc.shmget(LEAK_SHM_KEY, 4096, 0o1000 | 0o666) >= 0   # IPC_CREAT
    out['created_msg'] = libc.msgget(LEAK_MSG_KEY, 0o1000 | 0o666) >= 0
    status = dict(line.split(':', 1) for line in open('/proc/self/status') if ':' in line)
    out['uid'] = status['Uid'].split()
    out['caps'] = [status[k].strip() for k in ('CapEff', 'CapPrm', 'CapAmb')]
    out['no_new_privs'] = status['NoNewPrivs'].strip()
    out['groups'] = os.getgroups()
    attempt('host_root_listing', lambda: os.listdir('/root'))
    attempt('write_usr', lambda: open('/usr/kwf-pwned', 'w'))
    print(json.dumps(out))
""")


def _sysv_keys(kind: str) -> set[int]:
    with open(f"/proc/sysvipc/{kind}") as f:
        return {int(line.split()[0]) for line in list(f)[1:] if line.split()}


def test_host_files_sockets_devices_and_ipc_stay_closed(tmp_path):
    import ctypes
    import ctypes.util
    import threading

    _require_bwrap()
    host = tmp_path / "host"
    host.mkdir()
    (host / "world.txt").write_text("public")
    (host / "root_only.txt").write_text("TOP-SECRET")
    os.chmod(host / "root_only.txt", 0o600)
    (host / "root_dir").mkdir(mode=0o700)
    (host / "root_dir" / "key").write_text("k")
    os.chmod(tmp_path, 0o755)
    os.chmod(host, 0o755)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(host / "agent.sock"))
    os.chmod(host / "agent.sock", 0o600)  # like docker.sock / an ssh-agent socket
    abstract = f"\0kwf-attack-{random.randint(0, 10**9)}"
    server2 = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server2.bind(abstract)
    connections = []

    def serve(srv):
        srv.listen(8)
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            conn.sendall(b"PWNED")
            connections.append(conn)

    stop = threading.Event()
    threads = [threading.Thread(target=serve, args=(s,), daemon=True) for s in (server, server2)]
    for t in threads:
        t.start()
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    keys = [random.randint(10**8, 2 * 10**9) for _ in range(3)]
    host_shm = libc.shmget(keys[0], 4096, 0o1000 | 0o600)
    assert host_shm >= 0
    program = (f"HOST = {str(host)!r}\nABSTRACT = {abstract!r}\nHOST_SHM_KEY = {keys[0]}\n"
               f"LEAK_SHM_KEY = {keys[1]}\nLEAK_MSG_KEY = {keys[2]}\n" + _CRED_PROBE)
    try:
        # a host root process (this test) can reach all of it: the probe is a real attack
        control = {}
        exec(compile(program.replace("print(json.dumps(out))", "RESULT.update(out)"), "p", "exec"),
             {"RESULT": control, "__name__": "control"})
        assert control["root_only_file"][0] == "ok" and control["root_only_socket"][0] == "ok"
        assert control["abstract_socket"][0] == "ok" and control["host_shm_visible"]
        for key, kind in ((keys[1], "shm"), (keys[2], "msg")):  # the control leaked them itself
            ident = (libc.shmget(key, 0, 0) if kind == "shm" else libc.msgget(key, 0))
            (libc.shmctl if kind == "shm" else libc.msgctl)(ident, 0, None)  # IPC_RMID

        sb = Sandbox(SandboxConfig(allow_code_execution=True, ro_binds=(str(host),)))
        result = sb.run(Job(program, timeout=10))
        sb.close()
        assert result.status == "passed", result.stderr[-2000:]
        got = json.loads(result.stdout)
        print(got)
        assert got["world_readable"][0] == "ok"  # the bound directory is visible ...
        for name in ("root_only_file", "root_only_dir", "root_only_socket", "abstract_socket",
                     "mknod", "write_usr"):
            assert got[name][0] == "denied", (name, got[name])  # ... its root-only parts not
        for name, value in got.items():
            if name.startswith("dev:"):
                assert value[0] == "denied", (name, value)
        assert set(got["dev_listing"]) <= {"console", "core", "fd", "full", "null", "ptmx", "pts",
                                           "random", "shm", "stderr", "stdin", "stdout", "tty",
                                           "urandom", "zero", "mqueue"}
        if got["host_root_listing"][0] == "ok":  # only the directories leading to binds
            listing = eval(got["host_root_listing"][1])  # noqa: S307 - a repr of a list of str
            assert all(os.path.isdir(os.path.join("/root", e)) for e in listing), listing
        assert not got["host_shm_visible"]
        assert got["created_shm"] and got["created_msg"]  # inside its own IPC namespace ...
        assert keys[1] not in _sysv_keys("shm") and keys[2] not in _sysv_keys("msg")  # ... gone
        assert "0" not in got["uid"] and got["groups"] == []
        assert all(int(c, 16) == 0 for c in got["caps"]) and got["no_new_privs"] == "1"
    finally:
        stop.set()
        for t in threads:
            t.join()
        for conn in connections:
            conn.close()
        server.close()
        server2.close()
        libc.shmctl(host_shm, 0, None)


_SLOW_CORRECT = "import time\ntime.sleep(2.0)\nprint(2 * int(input()))\n"
_CHEAT = textwrap.dedent("""
    import glob, io, os, time
    mine = io.open('solution.py').read()
    deadline = time.time() + 2.5
    while time.time() < deadline:
        found = []
        for pattern in ('/tmp/kwf-sandbox-*/solution.py', '/tmp/*/solution.py',
                        '/tmp/*/*/solution.py', '/proc/*/cwd/solution.py',
                        '/proc/*/root/tmp/solution.py', '/var/tmp/**/*.py', '/dev/shm/**/*.py',
                        '/run/**/*.py'):
            found += glob.glob(pattern, recursive=True)
        for path in found:
            try:
                src = io.open(path).read()
            except OSError:
                continue
            if src != mine and 'glob' not in src:
                exec(compile(src, path, 'exec'), {'__name__': '__main__'})
                raise SystemExit(0)
        time.sleep(0.05)
""")


def test_sibling_copy_cheat_scores_as_failure(tmp_path):
    """A GRPO group is graded at once: a program must not find and run a sibling's solution."""
    from kwaiformers.rewards.code_reward import KlearCodeReward

    _require_bwrap()
    tests = [{"input": "21\n", "output": "42\n"}]

    def fence(code):
        return f"<think>x</think>\n```python\n{code}\n```"

    group = [fence(_SLOW_CORRECT), fence(_CHEAT), fence(_SLOW_CORRECT), fence(_CHEAT)]
    # a sibling's job directory as the weak mode lays it out on the host (planted, so that the
    # positive control does not depend on timing), under /tmp where the sandboxed jobs look too
    host_dir = tempfile.mkdtemp(prefix="kwf-ctl-", dir="/tmp")
    try:
        planted = os.path.join(host_dir, "kwf-sandbox-planted")
        os.mkdir(planted)
        with open(os.path.join(planted, "solution.py"), "w") as f:
            f.write(_SLOW_CORRECT.replace("time.sleep(2.0)", "pass"))
        # positive control: without isolation ('process' mode) the cheat wins
        with pytest.warns(RuntimeWarning, match="NO network"):
            weak = Sandbox(SandboxConfig(allow_code_execution=True, isolation="process",
                                         num_workers=4, tmp_dir=host_dir))
        reward = KlearCodeReward(sandbox=weak, isolate_tests=True, timeout=4.0)
        assert reward(completions=group, tests=[tests] * 4) == [1.0, 1.0, 1.0, 1.0]
        _check_isolated_group(group, tests)
    finally:
        shutil.rmtree(host_dir, ignore_errors=True)


def _check_isolated_group(group, tests):
    from kwaiformers.evaluation.livecodebench import run_tests_batch
    from kwaiformers.rewards.code_reward import KlearCodeReward

    # both launchers: the fork server where it runs (zygote=None), and one bubblewrap per job
    for zygote in (None, False):
        sb = Sandbox(SandboxConfig(allow_code_execution=True, num_workers=4, zygote=zygote))
        for isolate in (True, False):
            reward = KlearCodeReward(sandbox=sb, isolate_tests=isolate, timeout=4.0)
            got = reward(completions=group, tests=[tests] * 4)
            assert got == [1.0, -1.0, 1.0, -1.0], (zygote, isolate, got)
        graded = run_tests_batch([(c, tests, None) for c in (_SLOW_CORRECT, _CHEAT) * 2],
                                 sandbox=sb, timeout=4.0)
        assert [all(o.passed for o in g) for g in graded] == [True, False, True, False], zygote
        sb.close()


def test_memory_is_bounded_per_job_with_forked_children():
    from kwaiformers.sandbox.executor import MemoryCgroups

    _require_bwrap()
    sb = Sandbox(SandboxConfig(allow_code_execution=True, memory_mb=256, disk_mb=16))
    if sb.cgroups is None:
        pytest.skip("no writable memory cgroup on this machine (the fallback is tested below)")
    program = textwrap.dedent("""
        import os, time
        pids = []
        for i in range(5):
            pid = os.fork()
            if pid == 0:
                block = bytearray(150 << 20)
                for j in range(0, len(block), 4096):
                    block[j] = 1
                os.write(1, b'child holds 150 MiB\\n')
                time.sleep(1.5)
                os._exit(0)
            pids.append(pid)
        codes = [os.waitpid(p, 0)[1] for p in pids]
        print('statuses', codes)
        raise SystemExit(1 if any(codes) else 0)
    """)
    result = sb.run(Job(program, timeout=10))
    limit_mb = 256 + 32 + 16 + 2
    print(result.status, result.peak_memory_mb, result.stdout)
    assert isinstance(sb.cgroups, MemoryCgroups)
    assert result.status == "memory", (result.status, result.stdout, result.stderr[-500:])
    assert result.peak_memory_mb is not None and result.peak_memory_mb <= limit_mb
    assert result.stdout.count("child holds") < 5
    sb.close()


def test_without_cgroup_the_defaults_fit_the_ram(monkeypatch):
    from kwaiformers.sandbox import executor

    _require_bwrap()
    monkeypatch.setattr(executor.MemoryCgroups, "detect", classmethod(lambda cls: None))
    monkeypatch.setattr(executor, "_mem_total_mb", lambda: 10_000)
    with pytest.warns(RuntimeWarning, match="max_processes lowered to 2"):
        sb = Sandbox(SandboxConfig(allow_code_execution=True, num_workers=4, memory_mb=1000))
    assert sb.config.max_processes == 2 and sb.memory_limit_scope == "process (rlimit)"
    with pytest.raises(executor.SandboxUnavailableError, match="memory cgroup"):
        Sandbox(SandboxConfig(allow_code_execution=True, memory_cgroup="require"))
