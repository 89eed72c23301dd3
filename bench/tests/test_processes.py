"""The bench waits for the servers to finish what the last load run left them before the next."""

import subprocess
import sys

import pytest

from bench.processes import settle, started, stop

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
