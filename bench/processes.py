"""The bench's own child processes."""

import os
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

# The servers running now, watched by settle().
_running: set[int] = set()


def started(process: subprocess.Popen[bytes]) -> None:
    """Count `process` among the servers settle() waits for."""
    _running.add(process.pid)


def stop(process: subprocess.Popen[bytes], seconds: float = 15) -> None:
    """Ask `process` to stop, and kill it if it has not within `seconds`."""
    _running.discard(process.pid)
    process.terminate()
    try:
        process.wait(seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _stat(pid: int | str) -> list[str]:
    """The fields of /proc/<pid>/stat after the command's name (none once it is gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return []


def _cpu_ticks(pid: int) -> int:
    """The CPU the process has used, in clock ticks (0 once it is gone)."""
    fields = _stat(pid)
    return int(fields[11]) + int(fields[12]) if fields else 0  # utime, stime


def cpu_seconds(pid: int) -> float:
    """The CPU the process has used, user and system (0 once it is gone)."""
    return _cpu_ticks(pid) / os.sysconf("SC_CLK_TCK")


def children() -> dict[int, list[int]]:
    """Every running process's children, by the parent's pid."""
    found: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(entry.name)):
            found.setdefault(int(fields[1]), []).append(int(entry.name))
    return found


def tree_cpu_seconds(pids: Iterable[int]) -> float:
    """The CPU the processes and all their descendants (uvicorn's workers) have used."""
    children_of = children()
    ticks, waiting = 0, list(pids)
    while waiting:
        pid = waiting.pop()
        ticks += _cpu_ticks(pid)
        waiting += children_of.get(pid, [])
    return ticks / os.sysconf("SC_CLK_TCK")


def settle(timeout: float = 30, window: float = 0.2, busy_share: float = 0.1) -> bool:
    """Wait until the servers are idle: whether they got there within `timeout` seconds.

    When wrk stops, the requests its connections had in flight go on without a client, and
    the gateway's calls for them go on too; a run started at once would inherit them and
    share the services, and the gateway's calls in flight per service, with them. Idle
    means that for `window` seconds the servers together used less than `busy_share` of a
    core. Linux only (it reads /proc); elsewhere it returns at once.
    """
    if not sys.platform.startswith("linux"):
        return True
    tick = os.sysconf("SC_CLK_TCK")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = sum(_cpu_ticks(pid) for pid in _running)
        time.sleep(window)  # the window over which CPU use is measured
        used = (sum(_cpu_ticks(pid) for pid in _running) - before) / tick
        if used < busy_share * window:
            return True
    return False
