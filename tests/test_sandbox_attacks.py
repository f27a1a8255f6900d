"""Attack suite for kwaiformers.sandbox: every hostile program is contained, gets the right
verdict, leaves no process behind, and the host / test harness keep working."""

from __future__ import annotations

import os
import random
import sys
import textwrap
import time

import pytest

from kwaiformers.sandbox import (
    CodeExecutionNotAllowedError,
    Job,
    Sandbox,
    SandboxConfig,
    outputs_match,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux sandbox")


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


def _processes_with_uid_in(uids: range) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status") as f:
                    for line in f:
                        if line.startswith("Uid:") and int(line.split()[1]) in uids:
                            found.append(int(entry))
            except (OSError, ValueError):
                continue
    return found


@pytest.fixture(scope="module")
def sandbox():
    if os.geteuid() != 0:
        pytest.skip("namespace isolation needs root (CI runs as root)")
    return Sandbox(SandboxConfig(allow_code_execution=True, startup_grace=1.0, num_workers=12,
                                 max_output_bytes=64 * 1024, max_processes=16))


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
    first_uid = sandbox.config.uid_base + sandbox._uid_offset
    uids = range(first_uid, first_uid + sandbox.config.num_workers)
    while (_processes_with(marker) or _processes_with_uid_in(uids)) and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_with(marker) == []
    assert _processes_with_uid_in(uids) == []
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
        ["HOME", "LANG", "LC_ALL", "OMP_NUM_THREADS", "PATH", "PYTHONIOENCODING", "TMPDIR"]))
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
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_with(marker) == []


def test_fork_server_restarts_and_direct_mode(sandbox):
    sandbox.run(Job("pass"))
    sandbox._server.proc.kill()  # the fork server dies: the next jobs still run
    sandbox._server.proc.wait()
    jobs = [Job("print(6 * 7)", expected_output="42")] * 2
    assert [r.status for r in sandbox.run_batch(jobs)] == ["passed", "passed"]
    direct = Sandbox(SandboxConfig(allow_code_execution=True, fork_server=False,
                                   startup_grace=1.0))
    results = direct.run_batch([*jobs, Job("import time\ntime.sleep(30)\n", timeout=1.0)])
    assert [r.status for r in results] == ["passed", "passed", "timeout"]
