"""What the benchmark reads from /proc: CPU seconds of a process (utime + stime, all its
threads, kernel time included) or of each of its threads, the machine's busy CPU, RSS.
Linux only; stdlib only, so the load generator can import it too. (Free ports come from
`naraft.cluster.free_ports`.)
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from typing import Final

CLOCK_TICKS_PER_SECOND: Final = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float | None:
    """utime + stime of `pid` (every thread) in seconds; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # After the ")" of the command name the fields start at number 3 (state);
    # utime is field 14 and stime field 15 (proc(5)).
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_SECOND


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """utime + stime of each thread of `pid` (thread id -> seconds); {} if it is gone. The
    main thread's id is the pid."""
    found: dict[int, float] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        found[int(tid)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_SECOND
    return found


def cpu_snapshot(pids: Iterable[int]) -> dict[int, float | None]:
    return {pid: process_cpu_seconds(pid) for pid in pids}


def cpu_delta(
    before: Mapping[int, float | None], after: Mapping[int, float | None]
) -> dict[int, float]:
    """Seconds each pid spent between two snapshots (pids missing from either are left out)."""
    out: dict[int, float] = {}
    for pid, start in before.items():
        end = after.get(pid)
        if start is not None and end is not None:
            out[pid] = end - start
    return out


def machine_busy_seconds() -> float:
    """Busy CPU seconds of the whole machine, all cores, since boot (/proc/stat)."""
    with open("/proc/stat") as stat:
        values = [int(x) for x in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLOCK_TICKS_PER_SECOND


def rss_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def busy_cores(sample_seconds: float, exclude_pids: Iterable[int] = ()) -> float:
    """Cores the machine used over `sample_seconds`, minus what `exclude_pids` used."""
    pids = list(exclude_pids)
    cpu0, busy0, t0 = cpu_snapshot(pids), machine_busy_seconds(), time.monotonic()
    time.sleep(sample_seconds)
    cpu1, busy1, t1 = cpu_snapshot(pids), machine_busy_seconds(), time.monotonic()
    own = sum(cpu_delta(cpu0, cpu1).values())
    return max(0.0, (busy1 - busy0 - own) / (t1 - t0))


def wait_until_quiet(
    max_wait_seconds: float, exclude_pids: Iterable[int] = (), threshold_cores: float = 0.25
) -> float:
    """Wait (bounded) until the rest of the machine uses under `threshold_cores`; returns
    the last reading, so a run can say how busy the machine was when it started."""
    pids = list(exclude_pids)
    deadline = time.monotonic() + max_wait_seconds
    while True:
        cores = busy_cores(0.5, pids)
        if cores < threshold_cores or time.monotonic() >= deadline:
            return cores
