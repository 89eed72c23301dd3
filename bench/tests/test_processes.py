"""The bench waits for the servers to finish what the last load run left them before the next."""

import os
import signal
import subprocess
import sys
import time

import pytest

from bench.processes import children, cpu_seconds, settle, started, stop, tree_cpu_seconds

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_the_servers_settle_only_once_none_of_them_is_busy() -> None:
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    started(idle)
    started(busy)
    try:
        assert not settle(timeout=1, busy_share=0.01)
    finally:
        stop(busy)
    try:
        assert settle(timeout=5, busy_share=0.01)
    finally:
        stop(idle)


def test_a_process_trees_cpu_counts_the_workers_it_started() -> None:
    # The parent waits while its child spins, as uvicorn's supervisor does beside its workers.
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys; subprocess.run([sys.executable, '-c', 'while True: pass'])",
        ]
    )
    try:
        deadline = time.monotonic() + 30
        while tree_cpu_seconds([parent.pid]) < 0.5:
            assert time.monotonic() < deadline, "the child's CPU was never counted"
            time.sleep(0.05)
        assert cpu_seconds(parent.pid) < 0.4
    finally:
        for child in children().get(parent.pid, []):
            os.kill(child, signal.SIGKILL)
        stop(parent)
