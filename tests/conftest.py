"""Test configuration: offline Hugging Face settings and a network guard.

Every test runs with ``HF_HUB_OFFLINE=1`` / ``TRANSFORMERS_OFFLINE=1`` and fails if it opens a
non-loopback connection (see ``tests/network_guard.py``), even when the code under test swallows
the error.
"""

from __future__ import annotations

import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")
os.environ.setdefault("TQDM_DISABLE", "1")

sys.path.insert(0, os.path.dirname(__file__))

import pytest  # noqa: E402
from network_guard import Guard  # noqa: E402

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _no_network():
    guard = Guard()
    guard.install()
    try:
        yield guard
    finally:
        guard.uninstall()
    if guard.blocked:
        pytest.fail(f"test attempted non-loopback network access: {guard.blocked}", pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def _no_sandbox_left_running():
    """At the end of the session no sandbox fork server (a ``bwrap`` child of this process) is
    left: every Sandbox still alive is closed and its fork servers must then be gone."""
    yield
    import gc
    import time

    executor = sys.modules.get("kwaiformers.sandbox.executor")
    if executor is None:
        return
    gc.collect()
    executor._close_all_sandboxes()

    def leftovers():
        found = []
        for entry in os.listdir("/proc"):
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            comm, rest = stat[stat.find("(") + 1:stat.rfind(")")], stat[stat.rfind(")") + 2:]
            if comm == "bwrap" and int(rest.split()[1]) == os.getpid() and rest[0] != "Z":
                found.append(int(entry))
        return found

    deadline = time.monotonic() + 10
    while leftovers() and time.monotonic() < deadline:
        time.sleep(0.1)
    left = leftovers()
    assert not left, f"sandbox processes left running after the tests: {left}"


@pytest.fixture(autouse=True)
def _torch_seed():
    """Keep tests deterministic and single-threaded-friendly on the 2-CPU CI machine."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    torch.manual_seed(0)
    yield


@pytest.fixture
def single_torch_thread():
    """Tiny models run fastest single-threaded on the shared 2-CPU test machine; modules opt in
    with ``pytestmark = pytest.mark.usefixtures("single_torch_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _environment_lines() -> list[str]:
    """Facts about the machine that decide how the sandbox and distributed tests run (for CI logs)."""
    import platform
    import shutil

    lines = [f"kernel {platform.release()} ({platform.machine()}), uid {os.getuid()}, "
             f"cpus {os.cpu_count()}, load {' '.join(f'{x:.1f}' for x in os.getloadavg())}"]
    try:
        with open("/proc/self/cgroup") as f:
            cg = " | ".join(line.strip() for line in f)[:160]
    except OSError as exc:  # pragma: no cover - not Linux
        cg = f"unreadable ({exc})"
    lines.append(f"cgroup {cg}; cgroup2 mount: {os.path.exists('/sys/fs/cgroup/cgroup.controllers')}")
    bwrap = shutil.which("bwrap")
    lines.append(f"bwrap {bwrap or 'missing'}")
    return lines


def pytest_report_header(config):
    return _environment_lines()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    # repeated at the end, because CI shows only the tail of the log
    terminalreporter.write_sep("-", "environment")
    for line in _environment_lines():
        terminalreporter.write_line(line)
