"""The bench's own child processes."""

import subprocess


def stop(process: subprocess.Popen[bytes], seconds: float = 15) -> None:
    """Ask `process` to stop, and kill it if it has not within `seconds`."""
    process.terminate()
    try:
        process.wait(seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
