"""The pool benchmark's CPU quota, on a cgroup tree laid out as the kernel's (v1
and v2) in a temporary folder: what it writes where, and that it cleans up."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcmig.bench import cpuquota
from mcmig.bench.cpuquota import CpuQuota, QuotaUnavailable


def test_cgroup_v2_enables_the_controller_writes_cpu_max_and_moves_the_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("memory\n")
    monkeypatch.setattr(cpuquota, "CGROUPS", tmp_path)
    quota = CpuQuota("bench", 0.3)
    group = quota.limit(4242)
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpu"
    assert (group / "cpu.max").read_text() == f"3000 {cpuquota.PERIOD_US}"
    assert (group / "cgroup.procs").read_text() == "4242"
    # a process still in its group is moved back to the root first; an empty
    # kernel group can be removed with its files in it, a folder here cannot
    (tmp_path / "cgroup.procs").write_text("")
    quota.close()
    assert (tmp_path / "cgroup.procs").read_text() == "4242" and quota.groups == []
    for made in group.iterdir():
        made.unlink()
    quota.groups.append(group)
    quota.close()
    assert not group.exists()


def test_cgroup_v1_writes_period_and_quota(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    monkeypatch.setattr(cpuquota, "CGROUPS", tmp_path)
    group = CpuQuota("bench", 1.5).limit(7)
    assert group.parent == tmp_path / "cpu"
    assert (group / "cpu.cfs_period_us").read_text() == str(cpuquota.PERIOD_US)
    assert (group / "cpu.cfs_quota_us").read_text() == str(int(1.5 * cpuquota.PERIOD_US))


def test_no_controller_or_a_tree_it_may_not_write_is_said_plainly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cpuquota, "CGROUPS", tmp_path)
    with pytest.raises(QuotaUnavailable, match="no cgroup CPU controller"):
        CpuQuota("bench", 0.3)
    (tmp_path / "cgroup.controllers").write_text("memory pids\n")
    with pytest.raises(QuotaUnavailable, match="without the cpu controller"):
        CpuQuota("bench", 0.3)
    (tmp_path / "cgroup.controllers").write_text("cpu\n")
    (tmp_path / "cgroup.subtree_control").mkdir()  # unwritable as a file
    with pytest.raises(QuotaUnavailable):
        CpuQuota("bench", 0.3).limit(1)
    with pytest.raises(ValueError):
        CpuQuota("bench", 0)
