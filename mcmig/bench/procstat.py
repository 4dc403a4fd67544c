"""CPU seconds and peak memory of processes, from /proc (Linux)."""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def _status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb(pid: int) -> float:
    return _status_mb(pid, "VmHWM")


def rss_mb(pid: int) -> float:
    return _status_mb(pid, "VmRSS")


def pss_mb(pid: int) -> float:
    """Proportional set size: each shared page divided among the processes that map
    it, so that a sum over a process group (Kamailio's shared memory pool, mapped
    by every worker) counts it once."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0.0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return 0.0


def group_pids(pgid: int) -> list[int]:
    """Every process of a process group (Kamailio forks its workers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    pids.append(int(entry.name))
            except (ProcessLookupError, PermissionError):
                continue
    return pids


def udp_receive_buffer_drops() -> int:
    """Datagrams the kernel dropped, machine-wide, because a socket's receive
    buffer was full (RcvbufErrors in /proc/net/snmp): load that never reached a node."""
    rows = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()]
    udp = [row[1:] for row in rows if row and row[0] == "Udp:"]
    return int(dict(zip(udp[0], udp[1], strict=True))["RcvbufErrors"])
