"""Stopping the daemons a test harness started (each in its own session)."""
import os
import signal
import subprocess


def stop_all(procs, grace=15):
    """SIGTERM every process group (last started first), then SIGKILL what outlives `grace`."""
    for p in reversed(procs):
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for p in reversed(procs):
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)
