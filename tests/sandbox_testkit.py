"""Host-side process lookups shared by the sandbox attack tests (``/proc`` scans)."""

from __future__ import annotations

import os


def processes_with(marker: str) -> list[int]:
    """Pids of the processes whose command line contains ``marker``."""
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


def processes_with_uid_in(uids: range) -> list[int]:
    """Pids of the processes whose real uid lies in ``uids`` (the sandbox's job uids)."""
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
