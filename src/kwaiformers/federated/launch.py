"""Launching E-Tree runs on CPU (gloo): launcher checks and a local loopback spawner.

Measured on the project machines (design note, Sec. 3.6):

- ``torchrun --standalone --nproc_per_node N script.py`` and
  ``accelerate launch --multi_gpu --num_processes N script.py`` start N gloo ranks on CPU.
- ``accelerate launch --cpu --num_processes N script.py`` starts **one** process (the
  single-process launcher); :func:`check_launch` turns that into a clear error instead of a run
  that silently averages nothing.
- Without any launcher, :func:`launch_local` spawns N ranks on ``127.0.0.1`` itself.
"""

from __future__ import annotations

import datetime
import os
import socket
from collections.abc import Callable
from typing import Any

__all__ = ["LaunchError", "check_launch", "free_port", "init_distributed", "launch_local",
           "launched_by_a_launcher"]


class LaunchError(ValueError):
    """The process layout does not match the requested number of processes (a user error: the
    ``kwaiformers`` CLI prints it as one ``error:`` line and exits 2)."""


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def launched_by_a_launcher() -> bool:
    """Whether torchrun/accelerate (or :func:`launch_local`) started this process."""
    return "WORLD_SIZE" in os.environ or "ACCELERATE_USE_CPU" in os.environ


def check_launch(expected_processes: int | None) -> int:
    """Return the world size, or raise :class:`LaunchError` for the single-process trap.

    ``expected_processes``: the number of processes the config asks for (``None``: any).
    """
    world = _env_world_size()
    if expected_processes is None or expected_processes == world:
        return world
    if world == 1 and "ACCELERATE_USE_CPU" in os.environ:
        raise LaunchError(
            f"{expected_processes} processes were requested but this is a single process: "
            "`accelerate launch --cpu --num_processes N` (and a MULTI_CPU config file without "
            "mpirun) starts ONE process on CPU. Use `torchrun --standalone --nproc_per_node "
            f"{expected_processes} ...` or `accelerate launch --multi_gpu --num_processes "
            f"{expected_processes} ...` (works on CPU with gloo), or run the script without a "
            "launcher and it spawns the processes itself."
        )
    raise LaunchError(
        f"the config asks for processes={expected_processes} but the launcher started "
        f"WORLD_SIZE={world}; set processes to {world} (or null) or relaunch with "
        f"--nproc_per_node {expected_processes}"
    )


def init_distributed(timeout_s: float = 120.0) -> tuple[int, int]:
    """Initialise the default gloo group from the launcher's environment (idempotent).

    ``timeout_s`` bounds every collective of the default group (and is the default for
    subgroups): a dead or stuck peer raises instead of hanging forever.
    """
    import torch.distributed as dist

    world = _env_world_size()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(
            "gloo", timeout=datetime.timedelta(seconds=float(timeout_s)))
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _child(local_rank: int, fn: Callable[..., Any], nprocs: int, port: int, args: tuple) -> None:
    os.environ.update({
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "RANK": str(local_rank),
        "LOCAL_RANK": str(local_rank),
        "WORLD_SIZE": str(nprocs),
        "LOCAL_WORLD_SIZE": str(nprocs),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    })
    import torch

    torch.set_num_threads(1)
    fn(*args)


def launch_local(fn: Callable[..., Any], nprocs: int, args: tuple = ()) -> None:
    """Run ``fn(*args)`` in ``nprocs`` spawned ranks on 127.0.0.1 (gloo env set for each).

    Raises ``torch.multiprocessing.ProcessRaisedException``/``ProcessExitedException`` when a
    rank fails (the others are terminated).
    """
    import torch.multiprocessing as mp

    if nprocs < 1:
        raise ValueError(f"nprocs must be >= 1, got {nprocs}")
    mp.start_processes(_child, args=(fn, nprocs, free_port(), args), nprocs=nprocs, join=True,
                       start_method="spawn")
