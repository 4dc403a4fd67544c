"""A CPU quota on a process, so that one machine can stand for several hosts of a
fixed size: each pool instance held to a share of a core, as if it ran on a
host of its own. Linux cgroups, v2 (``cpu.max``) or v1 (``cpu.cfs_quota_us``);
root is needed to make a group."""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path

CGROUPS = Path("/sys/fs/cgroup")
# A short period: a process that used its share waits at most this long (a
# 100 ms period held requests back for up to 70 ms at 0.3 of a core).
PERIOD_US = 10_000


class QuotaUnavailable(Exception):
    """No cgroup CPU controller this process may use."""


def _controller_root() -> tuple[Path, bool]:
    """Where groups with a CPU controller are made, and whether it is cgroup v2."""
    if (CGROUPS / "cgroup.controllers").exists():
        if "cpu" not in (CGROUPS / "cgroup.controllers").read_text().split():
            raise QuotaUnavailable("cgroup v2 without the cpu controller")
        return CGROUPS, True
    if (CGROUPS / "cpu" / "cpu.cfs_quota_us").exists():
        return CGROUPS / "cpu", False
    raise QuotaUnavailable(f"no cgroup CPU controller under {CGROUPS}")


class CpuQuota:
    """A cgroup of its own for each process given, each held to ``cores`` of CPU
    time (0.3: 3 ms in every 10 ms). ``close`` removes the groups once their
    processes have gone (a process still in one is moved out first)."""

    def __init__(self, name: str, cores: float) -> None:
        if cores <= 0:
            raise ValueError("cores must be positive")
        self.root, self.v2 = _controller_root()
        self.quota_us = max(1000, int(cores * PERIOD_US))
        self.name = name
        self.groups: list[Path] = []

    def limit(self, pid: int) -> Path:
        group = self.root / f"{self.name}-{len(self.groups)}-{os.getpid()}"
        try:
            if self.v2:
                subtree = self.root / "cgroup.subtree_control"
                if "cpu" not in subtree.read_text().split():
                    subtree.write_text("+cpu")
            group.mkdir()
            self.groups.append(group)
            if self.v2:
                (group / "cpu.max").write_text(f"{self.quota_us} {PERIOD_US}")
            else:
                (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
                (group / "cpu.cfs_quota_us").write_text(str(self.quota_us))
            (group / "cgroup.procs").write_text(str(pid))
        except OSError as exc:
            raise QuotaUnavailable(f"{group}: {exc.strerror or exc}") from None
        return group

    def close(self) -> None:
        for group in self.groups:
            with suppress(OSError):  # gone with its process
                for pid in (group / "cgroup.procs").read_text().split():
                    (self.root / "cgroup.procs").write_text(pid)
            with suppress(OSError):
                group.rmdir()
        self.groups.clear()
